"""Route federated requests: submit, inbox (for the answering sites), answer, status, log.

No FastAPI here; `hub.api.requests_api` adapts these to HTTP (with long polling). The hub
checks the sealed bytes' size, schema and sender, never their content (it cannot read it).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import structlog
from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from hub import audit
from hub.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from hub.models import AuditEvent, Organization, SharingPolicy, Site, aware
from hub.permissions import Permission, authorize
from hub.principals import Principal
from hub.requests.models import FederatedRequest, RequestListener, RequestTarget
from wire.errors import WireError
from wire.query import MessageKind, parse_sealed
from wire.query_api import (
    ONLINE_WINDOW_S,
    Inbox,
    InboxItem,
    RequestKind,
    RequestLogRow,
    RequestStatus,
    SealedAnswer,
    TargetStatus,
    TrailEvent,
)

log = structlog.get_logger("hexchange.hub.requests")

FIND_TTL = dt.timedelta(minutes=10)
HOLD_TTL = dt.timedelta(days=7)  # "complete it when they are back"
RETRIEVE_TTL = dt.timedelta(days=1)
LEASE = dt.timedelta(seconds=60)  # a delivered, unanswered request is offered again after this
MAX_TARGETS = 64
REQUESTS_PER_HOUR = 600  # per site: a viewer's busy hour, not a sweep of the network
INBOX_LIMIT = 20
_OUTCOMES = {"matches", "no_match", "refused", "awaiting_approval", "accepted", "failed"}


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _opt(value: dt.datetime | None) -> dt.datetime | None:
    return aware(value) if value is not None else None


def _check_sealed(body: bytes, kind: MessageKind, request_id: str, org: str, site: str) -> str:
    try:
        message = parse_sealed(body, kind)
    except WireError as exc:
        raise InvalidRequest(f"the sealed {kind} is not acceptable: {exc}") from None
    if message.request_id != request_id:
        raise InvalidRequest(f"the sealed {kind} names another request id")
    if (message.sender_org, message.sender_site) != (org, site):
        raise InvalidRequest(f"the sealed {kind} names another sender than this site")
    return message.to_bytes().decode()


def last_contact(session: Session, org: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(the org's newest request poll, its newest contact of any kind) over all its sites."""
    polled = _opt(
        session.exec(
            select(func.max(RequestListener.last_poll_at)).where(RequestListener.org == org)
        ).one()
    )
    seen = _opt(session.exec(select(func.max(Site.last_seen_at)).where(Site.org == org)).one())
    contact = max((t for t in (polled, seen) if t is not None), default=None)
    return polled, contact


def _target_view(row: RequestTarget) -> TargetStatus:
    return TargetStatus(
        org=row.target_org,
        state=row.state,
        last_contact_at=_opt(row.last_contact_at),
        delivered_at=_opt(row.delivered_at),
        answered_at=_opt(row.answered_at),
        answered_by_site=row.answered_by_site,
        outcome=row.outcome,
        match_count=row.match_count,
        instances_done=row.instances_done,
    )


def _targets(session: Session, request_id: str) -> list[RequestTarget]:
    return list(
        session.exec(
            select(RequestTarget)
            .where(RequestTarget.request_id == request_id)
            .order_by(col(RequestTarget.target_org))
        )
    )


def expire(session: Session, now: dt.datetime | None = None) -> int:
    """Mark targets of expired requests expired and drop the expired requests' sealed bytes."""
    now = _now(now)
    expired = list(
        session.exec(
            select(FederatedRequest).where(
                col(FederatedRequest.expires_at) < now, FederatedRequest.sealed_query != ""
            )
        )
    )
    for request in expired:
        request.sealed_query = ""
        session.add(request)
        for target in _targets(session, request.request_id):
            if target.state in ("pending", "delivered"):
                target.state = "expired"
            target.sealed_answer = None
            session.add(target)
    if expired:
        session.commit()
    return len(expired)


def submit(
    session: Session,
    org: str,
    site: str,
    request_id: str,
    kind: RequestKind,
    targets: Sequence[str],
    body: bytes,
    *,
    hold: bool = False,
    now: dt.datetime | None = None,
    per_hour: int = REQUESTS_PER_HOUR,
) -> RequestStatus:
    """Queue a sealed query for `targets`. Idempotent: the same request again returns its
    status; another one under the same id is a Conflict. At most `per_hour` new requests
    per site and hour (TooManyRequests): one site cannot sweep the network's patients."""
    now = _now(now)
    wanted = sorted(set(targets))
    if not wanted:
        raise InvalidRequest("name at least one target organization (to=...)")
    if len(wanted) > MAX_TARGETS:
        raise InvalidRequest(f"{len(wanted)} target organizations, at most {MAX_TARGETS}")
    if org in wanted:
        raise InvalidRequest("an organization does not ask itself; query your own PACS")
    sealed = _check_sealed(body, "query", request_id, org, site)
    existing = session.get(FederatedRequest, request_id)
    if existing is not None:
        if (existing.requester_org, existing.requester_site) != (org, site) or (
            existing.sealed_query not in ("", sealed)
        ):
            raise Conflict(f"request {request_id} exists with other content; use a new id")
        return status(session, org, request_id)
    recent = session.exec(
        select(func.count())
        .select_from(FederatedRequest)
        .where(
            FederatedRequest.requester_org == org,
            FederatedRequest.requester_site == site,
            col(FederatedRequest.created_at) >= now - dt.timedelta(hours=1),
        )
    ).one()
    if recent >= per_hour:
        log.warning("request refused: hourly limit", org=org, site=site, limit=per_hour)
        raise TooManyRequests(
            f"this site made {recent} federated requests in the last hour, the limit is "
            f"{per_hour}; try again later or ask the network admin",
            retry_after_s=300,
        )
    known = set(session.exec(select(Organization.id).where(col(Organization.id).in_(wanted))))
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise NotFound(f"no organization {', '.join(unknown)} in this network")
    expire(session, now)
    ttl = HOLD_TTL if hold else (RETRIEVE_TTL if kind == "retrieve" else FIND_TTL)
    session.add(
        FederatedRequest(
            request_id=request_id,
            kind=kind,
            requester_org=org,
            requester_site=site,
            hold=hold,
            sealed_query=sealed,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    offline = []
    for target in wanted:
        polled, contact = last_contact(session, target)
        online = polled is not None and (now - polled).total_seconds() <= ONLINE_WINDOW_S
        if not online:
            offline.append(target)
        session.add(
            RequestTarget(
                request_id=request_id,
                target_org=target,
                state="pending" if online or hold else "offline",
                last_contact_at=contact,
            )
        )
    actor = f"site:{org}/{site}"
    detail = f"{kind} to {','.join(wanted)}" + (f"; offline {','.join(offline)}" if offline else "")
    audit.record(
        session, actor=actor, action="request.submitted", subject=request_id, detail=detail,
        org=org,
    )  # fmt: skip
    for target in wanted:  # each asked organization's log: who asked it (not whom else)
        audit.record(
            session, actor=actor, action="request.submitted", subject=request_id,
            detail=f"{kind} from {org}/{site}" + ("; offline" if target in offline else ""),
            org=target,
        )  # fmt: skip
    session.commit()
    log.info("request routed", request=request_id, kind=kind, targets=len(wanted),
             offline=len(offline))  # fmt: skip
    return status(session, org, request_id)


def touch_listener(session: Session, org: str, site: str, now: dt.datetime | None = None) -> None:
    now = _now(now)
    row = session.get(RequestListener, (org, site))
    if row is None:
        session.add(RequestListener(org=org, site=site, last_poll_at=now))
    else:
        row.last_poll_at = now
        session.add(row)
    session.commit()


def take_inbox(session: Session, org: str, site: str, *, now: dt.datetime | None = None) -> Inbox:
    """Requests for the site's organization that no site of it holds: handed to this site
    (a lease of LEASE; unanswered after it, they are offered again)."""
    now = _now(now)
    rows = session.exec(
        select(RequestTarget, FederatedRequest)
        .join(FederatedRequest, col(FederatedRequest.request_id) == col(RequestTarget.request_id))
        .where(
            RequestTarget.target_org == org,
            or_(
                col(RequestTarget.state) == "pending",
                (col(RequestTarget.state) == "delivered")
                & (col(RequestTarget.delivered_at) < now - LEASE),
            ),
            col(FederatedRequest.expires_at) >= now,
            FederatedRequest.sealed_query != "",
        )
        .order_by(col(FederatedRequest.created_at))
        .limit(INBOX_LIMIT)
    ).all()
    items = []
    for target, request in rows:
        # compare and set: of two sites of the organization asking at once, one takes it
        before = col(RequestTarget.delivered_at)
        claimed = session.execute(
            update(RequestTarget)
            .where(
                col(RequestTarget.request_id) == target.request_id,
                col(RequestTarget.target_org) == org,
                col(RequestTarget.state) == target.state,
                before.is_(None) if target.delivered_at is None else before == target.delivered_at,
            )
            .values(state="delivered", delivered_at=now, delivered_to_site=site)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        for side in (org, request.requester_org):
            audit.record(
                session, actor=f"site:{org}/{site}", action="request.taken",
                subject=request.request_id, detail=f"{request.kind} taken by {org}/{site}",
                org=side,
            )  # fmt: skip
        items.append(
            InboxItem(
                request_id=request.request_id,
                kind=request.kind,
                requester_org=request.requester_org,
                requester_site=request.requester_site,
                created_at=aware(request.created_at),
                sealed=request.sealed_query,
            )
        )
    session.commit()
    return Inbox(requests=items)


def answer(
    session: Session,
    org: str,
    site: str,
    request_id: str,
    outcome: str,
    count: int | None,
    body: bytes,
    *,
    instances_done: int | None = None,
    now: dt.datetime | None = None,
) -> TargetStatus:
    """Store the sealed answer of `org` (one per organization; a later one replaces it, so a
    retrieve can report progress and an approval can follow 'awaiting approval')."""
    now = _now(now)
    if outcome not in _OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(sorted(_OUTCOMES))}")
    if count is not None and not 0 <= count <= 100_000:
        raise InvalidRequest("count must be between 0 and 100000")
    target = session.get(RequestTarget, (request_id, org))
    request = session.get(FederatedRequest, request_id)
    if target is None or request is None:
        raise NotFound(f"no request {request_id} for organization {org}")
    if target.state == "expired" or aware(request.expires_at) < now:
        raise Conflict(f"request {request_id} has expired; the requester no longer waits")
    sealed = _check_sealed(body, "answer", request_id, org, site)
    target.state = "answered"
    target.answered_at = now
    target.answered_by_site = site
    target.outcome = outcome
    target.match_count = count
    target.instances_done = instances_done
    target.sealed_answer = sealed
    session.add(target)
    refused = outcome == "refused"
    said = f"{org}/{site}: {outcome}" + (f", {count}" if count is not None else "")
    if instances_done is not None:
        said += f", {instances_done} sent"
    for side in (org, request.requester_org):
        audit.record(
            session, actor=f"site:{org}/{site}",
            action="request.refused" if refused else "request.answered",
            subject=request_id, detail=f"{request.kind} {said}", org=side,
            outcome="refused" if refused else "success",
        )  # fmt: skip
    session.commit()
    log.info("request answered", request=request_id, org=org, outcome=outcome, count=count)
    return _target_view(target)


def status(session: Session, org: str, request_id: str) -> RequestStatus:
    """The request as its requesting organization sees it, with the sealed answers."""
    request = session.get(FederatedRequest, request_id)
    if request is None or request.requester_org != org:
        raise NotFound(f"no request {request_id} of organization {org}")
    targets = _targets(session, request_id)
    return RequestStatus(
        request_id=request_id,
        kind=request.kind,
        created_at=aware(request.created_at),
        expires_at=aware(request.expires_at),
        targets=[_target_view(t) for t in targets],
        answers=[
            SealedAnswer(org=t.target_org, site=t.answered_by_site or "", sealed=t.sealed_answer)
            for t in targets
            if t.sealed_answer and t.answered_by_site
        ],
    )


def answer_version(session: Session, org: str, request_id: str) -> tuple[int, ...]:
    """A cheap fingerprint of the request's progress (for long polls)."""
    rows = session.exec(
        select(RequestTarget.state, RequestTarget.answered_at, RequestTarget.instances_done)
        .join(FederatedRequest, col(FederatedRequest.request_id) == col(RequestTarget.request_id))
        .where(RequestTarget.request_id == request_id, FederatedRequest.requester_org == org)
    ).all()
    if not rows:
        raise NotFound(f"no request {request_id} of organization {org}")
    return tuple(
        hash((state, aware(at).timestamp() if at else 0.0, done or 0)) for state, at, done in rows
    )


def answerers(session: Session, org: str) -> list[str]:
    """Organizations with a site whose sharing policy sends studies, identified or
    de-identified, to `org`: the ones a query from `org` is forwarded to by default (each still
    applies its own answering policy, which answers de-identified when its rule says so). A
    research collection is no organization and never answers."""
    found = set()
    for row in session.exec(select(SharingPolicy).where(SharingPolicy.org != org)):
        try:
            rules = json.loads(row.rules)
        except ValueError:
            continue
        if any(
            isinstance(r, dict)
            and r.get("destination_org") == org
            and r.get("mode") in ("identified", "deidentified")
            for r in rules
        ):
            found.add(row.org)
    return sorted(found)


def request_log(
    session: Session, actor: Principal, org: str, *, limit: int = 100
) -> list[RequestLogRow]:
    """Requests an organization made or was asked, newest first (no identity, no sealed bytes)."""
    authorize(actor, Permission.REQUEST_READ, org)
    if session.get(Organization, org) is None:
        raise NotFound(f"no organization {org!r} that you can see")
    asked = select(RequestTarget.request_id).where(RequestTarget.target_org == org)
    requests = session.exec(
        select(FederatedRequest)
        .where(
            or_(
                col(FederatedRequest.requester_org) == org,
                col(FederatedRequest.request_id).in_(asked),
            )
        )
        .order_by(col(FederatedRequest.created_at).desc())
        .limit(max(1, min(limit, 1000)))
    ).all()
    trails = _trails(session, org, [r.request_id for r in requests])
    out = []
    for request in requests:
        targets = _targets(session, request.request_id)
        if request.requester_org != org:  # an asked org sees its own line only
            targets = [t for t in targets if t.target_org == org]
        out.append(
            RequestLogRow(
                request_id=request.request_id,
                kind=request.kind,
                requester_org=request.requester_org,
                requester_site=request.requester_site,
                created_at=aware(request.created_at),
                targets=[_target_view(t) for t in targets],
                trail=trails.get(request.request_id, []),
            )
        )
    return out


def _trails(session: Session, org: str, request_ids: list[str]) -> dict[str, list[TrailEvent]]:
    """The audit events of these requests recorded for `org` (each side has its own events,
    so an asked organization's trail never names the other organizations asked)."""
    trails: dict[str, list[TrailEvent]] = {}
    if not request_ids:
        return trails
    events = session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.org == org,
            col(AuditEvent.subject).in_(request_ids),
            col(AuditEvent.action).startswith("request."),
        )
        .order_by(col(AuditEvent.seq))
    )
    for event in events:
        step = TrailEvent(
            at=aware(event.at), action=event.action, actor=event.actor, detail=event.detail
        )
        trails.setdefault(event.subject, []).append(step)
    return trails
