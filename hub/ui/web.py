"""The web UI's plumbing: the router's route class (refusals become a sign-in redirect or an
HTML error page), the templates, and one `Allow`-like dependency per permission.

Pages are thin adapters over the same domain functions as the JSON API; every page route
declares exactly one permission through `UiAllow` (or `public`), which the permission-matrix
test reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from hub import errors
from hub.api.access import UiAllow
from hub.permissions import Permission, holds
from hub.principals import Principal

HERE = Path(__file__).parent
# autoescape on for every template: values from sites and users are always escaped
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
    )
)
LOGIN_PATH = "/ui/login"

_STATUS: tuple[tuple[type[errors.HubError], int], ...] = (
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidRequest, 422),
    (errors.TooManyRequests, 429),
)

# (label, path, permission): the navigation shows a page only to who may open it
NAV: tuple[tuple[str, str, Permission], ...] = (
    ("Fleet", "/ui/fleet", Permission.FLEET_READ),
    ("Quarantine", "/ui/quarantine", Permission.FLEET_READ),
    ("Sites", "/ui/sites", Permission.SITE_READ),
    ("Transfers", "/ui/transfers", Permission.BUNDLE_READ),
    ("Requests", "/ui/requests", Permission.REQUEST_READ),
    ("Collections", "/ui/collections", Permission.COLLECTION_READ),
    ("Audit", "/ui/audit", Permission.AUDIT_READ),
    ("People", "/ui/people", Permission.USER_READ),
    ("API tokens", "/ui/me/tokens", Permission.SELF),
)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


templates.env.filters["when"] = _when
templates.env.filters["size"] = _size


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None)
    nav = [
        (label, path, request.url.path.startswith(path))
        for label, path, permission in NAV
        if principal is not None and holds(principal, permission)
    ]
    context.update(
        principal=principal,
        csrf_token=getattr(request.state, "csrf_token", ""),
        nav=nav,
        can=(lambda p: principal is not None and holds(principal, Permission(p))),
    )
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    return response


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", status, title=title, detail=detail)


class UiRoute(APIRoute):
    """Turns the domain's refusals into pages: not signed in -> 303 to the sign-in page;
    forbidden, not found, invalid -> an HTML page that says what to do (and no data)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except (errors.SignInRequired, errors.NotAuthenticated):
                return RedirectResponse(LOGIN_PATH, status_code=303)
            except errors.HubError as exc:
                status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 400)
                return error_page(request, status, exc.title, exc.detail)
            except RequestValidationError as exc:
                fields = ", ".join(
                    ".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()[:10]
                )  # the field names, never the values sent
                return error_page(
                    request, 422, "Invalid input", f"these fields are missing or invalid: {fields}"
                )

        return run


# one per permission a page may declare
SelfUi = Annotated[Principal, Depends(UiAllow(Permission.SELF))]
SiteReadUi = Annotated[Principal, Depends(UiAllow(Permission.SITE_READ))]
SiteManageUi = Annotated[Principal, Depends(UiAllow(Permission.SITE_MANAGE))]
FleetReadUi = Annotated[Principal, Depends(UiAllow(Permission.FLEET_READ))]
PolicyReadUi = Annotated[Principal, Depends(UiAllow(Permission.POLICY_READ))]
PolicyWriteUi = Annotated[Principal, Depends(UiAllow(Permission.POLICY_WRITE))]
AuditReadUi = Annotated[Principal, Depends(UiAllow(Permission.AUDIT_READ))]
UserReadUi = Annotated[Principal, Depends(UiAllow(Permission.USER_READ))]
BundleReadUi = Annotated[Principal, Depends(UiAllow(Permission.BUNDLE_READ))]
