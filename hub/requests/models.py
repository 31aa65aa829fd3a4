"""Request routing tables. No patient identity: the query and answers are sealed bytes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from hub.models import utcnow


class FederatedRequest(SQLModel, table=True):
    """One request from a site: a C-FIND forwarded to organizations, or a retrieve."""

    __tablename__ = "federated_request"
    __table_args__ = (Index("ix_federated_request_requester", "requester_org", "created_at"),)

    request_id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16, description="find | retrieve")
    requester_org: str = Field(max_length=63)
    requester_site: str = Field(max_length=63)
    hold: bool = Field(default=False, description="deliver to an offline target when it returns")
    sealed_query: str = Field(default="", description="wire.query.SealedMessage; '' once purged")
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime = Field(default_factory=utcnow)


class RequestTarget(SQLModel, table=True):
    """One organization asked by a request, and what became of it."""

    __tablename__ = "request_target"
    __table_args__ = (Index("ix_request_target_inbox", "target_org", "state"),)

    request_id: str = Field(
        primary_key=True, foreign_key="federated_request.request_id", max_length=32
    )
    target_org: str = Field(primary_key=True, max_length=63)
    state: str = Field(
        default="pending", max_length=16, description="pending|delivered|answered|offline|expired"
    )
    last_contact_at: dt.datetime | None = Field(
        default=None, description="the target's last contact with the hub when asked"
    )
    delivered_at: dt.datetime | None = None
    delivered_to_site: str | None = Field(default=None, max_length=63)
    answered_at: dt.datetime | None = None
    answered_by_site: str | None = Field(default=None, max_length=63)
    outcome: str | None = Field(default=None, max_length=32)
    match_count: int | None = None
    instances_done: int | None = Field(default=None, description="a retrieve: sent so far")
    sealed_answer: str | None = Field(default=None, description="wire.query.SealedMessage")


class RequestListener(SQLModel, table=True):
    """When a site last waited for requests (its long poll): 'online' for federated queries."""

    __tablename__ = "request_listener"

    org: str = Field(primary_key=True, max_length=63)
    site: str = Field(primary_key=True, max_length=63)
    last_poll_at: dt.datetime = Field(default_factory=utcnow)
