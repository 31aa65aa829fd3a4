"""Tables of research collections. Every indexed value is a de-identified one: the hub only
indexes instances that passed its own verification (`hub.collections.store`)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models import utcnow


class Collection(SQLModel, table=True):
    """A research collection and its HPKE (X25519) key pair; the private key is stored only
    sealed under the operator's key (`hub.collections.keys`)."""

    __tablename__ = "research_collection"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=63)
    description: str = Field(default="", max_length=2000)
    org: str = Field(foreign_key="organization.id", index=True, max_length=63)
    profile: str = Field(default="[]", description="JSON list of de-identification options")
    key_id: str = Field(max_length=64)
    public_key: str = Field(max_length=64, description="X25519 public key, base64")
    sealed_private_key: str = Field(description="AES-GCM under the operator's key, base64")
    key_signature: str = Field(default="", description="the hub's signature over the key")
    created_at: dt.datetime = Field(default_factory=utcnow)


class CollectionGrant(SQLModel, table=True):
    """A person who may read a collection (researchers; admins see theirs without one)."""

    __tablename__ = "collection_grant"

    collection_id: int = Field(foreign_key="research_collection.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True)
    granted_by: str = Field(default="", max_length=140)
    granted_at: dt.datetime = Field(default_factory=utcnow)


class CollectionStudy(SQLModel, table=True):
    __tablename__ = "collection_study"
    __table_args__ = (
        UniqueConstraint("collection_id", "study_uid", name="uq_cstudy_uid"),
        Index("ix_cstudy_date", "collection_id", "study_date"),
        Index("ix_cstudy_added", "collection_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="research_collection.id")
    study_uid: str = Field(max_length=64)
    study_date: str = Field(default="", max_length=8)
    study_time: str = Field(default="", max_length=16)
    accession: str = Field(default="", max_length=64)
    study_id: str = Field(default="", max_length=16)
    description: str = Field(default="", max_length=64)
    patient_id: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=200)
    patient_sex: str = Field(default="", max_length=16)
    modalities: str = Field(default="", max_length=200, description="\\CT\\MR\\ for matching")
    series_count: int = 0
    instance_count: int = 0
    attributes: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class CollectionSeries(SQLModel, table=True):
    __tablename__ = "collection_series"
    __table_args__ = (
        UniqueConstraint("collection_id", "series_uid", name="uq_cseries_uid"),
        Index("ix_cseries_study", "collection_id", "study_uid"),
        Index("ix_cseries_modality", "collection_id", "modality"),
        Index("ix_cseries_body_part", "collection_id", "body_part"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="research_collection.id")
    study_uid: str = Field(max_length=64)
    series_uid: str = Field(max_length=64)
    modality: str = Field(default="", max_length=16)
    series_number: int | None = None
    description: str = Field(default="", max_length=64)
    body_part: str = Field(default="", max_length=64)
    series_date: str = Field(default="", max_length=8)
    series_time: str = Field(default="", max_length=16)
    instance_count: int = 0
    attributes: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class CollectionInstance(SQLModel, table=True):
    __tablename__ = "collection_instance"
    __table_args__ = (
        UniqueConstraint("collection_id", "sop_uid", name="uq_cinstance_uid"),
        Index("ix_cinstance_series", "collection_id", "study_uid", "series_uid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="research_collection.id")
    study_uid: str = Field(max_length=64)
    series_uid: str = Field(max_length=64)
    sop_uid: str = Field(max_length=64)
    sop_class_uid: str = Field(default="", max_length=64)
    instance_number: int | None = None
    transfer_syntax: str = Field(default="", max_length=64)
    rows: int | None = None
    columns: int | None = None
    frames: int | None = None
    digest: str = Field(max_length=64, description="SHA-256 of the stored file")
    size: int = 0
    source: str = Field(default="", max_length=140)
    added_at: dt.datetime = Field(default_factory=utcnow)
    attributes: str = Field(
        default="{}", sa_column=Column(Text, nullable=False), description="DICOM JSON, no bulk"
    )


class CollectionQuarantine(SQLModel, table=True):
    """An instance the hub refused: its findings (tags and codes, never values), for the
    sending site's admins. Its bytes are not kept."""

    __tablename__ = "collection_quarantine"

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="research_collection.id", index=True)
    sender_org: str = Field(default="", index=True, max_length=63)
    sender_site: str = Field(default="", max_length=63)
    source: str = Field(default="", max_length=140)
    bundle_id: str = Field(default="", max_length=32)
    digest: str = Field(max_length=64)
    findings: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    at: dt.datetime = Field(default_factory=utcnow)


class CollectionIngest(SQLModel, table=True):
    """A complete bundle's instances for one collection, queued for the hub's ingest worker
    (`hub.collections.worker`). Written in the completion's transaction; `pending` until the
    worker has stored or quarantined every instance (`done`); `failed` (with an error that
    names no patient) is tried again after `not_before`."""

    __tablename__ = "collection_ingest"
    __table_args__ = (Index("ix_cingest_due", "state", "not_before"),)

    bundle_id: str = Field(primary_key=True, foreign_key="bundle.bundle_id", max_length=32)
    recipient: str = Field(primary_key=True, max_length=63, description="collection--NAME")
    sender_org: str = Field(index=True, max_length=63)
    sender_site: str = Field(default="", max_length=63)
    state: str = Field(default="pending", max_length=16, description="pending|failed|done")
    attempts: int = 0
    error: str = Field(default="", max_length=300)
    counts: str = Field(default="", max_length=200, description="JSON: stored, duplicate, ...")
    queued_at: dt.datetime = Field(default_factory=utcnow)
    not_before: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


class CollectionVersion(SQLModel, table=True):
    """A published, immutable version: the instances it holds and a hash over them."""

    __tablename__ = "collection_version"

    collection_id: int = Field(foreign_key="research_collection.id", primary_key=True)
    version: int = Field(primary_key=True)
    content_hash: str = Field(max_length=64)
    instance_count: int = 0
    note: str = Field(default="", max_length=2000)
    published_by: str = Field(default="", max_length=140)
    published_at: dt.datetime = Field(default_factory=utcnow)


class CollectionVersionMember(SQLModel, table=True):
    __tablename__ = "collection_version_member"

    collection_id: int = Field(primary_key=True)
    version: int = Field(primary_key=True)
    instance_id: int = Field(foreign_key="collection_instance.id", primary_key=True)


class CollectionSequenceValue(SQLModel, table=True):
    """One value of one item of a sequence that QIDO-RS matches on (PS3.4 C.2.2.2.6), written
    by the one indexing function (`hub.collections.store.index_rows`). `owner` is the UID of the
    study, series or instance the sequence belongs to (the sequence's level says which);
    `item` numbers the items from 0, so keys that must match in the same item are rows with
    the same `item`. Values are de-identified ones, as everything in the index."""

    __tablename__ = "collection_sequence_value"
    __table_args__ = (
        Index("ix_cseqvalue_match", "collection_id", "sequence", "item_key", "value"),
        Index("ix_cseqvalue_owner", "collection_id", "owner", "sequence", "item"),
    )

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="research_collection.id")
    owner: str = Field(max_length=64)
    sequence: str = Field(max_length=8, description="tag of the sequence, 8 hex digits")
    item: int = 0
    item_key: str = Field(max_length=8, description="tag of the item's attribute")
    value: str = Field(max_length=200)
