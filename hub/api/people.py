"""User API: sign-in, own account and API tokens, and user administration."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from hub.api.access import (
    SESSION_COOKIE,
    PublicRoute,
    SelfDep,
    UserManageDep,
    UserReadDep,
    client_address,
)
from hub.api.deps import OrgPath, RowId, ServicesDep, SessionDep
from hub.api.inputs import ApiInput
from hub.users import service as users

router = APIRouter(prefix="/api/v1", tags=["people"])


class LoginIn(ApiInput):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginOut(BaseModel):
    user: users.UserView
    csrf_token: str
    expires_at: dt.datetime


class TokenIn(ApiInput):
    name: str = Field(min_length=1, max_length=100)
    ttl_days: int = Field(default=90, ge=1, le=users.MAX_TOKEN_TTL_DAYS)


class TokenOut(BaseModel):
    token: str = Field(description="shown once: store it now, the hub keeps only a hash")
    info: users.TokenView


class UserIn(ApiInput):
    username: str = Field(min_length=2, max_length=64)
    role: str = Field(max_length=32)
    org: str | None = Field(default=None, max_length=63)
    password: str = Field(min_length=1, max_length=256)
    display_name: str = Field(default="", max_length=200)


class UserPatch(ApiInput):
    locked: bool | None = None
    role: str | None = Field(default=None, max_length=32)
    password: str | None = Field(default=None, min_length=1, max_length=256)
    display_name: str | None = Field(default=None, max_length=200)


@router.post("/auth/login", dependencies=[PublicRoute])
def login(
    body: LoginIn, request: Request, response: Response, session: SessionDep,
    services: ServicesDep,
) -> LoginOut:  # fmt: skip
    """Sign in: sets an HttpOnly session cookie; send `csrf_token` as X-CSRF-Token on writes."""
    signed = users.login(
        session, services.passwords, username=body.username, password=body.password,
        address=client_address(request),
    )  # fmt: skip
    response.set_cookie(
        SESSION_COOKIE, signed.session_id, httponly=True, secure=True, samesite="strict",
        max_age=int(users.SESSION_TTL.total_seconds()), path="/",
    )  # fmt: skip
    return LoginOut(user=signed.user, csrf_token=signed.csrf_token, expires_at=signed.expires_at)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, actor: SelfDep, session: SessionDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        users.logout(session, cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me")
def me(actor: SelfDep, session: SessionDep) -> users.UserView:
    assert actor.user_id is not None
    return users.view_self(session, actor)


@router.get("/me/tokens")
def my_tokens(actor: SelfDep, session: SessionDep) -> list[users.TokenView]:
    return users.list_api_tokens(session, actor)


@router.post("/me/tokens", status_code=201)
def create_token(body: TokenIn, actor: SelfDep, session: SessionDep) -> TokenOut:
    secret, info = users.create_api_token(session, actor, name=body.name, ttl_days=body.ttl_days)
    return TokenOut(token=secret, info=info)


@router.delete("/me/tokens/{token_id}", status_code=204)
def revoke_token(token_id: RowId, actor: SelfDep, session: SessionDep) -> Response:
    users.revoke_api_token(session, actor, token_id)
    return Response(status_code=204)


@router.get("/users")
def list_users(actor: UserReadDep, session: SessionDep) -> list[users.UserView]:
    return users.list_users(session, actor)


@router.get("/orgs/{org}/users")
def list_org_users(org: OrgPath, actor: UserReadDep, session: SessionDep) -> list[users.UserView]:
    return users.list_users(session, actor, org)


@router.post("/users", status_code=201)
def create_user(
    body: UserIn, actor: UserManageDep, session: SessionDep, services: ServicesDep
) -> users.UserView:
    return users.create_user(
        session, actor, services.passwords, username=body.username, role=body.role,
        org=body.org, password=body.password, display_name=body.display_name,
    )  # fmt: skip


@router.get("/users/{user_id}")
def get_user(user_id: RowId, actor: UserReadDep, session: SessionDep) -> users.UserView:
    return users.get_user(session, actor, user_id)


@router.patch("/users/{user_id}")
def update_user(
    user_id: RowId, body: UserPatch, actor: UserManageDep, session: SessionDep,
    services: ServicesDep,
) -> users.UserView:  # fmt: skip
    return users.update_user(
        session, actor, services.passwords, user_id, locked=body.locked, role=body.role,
        password=body.password, display_name=body.display_name,
    )  # fmt: skip


@router.delete("/users/{user_id}", status_code=204)
def remove_user(user_id: RowId, actor: UserManageDep, session: SessionDep) -> Response:
    users.remove_user(session, actor, user_id)
    return Response(status_code=204)
