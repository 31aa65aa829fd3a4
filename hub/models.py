"""Hub tables. The index holds what manifests say and nothing about patient identity."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    """A stored timestamp as UTC-aware (SQLite hands them back naive; they are stored in UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class Organization(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=63)
    name: str = Field(default="", max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow)


class Site(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org: str = Field(foreign_key="organization.id", index=True, max_length=63)
    site: str = Field(index=True, max_length=63)
    name: str = Field(default="", max_length=200)
    certificate_serial: str | None = Field(default=None, index=True, max_length=64)
    certificate_pem: str | None = None
    encryption_key_id: str | None = Field(default=None, max_length=64)
    encryption_public_key: str | None = None
    encryption_key_signature: str | None = None
    enrolled_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    last_heartbeat: str | None = None


class Bundle(SQLModel, table=True):
    """One sealed study bundle, indexed from its plaintext manifest only."""

    __table_args__ = (
        Index("ix_bundle_sender_created", "sender_org", "sender_site", "created_at"),
        Index("ix_bundle_org_created", "sender_org", "created_at"),
    )

    bundle_id: str = Field(primary_key=True, max_length=32)
    sender_org: str = Field(index=True, max_length=63)
    sender_site: str = Field(max_length=63)
    mode: str = Field(max_length=16)
    recipients: str = Field(description="JSON list of org ids")
    modalities: str = Field(default="[]")
    facts: str = Field(default="", description="JSON of wire.facts.StudyFacts (no identity)")
    instance_count: int = 0
    payload_bytes: int = 0
    chunk_count: int = 0
    chunk_size: int = 0
    header_digest: str = Field(max_length=64)
    signer_serial: str = Field(default="", max_length=64)
    state: str = Field(default="receiving", index=True, max_length=16)
    created_at: dt.datetime = Field(default_factory=utcnow)
    completed_at: dt.datetime | None = None


class ReceivedChunk(SQLModel, table=True):
    bundle_id: str = Field(primary_key=True, foreign_key="bundle.bundle_id", max_length=32)
    index: int = Field(primary_key=True)
    size: int = 0
    received_at: dt.datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    __table_args__ = (Index("ix_delivery_recipient", "recipient_org", "created_at"),)

    bundle_id: str = Field(primary_key=True, foreign_key="bundle.bundle_id", max_length=32)
    recipient_org: str = Field(primary_key=True, max_length=63)
    state: str = Field(default="queued", index=True, max_length=16)
    created_at: dt.datetime = Field(default_factory=utcnow)
    acked_at: dt.datetime | None = None
    acked_by_site: str | None = None


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained log of decisions, transfers, reads and admin changes.

    Names people, sites, orgs and bundle ids, never patients. `seq` is gap-free from 1; each
    `hash` covers every column and the previous event's hash (see `hub.audit.chain`).
    """

    __table_args__ = (Index("ix_auditevent_org_seq", "org", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: dt.datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=140)
    action: str = Field(max_length=64)
    subject: str = Field(default="", max_length=200)
    detail: str = Field(default="")
    org: str = Field(default="", max_length=63)
    address: str = Field(default="", max_length=64)
    outcome: str = Field(default="success", max_length=16)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """One row: the newest event's seq and hash. Appends lock it, so they are serialized across
    hub processes on one database (a row lock on PostgreSQL, the write lock on SQLite)."""

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(default="0" * 64, max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """The hub's signature over (seq, hash): truncating the log below it is detected."""

    seq: int = Field(primary_key=True)
    hash: str = Field(max_length=64)
    at: dt.datetime = Field(default_factory=utcnow)
    signature: str = Field(max_length=256)


class SharingPolicy(SQLModel, table=True):
    """The current sharing policy of a site; every change bumps `version` (history in audit)."""

    org: str = Field(primary_key=True, max_length=63)
    site: str = Field(primary_key=True, max_length=63)
    version: int = 0
    rules: str = Field(default="[]", description="JSON list of wire.policy.PolicyRule")
    updated_at: dt.datetime = Field(default_factory=utcnow)


class SiteCertificate(SQLModel, table=True):
    """Every certificate issued to a site: headers signed before a renewal still verify."""

    serial: str = Field(primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=63)
    site: str = Field(max_length=63)
    certificate_pem: str
    issued_at: dt.datetime = Field(default_factory=utcnow)


class QuotaRefusal(SQLModel, table=True):
    """The last request of a site refused by a quota (`hub/quotas.py`), for the admin's view."""

    __tablename__ = "quota_refusal"

    org: str = Field(primary_key=True, max_length=63)
    site: str = Field(primary_key=True, max_length=63)
    limit_name: str = Field(max_length=64)
    detail: str = Field(max_length=500)
    refusals: int = 0
    at: dt.datetime = Field(default_factory=utcnow)
