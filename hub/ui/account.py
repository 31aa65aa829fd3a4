"""Web UI: sign-in and sign-out, the home page, personal API tokens, people, static files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from hub import errors
from hub.api.access import SESSION_COOKIE, PublicRoute, client_address
from hub.api.deps import RowId, ServicesDep, SessionDep
from hub.permissions import Permission, holds
from hub.ui.web import HERE, LOGIN_PATH, NAV, SelfUi, UiRoute, UserReadUi, error_page, render
from hub.users import service as users

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

STATIC = {"ui.css": "text/css", "ui.js": "text/javascript"}

Text = Annotated[str, Form(max_length=256)]


@router.get("/static/{name}", dependencies=[PublicRoute])
def static(name: str) -> Response:
    if name not in STATIC:
        return Response("no such file", status_code=404, media_type="text/plain")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


@router.get("/login", dependencies=[PublicRoute])
def login_page(request: Request) -> Response:
    return render(request, "login.html", error=None)


@router.post("/login", dependencies=[PublicRoute])
def login(
    request: Request, session: SessionDep, services: ServicesDep,
    username: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=256)],
) -> Response:  # fmt: skip
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        # login CSRF: another site's form must not sign the browser in to someone's account
        return error_page(request, 403, "Forbidden", "sign in from this hub's own sign-in page")
    try:
        signed = users.login(
            session, services.passwords, username=username, password=password,
            address=client_address(request),
        )  # fmt: skip
    except (errors.SignInRequired, errors.TooManyRequests) as exc:
        return render(request, "login.html", 401, error=exc.detail)
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, signed.session_id, httponly=True, secure=True, samesite="strict",
        max_age=int(users.SESSION_TTL.total_seconds()), path="/",
    )  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request, actor: SelfUi, session: SessionDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        users.logout(session, cookie)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(request: Request, actor: SelfUi) -> Response:
    """The first page this role may open (researchers: their account's tokens)."""
    for _label, path, permission in NAV:
        if holds(actor, permission):
            return RedirectResponse(path, status_code=303)
    return error_page(request, 403, "Nothing to show", "your role has no pages here")


@router.get("/me/tokens")
def tokens(request: Request, actor: SelfUi, session: SessionDep) -> Response:
    return render(
        request, "tokens.html", tokens=users.list_api_tokens(session, actor), created=None
    )


@router.post("/me/tokens")
def create_token(
    request: Request, actor: SelfUi, session: SessionDep,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    ttl_days: Annotated[int, Form(ge=1, le=users.MAX_TOKEN_TTL_DAYS)] = 90,
) -> Response:  # fmt: skip
    secret, info = users.create_api_token(session, actor, name=name, ttl_days=ttl_days)
    return render(
        request, "tokens.html", 201, tokens=users.list_api_tokens(session, actor),
        created=(secret, info),
    )  # fmt: skip


@router.post("/me/tokens/{token_id}/revoke")
def revoke_token(token_id: RowId, actor: SelfUi, session: SessionDep) -> Response:
    users.revoke_api_token(session, actor, token_id)
    return RedirectResponse("/ui/me/tokens", status_code=303)


@router.get("/people")
def people(request: Request, actor: UserReadUi, session: SessionDep) -> Response:
    return render(
        request, "people.html", people=users.list_users(session, actor),
        may_manage=holds(actor, Permission.USER_MANAGE),
    )  # fmt: skip
