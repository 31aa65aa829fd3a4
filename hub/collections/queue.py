"""The collection ingest queue (`CollectionIngest` rows): every state change of a queued
collection bundle has its home here.

    completion --enqueue--> pending --finish--> done   (delivery acked, audit event)
                               |  ^
                            fail  | (after not_before, or `hexchange-hub collection ingest`)
                               v  |
                              failed (error: what went wrong, never a patient's data)
"""

from __future__ import annotations

import datetime as dt
import json

from sqlmodel import Session, col, select

from hub import audit
from hub.collections.models import CollectionIngest
from hub.models import Bundle, Delivery, aware, utcnow
from wire.collection_key import collection_named

WAITING = ("pending", "failed")
MAX_RETRY_S = 3600.0


def enqueue(session: Session, bundle: Bundle, recipients: list[str]) -> int:
    """Queue a completing bundle for each collection among `recipients`, in the caller's
    transaction (the completion's: durable together with the receipt's facts)."""
    queued = 0
    for recipient in recipients:
        if collection_named(recipient) is None:
            continue
        if session.get(CollectionIngest, (bundle.bundle_id, recipient)) is None:
            job = CollectionIngest(
                bundle_id=bundle.bundle_id, recipient=recipient,
                sender_org=bundle.sender_org, sender_site=bundle.sender_site,
            )  # fmt: skip
            session.add(job)
            queued += 1
    return queued


def due(
    session: Session, now: dt.datetime | None = None, *, limit: int = 50
) -> list[tuple[str, str]]:
    """(bundle id, recipient) of queued work, oldest first; failed ones once their wait is
    over (`now=None`: all, waiting or not)."""
    stmt = select(CollectionIngest.bundle_id, CollectionIngest.recipient).where(
        col(CollectionIngest.state).in_(WAITING)
    )
    if now is not None:
        stmt = stmt.where(col(CollectionIngest.not_before) <= now)
    stmt = stmt.order_by(col(CollectionIngest.queued_at)).limit(limit)
    return [(bundle_id, recipient) for bundle_id, recipient in session.exec(stmt).all()]


def claim(
    session: Session, bundle_id: str, recipient: str, now: dt.datetime | None = None
) -> CollectionIngest | None:
    """The row, read again once its lease is held; None if another worker finished it or,
    with `now`, if it is no longer due (it failed, or was put off, since `due` listed it).
    `now=None` (`hexchange-hub collection ingest`) takes a waiting row at once."""
    session.expire_all()
    row = session.get(CollectionIngest, (bundle_id, recipient))
    if row is None or row.state not in WAITING:
        return None
    if now is not None and aware(row.not_before) > now:
        return None
    return row


def finish(session: Session, job: CollectionIngest, counts: dict[str, int]) -> None:
    """Every instance stored or quarantined: done, and the collection delivery acked."""
    now = utcnow()
    job.state, job.error, job.finished_at = "done", "", now
    job.counts = json.dumps(counts, sort_keys=True)
    session.add(job)
    delivery = session.get(Delivery, (job.bundle_id, job.recipient))
    if delivery is not None and delivery.state == "queued":
        delivery.state, delivery.acked_at, delivery.acked_by_site = "acked", now, "hub:collection"
        session.add(delivery)
    audit.record(
        session, actor="hub", action="collection.ingest",
        subject=f"{collection_named(job.recipient)}:{job.bundle_id}",
        detail=json.dumps(counts, sort_keys=True), org=job.sender_org,
    )  # fmt: skip
    session.commit()


def fail(session: Session, job: CollectionIngest, error: str, retry_base_s: float) -> float:
    """Record why the bundle could not be ingested; it is tried again after a wait that
    doubles with every attempt (at most an hour). Returns the wait."""
    job.attempts += 1
    wait = float(min(MAX_RETRY_S, retry_base_s * 2.0 ** min(job.attempts - 1, 16)))
    job.state, job.error = "failed", error[:300]
    job.not_before = utcnow() + dt.timedelta(seconds=wait)
    session.add(job)
    session.commit()
    return wait


def waiting_for_org(session: Session, org: str, limit: int = 500) -> list[CollectionIngest]:
    """This organization's bundles not yet ingested (pending or failed), oldest first."""
    return list(
        session.exec(
            select(CollectionIngest)
            .where(CollectionIngest.sender_org == org, col(CollectionIngest.state).in_(WAITING))
            .order_by(col(CollectionIngest.queued_at))
            .limit(limit)
        ).all()
    )


def view(job: CollectionIngest) -> dict[str, object]:
    return {
        "bundle_id": job.bundle_id, "collection": collection_named(job.recipient),
        "site": job.sender_site, "state": job.state, "attempts": job.attempts,
        "error": job.error, "queued_at": aware(job.queued_at).isoformat(),
        "next_attempt_at": aware(job.not_before).isoformat() if job.state == "failed" else None,
    }  # fmt: skip
