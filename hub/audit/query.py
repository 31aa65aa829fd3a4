"""Reading the audit log: org admins see their organization's events, network admins all."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from hub.models import AuditEvent, aware
from hub.permissions import Permission, authorize, visible_orgs
from hub.principals import Principal

MAX_PAGE = 1000


@dataclass(frozen=True)
class EventView:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    subject: str
    detail: str
    org: str
    address: str
    outcome: str


def _view(row: AuditEvent) -> EventView:
    at = aware(row.at)
    return EventView(
        seq=row.seq, at=at, actor=row.actor, action=row.action, subject=row.subject,
        detail=row.detail, org=row.org, address=row.address, outcome=row.outcome,
    )  # fmt: skip


def query(
    session: Session,
    actor: Principal,
    *,
    org: str | None = None,
    action: str | None = None,
    who: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[EventView]:
    """Newest first; page with `before_seq` (the smallest seq of the previous page)."""
    authorize(actor, Permission.AUDIT_READ, org)
    stmt = select(AuditEvent)
    orgs = visible_orgs(actor)
    if org is not None:
        stmt = stmt.where(AuditEvent.org == org)
    elif orgs is not None:
        stmt = stmt.where(col(AuditEvent.org).in_(orgs))
    if action:
        stmt = stmt.where(col(AuditEvent.action).startswith(action[:64]))
    if who:
        stmt = stmt.where(AuditEvent.actor == who[:140])
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    stmt = stmt.order_by(col(AuditEvent.seq).desc()).limit(max(1, min(limit, MAX_PAGE)))
    return [_view(r) for r in session.exec(stmt)]
