"""Searching the bundle index: what an organization sent and received, never who the patient is."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlmodel import Session, col, select

from hub.models import Bundle, Delivery, aware
from hub.permissions import Permission, authorize
from hub.principals import Principal

MAX_PAGE = 500


@dataclass(frozen=True)
class BundleView:
    bundle_id: str
    sender_org: str
    sender_site: str
    mode: str
    recipients: list[str]
    modalities: list[str]
    instance_count: int
    payload_bytes: int
    state: str
    created_at: dt.datetime
    completed_at: dt.datetime | None


def _view(row: Bundle) -> BundleView:
    return BundleView(
        bundle_id=row.bundle_id,
        sender_org=row.sender_org,
        sender_site=row.sender_site,
        mode=row.mode,
        recipients=json.loads(row.recipients or "[]"),
        modalities=json.loads(row.modalities or "[]"),
        instance_count=row.instance_count,
        payload_bytes=row.payload_bytes,
        state=row.state,
        created_at=aware(row.created_at),
        completed_at=aware(row.completed_at) if row.completed_at else None,
    )


def search(
    session: Session,
    actor: Principal,
    org: str,
    *,
    direction: str = "any",
    site: str | None = None,
    state: str | None = None,
    mode: str | None = None,
    modality: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
) -> list[BundleView]:
    """Bundles `org` sent (direction=sent), received (received) or both, newest first."""
    authorize(actor, Permission.BUNDLE_READ, org)
    limit = max(1, min(limit, MAX_PAGE))
    since = aware(since) if since is not None else None
    until = aware(until) if until is not None else None
    sent = select(Bundle).where(Bundle.sender_org == org)
    received = select(Bundle).join(Delivery, col(Delivery.bundle_id) == col(Bundle.bundle_id))
    received = received.where(Delivery.recipient_org == org)
    queries = {"sent": [sent], "received": [received]}.get(direction, [sent, received])
    found: dict[str, Bundle] = {}
    for stmt in queries:  # each side walks its own index newest first; merged below
        when = col(Delivery.created_at) if stmt is received else col(Bundle.created_at)
        if site is not None:
            stmt = stmt.where(Bundle.sender_site == site)
        if state is not None:
            stmt = stmt.where(Bundle.state == state)
        if mode is not None:
            stmt = stmt.where(Bundle.mode == mode)
        if modality is not None:
            stmt = stmt.where(col(Bundle.modalities).contains(json.dumps(modality.upper())))
        if since is not None:
            stmt = stmt.where(when >= since)
        if until is not None:
            stmt = stmt.where(when < until)
        stmt = stmt.order_by(when.desc()).limit(limit)
        for row in session.exec(stmt):
            found[row.bundle_id] = row
    newest = sorted(found.values(), key=lambda b: aware(b.created_at), reverse=True)[:limit]
    return [_view(r) for r in newest]
