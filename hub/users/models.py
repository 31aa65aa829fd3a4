"""Tables for people. Secrets (passwords, session ids, API tokens) are stored only as hashes."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models import utcnow


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=64)
    display_name: str = Field(default="", max_length=200)
    role: str = Field(max_length=32)
    org: str | None = Field(default=None, foreign_key="organization.id", index=True, max_length=63)
    password_hash: str | None = Field(default=None, max_length=512)
    # The seam for single sign-on: an identity provider's subject, matched instead of a password.
    oidc_subject: str | None = Field(default=None, unique=True, max_length=255)
    locked: bool = False
    removed_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_login_at: dt.datetime | None = None


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None


class WebSession(SQLModel, table=True):
    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime
    revoked_at: dt.datetime | None = None


class LoginFailure(SQLModel, table=True):
    """Recent failed sign-ins, for rate limiting across hub replicas (pruned as it goes)."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, max_length=64)
    address: str = Field(index=True, max_length=64)
    at: dt.datetime = Field(default_factory=utcnow, index=True)
