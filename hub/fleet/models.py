"""Heartbeat history (bounded by age): the facts an agent reports, never patient data."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from hub.models import utcnow


class SiteHeartbeat(SQLModel, table=True):
    __table_args__ = (Index("ix_siteheartbeat_site_at", "org", "site", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    org: str = Field(max_length=63)
    site: str = Field(max_length=63)
    at: dt.datetime = Field(default_factory=utcnow)
    payload: str = Field(description="JSON of wire.api.Heartbeat, validated at the wire")
