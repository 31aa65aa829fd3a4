"""Append-only, hash-chained audit log. Entries name sites, orgs and bundle ids, never patients."""

from __future__ import annotations

import hashlib
import json

from sqlmodel import Session, col, select

from hub.models import AuditEvent, utcnow

GENESIS = "0" * 64


def _entry_hash(prev_hash: str, at: str, actor: str, action: str, subject: str, detail: str) -> str:
    material = json.dumps([prev_hash, at, actor, action, subject, detail], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def record(
    session: Session, *, actor: str, action: str, subject: str = "", detail: str = ""
) -> None:
    """Append one event in the caller's transaction (commit with the change it describes)."""
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)).first()
    prev = last.hash if last else GENESIS
    at = utcnow()
    digest = _entry_hash(prev, at.isoformat(), actor, action, subject, detail)
    session.add(
        AuditEvent(
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
            prev_hash=prev,
            hash=digest,
        )
    )


def verify_chain(session: Session) -> int:
    """Check every link; return the number of events. Raises ValueError at the first break."""
    prev = GENESIS
    count = 0
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))):
        at = event.at.replace(tzinfo=event.at.tzinfo or utcnow().tzinfo)
        expected = _entry_hash(
            prev, at.isoformat(), event.actor, event.action, event.subject, event.detail
        )
        if event.prev_hash != prev or event.hash != expected:
            raise ValueError(f"audit chain broken at event {event.id}")
        prev = event.hash
        count += 1
    return count
