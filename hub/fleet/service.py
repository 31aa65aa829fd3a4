"""Heartbeats in, fleet view out. No FastAPI: the API, the CLI and the metrics share this."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import delete
from sqlmodel import Session, col, select

from certs.registry import CADirectory
from hub.fleet.models import SiteHeartbeat
from hub.models import SharingPolicy, Site, aware
from hub.permissions import Permission, authorize, visible_orgs
from hub.principals import Principal
from hub.sites.service import certificate_expiry
from wire.api import Heartbeat

HISTORY = dt.timedelta(days=30)
HISTORY_EVERY = dt.timedelta(minutes=5)  # one history row per site per 5 minutes at most
STALE_AFTER = dt.timedelta(minutes=3)  # agents beat every 30 s: six missed beats
MISSED_BEATS = 6  # an agent that says how often it beats is stale after this many missed
STALE_FLOOR = dt.timedelta(seconds=5)


def stale_after_for(beat: Heartbeat | None) -> dt.timedelta:
    """Silence after which a site is stale: six of its own intervals, else three minutes."""
    if beat is None or beat.interval_s is None:
        return STALE_AFTER
    return max(STALE_FLOOR, dt.timedelta(seconds=MISSED_BEATS * beat.interval_s))


def record_heartbeat(
    session: Session,
    org: str,
    site: str,
    beat: Heartbeat,
    *,
    now: dt.datetime | None = None,
    keep: dt.timedelta = HISTORY,
    every: dt.timedelta = HISTORY_EVERY,
) -> None:
    """Store the newest heartbeat on the site; add it to the history when the last history row
    is older than `every` (30-s beats would be 86 400 rows per site a month); drop history past
    `keep`. Bounded: at most keep/every rows per site."""
    now = now or dt.datetime.now(dt.UTC)
    row = session.exec(select(Site).where(Site.org == org, Site.site == site)).first()
    if row is None:
        return
    payload = json.dumps(beat.model_dump(mode="json"), separators=(",", ":"))
    row.last_seen_at = now
    row.last_heartbeat = payload
    session.add(row)
    newest = session.exec(
        select(SiteHeartbeat.at)
        .where(SiteHeartbeat.org == org, SiteHeartbeat.site == site)
        .order_by(col(SiteHeartbeat.at).desc())
        .limit(1)
    ).first()
    if newest is not None and now - aware(newest) < every:
        session.commit()
        return
    session.add(SiteHeartbeat(org=org, site=site, at=now, payload=payload))
    session.exec(
        delete(SiteHeartbeat).where(
            col(SiteHeartbeat.org) == org,
            col(SiteHeartbeat.site) == site,
            col(SiteHeartbeat.at) < now - keep,
        )
    )
    session.commit()


def parse_beat(payload: str | None) -> Heartbeat | None:
    """A stored heartbeat, re-validated (rows written before validation existed read as None)."""
    if not payload:
        return None
    try:
        return Heartbeat.model_validate_json(payload)
    except ValidationError:
        return None


@dataclass(frozen=True)
class FleetRow:
    org: str
    site: str
    name: str
    enrolled: bool
    last_seen_at: dt.datetime | None
    stale: bool
    agent_version: str | None
    queue_depth: int | None
    oldest_item_age_s: float | None
    bytes_pending: int | None
    disk_free_bytes: int | None
    last_error: str | None
    policy_version_reported: int | None
    policy_version_current: int
    held_studies: int | None
    partial_studies: int | None
    quarantined_instances: int | None
    inbound_waiting: int | None
    certificate_expires_at: dt.datetime | None
    revoked: bool
    heartbeat_unreadable: bool = False
    # items waiting in the site's quarantine, by kind of reason (wire.api.QuarantineReason)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)


def fleet(
    session: Session,
    ca: CADirectory,
    actor: Principal,
    org: str | None = None,
    *,
    now: dt.datetime | None = None,
    stale_after: dt.timedelta | None = None,
) -> list[FleetRow]:
    """Every site of the caller's organizations (or of `org`), with what it last reported."""
    authorize(actor, Permission.FLEET_READ, org)
    now = now or dt.datetime.now(dt.UTC)
    query = select(Site).order_by(Site.org, Site.site)
    orgs = visible_orgs(actor)
    if org is not None:
        query = query.where(Site.org == org)
    elif orgs is not None:
        query = query.where(col(Site.org).in_(orgs))
    sites = session.exec(query).all()
    wanted = sorted({s.org for s in sites})
    versions = {
        (p.org, p.site): p.version
        for p in session.exec(select(SharingPolicy).where(col(SharingPolicy.org).in_(wanted)))
    }
    rows = []
    for site in sites:
        beat = parse_beat(site.last_heartbeat)
        seen = aware(site.last_seen_at) if site.last_seen_at else None
        serial = site.certificate_serial
        try:
            revoked = bool(serial) and ca.is_revoked(int(serial or "", 16))
        except ValueError:  # not a serial this hub wrote: show the site, flag nothing
            revoked = False
        rows.append(
            FleetRow(
                org=site.org,
                site=site.site,
                name=site.name,
                enrolled=site.enrolled_at is not None,
                last_seen_at=seen,
                stale=(site.enrolled_at is not None or seen is not None)
                and (seen is None or now - seen > (stale_after or stale_after_for(beat))),
                agent_version=beat.agent_version if beat else None,
                queue_depth=beat.queue_depth if beat else None,
                oldest_item_age_s=beat.oldest_item_age_s if beat else None,
                bytes_pending=beat.bytes_pending if beat else None,
                disk_free_bytes=beat.disk_free_bytes if beat else None,
                last_error=beat.last_error if beat else None,
                policy_version_reported=beat.policy_version if beat else None,
                policy_version_current=versions.get((site.org, site.site), 0),
                held_studies=beat.held_studies if beat else None,
                partial_studies=beat.partial_studies if beat else None,
                quarantined_instances=beat.quarantined_instances if beat else None,
                inbound_waiting=beat.inbound_waiting if beat else None,
                certificate_expires_at=certificate_expiry(site.certificate_pem),
                revoked=revoked,
                heartbeat_unreadable=bool(site.last_heartbeat) and beat is None,
                quarantine_reasons=(
                    {k.value: v for k, v in beat.quarantine_reasons.items() if v} if beat else {}
                ),
            )
        )
    return rows


@dataclass(frozen=True)
class BeatView:
    at: dt.datetime
    heartbeat: Heartbeat


def history(
    session: Session,
    actor: Principal,
    org: str,
    site: str,
    *,
    since: dt.datetime | None = None,
    limit: int = 500,
) -> list[BeatView]:
    authorize(actor, Permission.FLEET_READ, org)
    query = select(SiteHeartbeat).where(SiteHeartbeat.org == org, SiteHeartbeat.site == site)
    if since is not None:
        query = query.where(SiteHeartbeat.at >= since)
    query = query.order_by(col(SiteHeartbeat.at).desc()).limit(max(1, min(limit, 5000)))
    out = []
    for row in session.exec(query):
        beat = parse_beat(row.payload)
        if beat is not None:
            out.append(BeatView(at=aware(row.at), heartbeat=beat))
    return out
