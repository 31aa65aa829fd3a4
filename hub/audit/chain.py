"""Append-only, hash-chained audit log with serialized appends and signed checkpoints.

Each event's hash covers its own columns and the previous hash, so editing, removing or
reordering an event breaks the chain; `seq` is gap-free, so removing the first events shows;
signed checkpoints (hub key) make truncation of the newest events detectable down to the last
checkpoint. Appends lock the single `AuditHead` row first, which serializes them across hub
processes sharing one database: two writers can never both extend the same hash.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from hub.models import AuditCheckpoint, AuditEvent, AuditHead, aware, utcnow

GENESIS = "0" * 64
CHECKPOINT_EVERY = 100
_CHECKPOINT_TAG = "hexchange-audit-checkpoint/v1"


class AuditBroken(ValueError):
    """The log was changed after the fact; the message says where."""


def entry_hash(prev_hash: str, event: AuditEvent) -> str:
    material = json.dumps(
        [
            prev_hash,
            event.seq,
            aware(event.at).astimezone(dt.UTC).isoformat(),
            event.actor,
            event.action,
            event.subject,
            event.detail,
            event.org,
            event.address,
            event.outcome,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str = "",
    detail: str = "",
    org: str = "",
    address: str = "",
    outcome: str = "success",
) -> AuditEvent:
    """Append one event in the caller's transaction (commit with the change it describes)."""
    locked = session.exec(
        update(AuditHead).where(col(AuditHead.id) == 1).values(seq=col(AuditHead.seq) + 1)
    )
    if locked.rowcount == 0:  # a database made before the head row existed
        session.add(AuditHead(id=1, seq=1, hash=GENESIS))
        session.flush()
    seq, prev = session.exec(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    event = AuditEvent(
        seq=seq,
        at=utcnow(),
        actor=_clip(actor, 140),
        action=_clip(action, 64),
        subject=_clip(subject, 200),
        detail=detail,
        org=org[:63],
        address=address[:64],
        outcome=outcome[:16],
        prev_hash=prev,
        hash="",
    )
    event.hash = entry_hash(prev, event)
    session.add(event)
    session.exec(update(AuditHead).where(col(AuditHead.id) == 1).values(hash=event.hash))
    return event


_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]
_HEAD = AuditHead.__table__  # type: ignore[attr-defined]


def record_many(session: Session, events: Sequence[Mapping[str, str]]) -> tuple[int, int]:
    """Append `events` (the keyword arguments of `record`: actor, action, subject, detail,
    org, address, outcome) in order, in the caller's transaction, as `record` would one by
    one: the same chain and hashes, but one lock of the head, one multi-row insert and one
    head update for the whole batch. Returns (first seq, last seq); (0, 0) for no events."""
    count = len(events)
    if count == 0:
        return 0, 0
    connection = session.connection()  # the session's transaction, without the ORM's work
    locked = connection.execute(
        update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + count)
    )
    if locked.rowcount == 0:  # a database made before the head row existed
        connection.execute(insert(_HEAD).values(id=1, seq=count, hash=GENESIS))
    last, prev = connection.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).one()
    seq = last - count
    rows: list[dict[str, object]] = []
    for fields in events:
        seq += 1
        event = AuditEvent(
            seq=seq,
            at=utcnow(),
            actor=_clip(fields.get("actor", ""), 140),
            action=_clip(fields.get("action", ""), 64),
            subject=_clip(fields.get("subject", ""), 200),
            detail=fields.get("detail", ""),
            org=fields.get("org", "")[:63],
            address=fields.get("address", "")[:64],
            outcome=fields.get("outcome", "success")[:16],
            prev_hash=prev,
            hash="",
        )
        event.hash = prev = entry_hash(prev, event)
        rows.append(event.model_dump(exclude={"id"}))
    connection.execute(insert(_EVENTS), rows)
    connection.execute(update(_HEAD).where(_HEAD.c.id == 1).values(hash=prev))
    return last - count + 1, last


def _checkpoint_message(seq: int, digest: str) -> bytes:
    return f"{_CHECKPOINT_TAG} {seq} {digest}".encode()


def checkpoint(session: Session, key: ec.EllipticCurvePrivateKey) -> AuditCheckpoint | None:
    """Sign the newest event (commits). None when the log is empty or already checkpointed."""
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).first()
    if head is None or head.seq == 0 or session.get(AuditCheckpoint, head.seq) is not None:
        return None
    signature = key.sign(_checkpoint_message(head.seq, head.hash), ec.ECDSA(hashes.SHA256()))
    row = AuditCheckpoint(
        seq=head.seq, hash=head.hash, signature=base64.b64encode(signature).decode()
    )
    session.add(row)
    session.commit()
    return row


@dataclass(frozen=True)
class VerifyReport:
    events: int
    checkpoints: int
    last_seq: int
    last_hash: str


def verify_chain(
    session: Session, public_key: ec.EllipticCurvePublicKey | None = None
) -> VerifyReport:
    """Check every link, the head and (with the hub's key) every checkpoint.

    Raises AuditBroken at the first problem, naming the event's seq.
    """
    prev = GENESIS
    expected_seq = 1
    hashes_at: dict[int, str] = {}
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        if event.seq != expected_seq:
            raise AuditBroken(
                f"audit event {expected_seq} is missing (found {event.seq} next): events were "
                "removed"
            )
        if event.prev_hash != prev:
            raise AuditBroken(f"audit chain broken at event {event.seq}: previous hash differs")
        if event.hash != entry_hash(prev, event):
            raise AuditBroken(f"audit event {event.seq} was edited: its hash does not match")
        prev = event.hash
        hashes_at[event.seq] = event.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).first()
    if head is not None and (head.seq, head.hash) != (last_seq, prev):
        raise AuditBroken(
            f"the log ends at event {last_seq} but its head says {head.seq}: events were "
            "removed from the end"
        )
    checkpoints = session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq))).all()
    for cp in checkpoints:
        if public_key is not None:
            try:
                public_key.verify(
                    base64.b64decode(cp.signature),
                    _checkpoint_message(cp.seq, cp.hash),
                    ec.ECDSA(hashes.SHA256()),
                )
            except (InvalidSignature, ValueError):
                raise AuditBroken(
                    f"the checkpoint at event {cp.seq} is not signed by this hub"
                ) from None
        if cp.seq > last_seq:
            raise AuditBroken(
                f"a signed checkpoint covers event {cp.seq} but the log ends at {last_seq}: "
                "the log was truncated"
            )
        if hashes_at.get(cp.seq) != cp.hash:
            raise AuditBroken(f"event {cp.seq} differs from its signed checkpoint")
    return VerifyReport(
        events=last_seq, checkpoints=len(checkpoints), last_seq=last_seq, last_hash=prev
    )


def verify_external_checkpoint(
    report: VerifyReport, session: Session, seq: int, digest: str
) -> None:
    """Compare the log with a checkpoint kept outside the database (e.g. exported earlier)."""
    if seq > report.last_seq:
        raise AuditBroken(
            f"the exported checkpoint covers event {seq} but the log ends at {report.last_seq}: "
            "the log was truncated"
        )
    event = session.exec(select(AuditEvent).where(AuditEvent.seq == seq)).first()
    if event is None or event.hash != digest:
        raise AuditBroken(f"event {seq} differs from the exported checkpoint")
