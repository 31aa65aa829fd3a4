"""Web UI: fleet, sites (enrollment tokens, revoke, remove), transfers, audit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from hub.api.deps import OrgPath, ServicesDep, SessionDep, SitePath
from hub.audit import query as audit_query
from hub.audit.chain import AuditBroken, verify_chain
from hub.errors import InvalidRequest
from hub.fleet import service as fleet
from hub.fleet_view import quota_reasons
from hub.index import service as index
from hub.permissions import Permission, holds
from hub.principals import Principal
from hub.sites import service as sites
from hub.ui.web import (
    AuditReadUi,
    BundleReadUi,
    FleetReadUi,
    SiteManageUi,
    SiteReadUi,
    UiRoute,
    render,
)
from wire.api import QuarantineReason

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

SORTABLE = (
    "org", "site", "last_seen_at", "agent_version", "queue_depth", "oldest_item_age_s",
    "bytes_pending", "disk_free_bytes", "quarantined_instances", "certificate_expires_at",
)  # fmt: skip
# a form's empty field arrives as "": every filter is text, empty meaning "any"
Name = Annotated[str, Query(max_length=63, pattern=r"^([a-z0-9][a-z0-9-]{0,62})?$")]
Short = Annotated[str, Query(max_length=100)]
Day = Annotated[str, Query(max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
CHART_W, CHART_H = 240, 48


def _sort_key(field: str) -> object:
    def key(row: fleet.FleetRow) -> tuple[bool, object]:
        value = getattr(row, field)
        return (value is None, value if value is not None else 0)

    return key


@router.get("/fleet")
def fleet_page(
    request: Request, actor: FleetReadUi, session: SessionDep, services: ServicesDep,
    q: Short = "", sort: Annotated[str, Query(max_length=40)] = "org",
    order: Literal["asc", "desc"] = "asc", stale: bool = False,
) -> Response:  # fmt: skip
    rows = fleet.fleet(session, services.ca, actor)
    if q:
        needle = q.strip().lower()
        rows = [r for r in rows if needle in f"{r.org}/{r.site} {r.name}".lower()]
    if stale:
        rows = [r for r in rows if r.stale]
    sort = sort if sort in SORTABLE else "org"
    rows.sort(key=_sort_key(sort), reverse=order == "desc")  # type: ignore[arg-type]
    return render(
        request, "fleet.html", rows=rows, q=q or "", sort=sort, order=order, stale=stale,
        columns=SORTABLE, stale_count=sum(r.stale for r in rows),
        quota=quota_reasons(session),  # only the rows shown are looked up
    )  # fmt: skip


# what each kind of reason means to the site's admin, and what to do about it
REASON_HELP: dict[QuarantineReason, tuple[str, str]] = {
    QuarantineReason.VERIFICATION: (
        "identifying data was found after de-identification",
        "look at the finding; add the attribute to the site's recipe, then release",
    ),
    QuarantineReason.BURNED_IN_TEXT: (
        "text-like marks in the pixels that the scrub may not clear",
        "look at the before/after preview; allow-list safe text or discard the instance",
    ),
    QuarantineReason.DOCUMENT: (
        "a scanned or encapsulated document was held back",
        "documents are not sent de-identified; share identified or discard",
    ),
    QuarantineReason.PIXELS_UNREADABLE: (
        "the pixel data could not be decoded",
        "resend from the modality or PACS; a transfer syntax the agent lacks a decoder for",
    ),
    QuarantineReason.MALFORMED: (
        "the file or one of its values does not parse",
        "resend from the modality or PACS; the file was cut or corrupted",
    ),
    QuarantineReason.CONFIGURATION: (
        "the sharing rule, its recipe or the pseudonym key file is unusable",
        "fix the policy or the agent's key file, then release",
    ),
    QuarantineReason.DELIVERY: (
        "a delivery from another organization could not be stored",
        "check the local PACS, then retry the delivery",
    ),
    QuarantineReason.OTHER: ("recorded by an older agent, without a kind", "see the agent"),
}


@dataclass(frozen=True)
class QuarantineRow:
    row: fleet.FleetRow
    reasons: list[tuple[str, int]]  # (reason, count), most first

    @property
    def items(self) -> int:
        return sum(count for _, count in self.reasons)


@router.get("/quarantine")
def quarantine_page(
    request: Request, actor: FleetReadUi, session: SessionDep, services: ServicesDep
) -> Response:
    """Counts and kinds of reasons per site; the items themselves never leave the site."""
    rows = []
    totals: dict[str, int] = {}
    quiet = 0
    for row in fleet.fleet(session, services.ca, actor):
        reasons = sorted(row.quarantine_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        if not reasons and (row.quarantined_instances or 0) > 0:
            reasons = [(QuarantineReason.OTHER.value, row.quarantined_instances or 0)]
        if not reasons:
            quiet += 1
            continue
        for reason, count in reasons:
            totals[reason] = totals.get(reason, 0) + count
        rows.append(QuarantineRow(row, reasons))
    rows.sort(key=lambda r: (-r.items, r.row.org, r.row.site))
    return render(
        request, "quarantine.html", rows=rows, quiet=quiet,
        totals=sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])),
        help={reason.value: text for reason, text in REASON_HELP.items()},
    )  # fmt: skip


@dataclass(frozen=True)
class Chart:
    """Two lines over the same time axis, each scaled to its own maximum (numbers only)."""

    queue_points: str
    bytes_points: str
    queue_max: int
    bytes_max: int
    beats: int
    since: dt.datetime | None


def _points(times: list[float], values: list[int]) -> tuple[str, int]:
    top = max(values, default=0)
    start, end = (times[0], times[-1]) if times else (0.0, 1.0)
    span = (end - start) or 1.0
    points = " ".join(
        f"{(t - start) / span * CHART_W:.1f},{CHART_H - (v / top * CHART_H if top else 0):.1f}"
        for t, v in zip(times, values, strict=True)
    )
    return points, top


def heartbeat_chart(
    session: Session, actor: Principal, org: str, site: str, days: int = 3
) -> Chart:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    beats = list(reversed(fleet.history(session, actor, org, site, since=since, limit=2000)))
    times = [b.at.timestamp() for b in beats]
    queue, queue_max = _points(times, [b.heartbeat.queue_depth for b in beats])
    pending, bytes_max = _points(times, [b.heartbeat.bytes_pending for b in beats])
    return Chart(queue, pending, queue_max, bytes_max, len(beats), beats[0].at if beats else None)


@router.get("/sites")
def sites_page(
    request: Request, actor: SiteReadUi, session: SessionDep, services: ServicesDep
) -> Response:
    listed = [
        (org, sites.list_sites(session, services.ca, actor, org.id))
        for org in sites.list_orgs(session, actor)
    ]
    return render(request, "sites.html", orgs=listed)


def _site_page(
    request: Request, actor: Principal, session: Session, services: ServicesDep, org: str,
    site: str, *, issued: sites.IssuedToken | None = None, status: int = 200,
) -> Response:  # fmt: skip
    view = sites.get_site(session, services.ca, actor, org, site)
    manage = holds(actor, Permission.SITE_MANAGE)
    tokens = sites.list_enrollment_tokens(session, services.ca, actor, org, site) if manage else []
    chart = (
        heartbeat_chart(session, actor, org, site) if holds(actor, Permission.FLEET_READ) else None
    )
    return render(
        request, "site.html", status, site=view, tokens=tokens, manage=manage, chart=chart,
        issued=issued, chart_w=CHART_W, chart_h=CHART_H, public_url=services.settings.public_url,
    )  # fmt: skip


@router.get("/orgs/{org}/sites/{site}")
def site_page(
    request: Request, org: OrgPath, site: SitePath, actor: SiteReadUi, session: SessionDep,
    services: ServicesDep,
) -> Response:  # fmt: skip
    return _site_page(request, actor, session, services, org, site)


@router.post("/orgs/{org}/sites/{site}/enrollment-tokens")
def issue_token(
    request: Request, org: OrgPath, site: SitePath, actor: SiteManageUi, session: SessionDep,
    services: ServicesDep,
    ttl_minutes: Annotated[int, Form(ge=1, le=sites.MAX_TOKEN_TTL_MINUTES)] = 60,
) -> Response:  # fmt: skip
    issued = sites.issue_enrollment_token(session, services.ca, actor, org, site, ttl_minutes)
    return _site_page(request, actor, session, services, org, site, issued=issued, status=201)


@router.post("/orgs/{org}/enrollment-tokens/{token_id}/cancel")
def cancel_token(
    org: OrgPath, token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    actor: SiteManageUi, session: SessionDep, services: ServicesDep,
) -> Response:  # fmt: skip
    view = sites.cancel_enrollment_token(session, services.ca, actor, org, token_id)
    return RedirectResponse(f"/ui/orgs/{org}/sites/{view.site}", status_code=303)


@router.post("/orgs/{org}/sites/{site}/revoke")
def revoke_site(
    org: OrgPath, site: SitePath, actor: SiteManageUi, session: SessionDep,
    services: ServicesDep, reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:  # fmt: skip
    sites.revoke_site(session, services.ca, actor, org, site, reason)
    return RedirectResponse(f"/ui/orgs/{org}/sites/{site}", status_code=303)


@router.post("/orgs/{org}/sites/{site}/remove")
def remove_site(
    org: OrgPath, site: SitePath, actor: SiteManageUi, session: SessionDep,
    services: ServicesDep,
) -> Response:  # fmt: skip
    sites.remove_site(session, services.ca, actor, org, site)
    return RedirectResponse("/ui/sites", status_code=303)


@router.get("/transfers")
def transfers(
    request: Request, actor: BundleReadUi, session: SessionDep, org: Name = "",
    direction: Literal["any", "sent", "received"] = "any",
    state: Literal["receiving", "complete", ""] = "",
) -> Response:  # fmt: skip
    orgs = [o.id for o in sites.list_orgs(session, actor)]
    org = org or actor.org or (orgs[0] if orgs else "")
    rows = (
        index.search(session, actor, org, direction=direction, state=state or None, limit=200)
        if org
        else []
    )
    return render(
        request, "transfers.html", rows=rows, org=org, orgs=orgs, direction=direction,
        state=state or "",
    )  # fmt: skip


def _day(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a date (YYYY-MM-DD)") from None


@router.get("/audit")
def audit(
    request: Request, actor: AuditReadUi, session: SessionDep, services: ServicesDep,
    who: Short = "", action: Short = "", org: Name = "", since: Day = "", until: Day = "",
) -> Response:  # fmt: skip
    services.audit_buffer.sync()
    start, end = _day(since), _day(until)
    end = end + dt.timedelta(days=1) if end else None
    events = audit_query.query(
        session, actor, org=org or None, action=action or None, who=who or None,
        since=start, until=end, limit=200,
    )  # fmt: skip
    try:
        report = verify_chain(session, services.signing_key.public_key())
        chain = ("verified", f"{report.events} events, {report.checkpoints} signed checkpoints")
    except AuditBroken as exc:
        chain = ("broken", str(exc))
    if not actor.is_network_admin:
        chain = (chain[0], "")  # the hub-wide counts are for network admins
    return render(
        request, "audit.html", events=events, chain=chain,
        form={"who": who or "", "action": action or "", "org": org or "",
              "since": since, "until": until},
    )  # fmt: skip
