"""HTTP contract of federated requests between agents and the hub (node API, mutual TLS).

Only routing facts travel in clear: request id, kind, organizations, sites, times, states,
outcomes and counts. The query keys and the answers are `wire.query.SealedMessage` bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wire.manifest import BundleId, Name, UtcDatetime
from wire.query import Outcome

RequestKind = Literal["find", "retrieve"]
TargetState = Literal["pending", "delivered", "answered", "offline", "expired"]

ONLINE_WINDOW_S = 10.0
"""A site that waited for requests (long poll) within this many seconds is online (the hub
notes a waiting site every `LISTEN_MARK_S` while its long poll is open)."""
LISTEN_MARK_S = 3.0
MAX_WAIT_S = 30.0
"""Longest long poll the hub holds open."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetStatus(_Model):
    org: Name
    state: TargetState
    last_contact_at: UtcDatetime | None = None
    delivered_at: UtcDatetime | None = None
    answered_at: UtcDatetime | None = None
    answered_by_site: Name | None = None
    outcome: Outcome | None = None
    match_count: int | None = Field(default=None, ge=0)
    instances_done: int | None = Field(default=None, ge=0)


class SealedAnswer(_Model):
    org: Name
    site: Name
    sealed: str = Field(description="wire.query.SealedMessage JSON (kind answer)")


class RequestStatus(_Model):
    """What the requesting site sees of its request (the answers are sealed to it)."""

    request_id: BundleId
    kind: RequestKind
    created_at: UtcDatetime
    expires_at: UtcDatetime
    targets: list[TargetStatus]
    answers: list[SealedAnswer] = Field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Every target answered, is offline (not held) or expired: nothing more will come."""
        return all(t.state in ("answered", "offline", "expired") for t in self.targets)


class InboxItem(_Model):
    request_id: BundleId
    kind: RequestKind
    requester_org: Name
    requester_site: Name
    created_at: UtcDatetime
    sealed: str = Field(description="wire.query.SealedMessage JSON (kind query)")


class Inbox(_Model):
    requests: list[InboxItem]


class Answerers(_Model):
    """Organizations a query is forwarded to by default (their sharing policy sends
    identified studies to the asking organization)."""

    orgs: list[Name]


class TrailEvent(_Model):
    """One step of a request in the hub's audit log, as one organization's log shows it."""

    at: UtcDatetime
    action: str  # request.submitted | request.taken | request.answered | request.refused
    actor: str  # site:ORG/SITE
    detail: str = ""  # organizations, outcome and count: never a patient


class RequestLogRow(_Model):
    """One line of the hub's request log (user API): no patient identity, no sealed bytes."""

    request_id: BundleId
    kind: RequestKind
    requester_org: Name
    requester_site: Name
    created_at: UtcDatetime
    targets: list[TargetStatus]
    trail: list[TrailEvent] = Field(
        default_factory=list, description="the audit events of this request for the viewer's org"
    )
