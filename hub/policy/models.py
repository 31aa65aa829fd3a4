"""Every version of every site's policy: who, when, why, and the full rule set."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models import utcnow


class PolicyVersion(SQLModel, table=True):
    org: str = Field(primary_key=True, max_length=63)
    site: str = Field(primary_key=True, max_length=63)
    version: int = Field(primary_key=True)
    rules: str = Field(description="JSON list of wire.policy.PolicyRule")
    author: str = Field(max_length=140)
    reason: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow)
    rolled_back_from: int | None = None
