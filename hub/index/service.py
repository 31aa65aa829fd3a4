"""Searching the bundle index: what an organization sent and received, never who the patient is."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import Session, col, select

from hub.models import Bundle, Delivery
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


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


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
        created_at=_aware(row.created_at),
        completed_at=_aware(row.completed_at) if row.completed_at else None,
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
    received = select(Delivery.bundle_id).where(Delivery.recipient_org == org)
    if direction == "sent":
        stmt = select(Bundle).where(Bundle.sender_org == org)
    elif direction == "received":
        stmt = select(Bundle).where(col(Bundle.bundle_id).in_(received))
    else:
        stmt = select(Bundle).where(
            or_(col(Bundle.sender_org) == org, col(Bundle.bundle_id).in_(received))
        )
    if site is not None:
        stmt = stmt.where(Bundle.sender_site == site)
    if state is not None:
        stmt = stmt.where(Bundle.state == state)
    if mode is not None:
        stmt = stmt.where(Bundle.mode == mode)
    if modality is not None:
        stmt = stmt.where(col(Bundle.modalities).contains(json.dumps(modality.upper())))
    if since is not None:
        stmt = stmt.where(Bundle.created_at >= since)
    if until is not None:
        stmt = stmt.where(Bundle.created_at < until)
    stmt = stmt.order_by(col(Bundle.created_at).desc()).limit(max(1, min(limit, MAX_PAGE)))
    return [_view(r) for r in session.exec(stmt)]
