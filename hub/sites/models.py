"""Enrollment tokens as the hub lists them: the token itself is never stored, only its id."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models import utcnow


class EnrollmentToken(SQLModel, table=True):
    jti: str = Field(primary_key=True, max_length=32)
    org: str = Field(index=True, max_length=63)
    site: str = Field(max_length=63)
    created_by: str = Field(max_length=140)
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime
    cancelled_at: dt.datetime | None = None
    cancelled_by: str | None = Field(default=None, max_length=140)
