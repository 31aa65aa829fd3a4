"""Who may call a route: every route declares exactly one permission, here.

`Allow(Permission.X)` authenticates the caller (API token or sign-in session with CSRF check),
records the principal for the audit middleware, and authorizes against the `{org}` path
parameter. `public` marks a route that needs no sign-in; the node API's `current_site`
(mutual TLS) declares `Permission.SITE`. The permission-matrix test reads these declarations
and fails on any route that has none.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from hub.api.deps import SessionDep
from hub.errors import Forbidden, SignInRequired
from hub.permissions import Permission, authorize
from hub.principals import Principal
from hub.users import service as users

SESSION_COOKIE = "hx_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def authenticate(request: Request, session: Session, csrf_sent: str | None = None) -> Principal:
    """`csrf_sent`: the token a form carried (web UI); else the X-CSRF-Token header is read."""
    address = client_address(request)
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise SignInRequired("send 'Authorization: Bearer <API token>' (hxt_...)")
        principal = users.from_api_token(session, value.strip(), address)
        if principal is None:
            raise SignInRequired(
                "this API token is unknown, expired or revoked, or its account is locked; "
                "create a new token"
            )
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = users.from_session(session, cookie, address)
        if found is None:
            raise SignInRequired("your session has ended; sign in again")
        principal, csrf = found
        if csrf_sent is None:
            csrf_sent = request.headers.get(CSRF_HEADER, "")
        request.state.csrf_token = csrf
        if request.method not in SAFE_METHODS and not hmac.compare_digest(csrf_sent, csrf):
            raise Forbidden(
                "missing or wrong CSRF token: send the X-CSRF-Token header you got at sign-in"
            )
        return principal
    raise SignInRequired("sign in (POST /api/v1/auth/login) or send an API token")


class Allow:
    """Dependency: authenticate, then require `permission` (scoped to `{org}` if present)."""

    def __init__(self, permission: Permission) -> None:
        if permission in (Permission.PUBLIC, Permission.SITE):
            raise ValueError("use `public` or the node API's site dependency for these")
        self.permission = permission

    def __call__(self, request: Request, session: SessionDep) -> Principal:
        principal = authenticate(request, session)
        request.state.principal = principal
        org = request.path_params.get("org")
        authorize(principal, self.permission, org if isinstance(org, str) else None)
        return principal

    def __repr__(self) -> str:
        return f"Allow({self.permission.value})"


class UiAllow(Allow):
    """The web UI's dependency: as `Allow`, but a form's `csrf_token` field is the CSRF proof
    (the UI's router turns the refusals into a sign-in redirect or an HTML error page)."""

    async def __call__(  # type: ignore[override]
        self, request: Request, session: SessionDep
    ) -> Principal:
        sent: str | None = None
        if request.method not in SAFE_METHODS and "authorization" not in request.headers:
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else ""
        principal = authenticate(request, session, sent)
        request.state.principal = principal
        org = request.path_params.get("org")
        authorize(principal, self.permission, org if isinstance(org, str) else None)
        return principal

    def __repr__(self) -> str:
        return f"UiAllow({self.permission.value})"


def public() -> None:
    """Declares a route that needs no sign-in (health, enrollment, sign-in itself)."""


public.permission = Permission.PUBLIC  # type: ignore[attr-defined]


def allow(permission: Permission) -> object:
    return Depends(Allow(permission))


# Annotated shorthands, one per permission a route may declare
SelfDep = Annotated[Principal, Depends(Allow(Permission.SELF))]
OrgCreateDep = Annotated[Principal, Depends(Allow(Permission.ORG_CREATE))]
OrgReadDep = Annotated[Principal, Depends(Allow(Permission.ORG_READ))]
SiteReadDep = Annotated[Principal, Depends(Allow(Permission.SITE_READ))]
SiteManageDep = Annotated[Principal, Depends(Allow(Permission.SITE_MANAGE))]
FleetReadDep = Annotated[Principal, Depends(Allow(Permission.FLEET_READ))]
PolicyReadDep = Annotated[Principal, Depends(Allow(Permission.POLICY_READ))]
PolicyWriteDep = Annotated[Principal, Depends(Allow(Permission.POLICY_WRITE))]
AuditReadDep = Annotated[Principal, Depends(Allow(Permission.AUDIT_READ))]
UserReadDep = Annotated[Principal, Depends(Allow(Permission.USER_READ))]
UserManageDep = Annotated[Principal, Depends(Allow(Permission.USER_MANAGE))]
BundleReadDep = Annotated[Principal, Depends(Allow(Permission.BUNDLE_READ))]
RequestReadDep = Annotated[Principal, Depends(Allow(Permission.REQUEST_READ))]
MetricsReadDep = Annotated[Principal, Depends(Allow(Permission.METRICS_READ))]
ApiDocsDep = Annotated[Principal, Depends(Allow(Permission.API_DOCS))]
CollectionReadDep = Annotated[Principal, Depends(Allow(Permission.COLLECTION_READ))]
CollectionManageDep = Annotated[Principal, Depends(Allow(Permission.COLLECTION_MANAGE))]
PublicRoute = Depends(public)
