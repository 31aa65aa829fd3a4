"""The bundle manifest: the plaintext, hub-visible description of a sealed study bundle.

PRIVACY: the manifest travels in clear inside the sealed header. The hub reads it, indexes it
and shows it to admins, for identified clinical shares too. It must therefore hold NO patient
identity: no names, patient IDs, accession numbers, DICOM UIDs, birth dates, study dates or
descriptions, and nothing derived from them. Every field below is either about the transfer
(who sent it, to whom, how big, how many chunks) or coarse and non-identifying (mode, instance
count, modality codes). Anything about the patient or study belongs in the encrypted payload.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from wire.canonical import canonical_json
from wire.facts import StudyFacts
from wire.version import MAX_CHUNK_SIZE, MAX_CHUNKS, MAX_STANZAS

BundleId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
"""32 lower-case hex digits (a uuid4 without dashes)."""

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
"""An org or site name, spelled as certificates spell it: [a-z0-9-], 1-63 characters."""

Modality = Annotated[str, Field(pattern=r"^[A-Z0-9_]{1,16}$")]
"""A DICOM modality code (CS), e.g. CT, MR, US."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalized to UTC (naive datetimes are refused)."""

Mode = Literal["identified", "deidentified"]

HeldBackReason = Literal[
    "unreadable",
    "incomplete",
    "verification-failed",
    "pixel-scrub",
    "document",
    "policy",
    "error",
]
"""Why instances of the study were held back (quarantined or dropped by policy): a class, never
a value (`deidentify.heldback`)."""

HeldBack = Annotated[dict[HeldBackReason, Annotated[int, Field(ge=1)]], Field(max_length=7)]
"""Instances of the study not in the bundle, by reason class. Absent: none held back."""


def _unique_recipients(recipients: list[str]) -> list[str]:
    if len(set(recipients)) != len(recipients):
        raise ValueError("recipients must be unique")
    return recipients


Recipients = Annotated[
    list[Name], Field(min_length=1, max_length=MAX_STANZAS), AfterValidator(_unique_recipients)
]


def new_bundle_id() -> str:
    """A fresh random bundle id (uuid4 hex)."""
    return uuid.uuid4().hex


def expected_chunk_count(payload_bytes: int, chunk_size: int) -> int:
    """Chunks needed for `payload_bytes`; an empty payload is one empty chunk."""
    return max(1, -(-payload_bytes // chunk_size))


class ManifestDraft(BaseModel):
    """What the sender knows before sealing; `seal` adds version, sizes and chunking.

    Holds no patient identity: see the module docstring.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle_id: BundleId
    sender_org: Name
    sender_site: Name
    recipients: Recipients
    mode: Mode
    instance_count: int = Field(ge=0)
    modalities: list[Modality]
    created_at: UtcDatetime
    facts: StudyFacts | None = None
    held_back: HeldBack | None = None


class Manifest(BaseModel):
    """Plaintext, signed description of a sealed bundle, visible to and indexed by the hub.

    It must hold NO patient identity (no names, IDs, UIDs, study dates or descriptions): for
    identified shares the hub may not learn who the patient is. `recipients` are org ids;
    `payload_bytes`, `chunk_size` and `chunk_count` describe the encrypted chunking and must
    agree with each other.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle_id: BundleId
    wire_version: int
    sender_org: Name
    sender_site: Name
    recipients: Recipients
    mode: Mode
    instance_count: int = Field(ge=0)
    modalities: list[Modality]
    payload_bytes: int = Field(ge=0)
    chunk_size: int = Field(ge=1, le=MAX_CHUNK_SIZE)
    chunk_count: int = Field(ge=1, le=MAX_CHUNKS)
    created_at: UtcDatetime
    facts: StudyFacts | None = Field(
        default=None, description="what sharing rules match on, without identity (see module)"
    )
    # Instances held back by reason class; None (and then absent from every serialized form,
    # so manifests without it keep their exact canonical bytes) when the study is complete.
    held_back: HeldBack | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_held_back(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("held_back") is None:
            data.pop("held_back", None)
        return data

    @model_validator(mode="after")
    def _chunking_agrees(self) -> Self:
        expected = expected_chunk_count(self.payload_bytes, self.chunk_size)
        if self.chunk_count != expected:
            raise ValueError(
                f"chunk_count {self.chunk_count} does not fit payload_bytes {self.payload_bytes} "
                f"at chunk_size {self.chunk_size} (expected {expected})"
            )
        if self.facts is not None and not self.facts.is_indexable:
            raise ValueError(
                "facts in a manifest carry no study description and the age only in 5-year "
                "bands (use StudyFacts.without_identity())"
            )
        return self

    def canonical_bytes(self) -> bytes:
        """Deterministic JSON (sorted keys, compact, UTF-8) of the whole manifest."""
        return canonical_json(
            self.model_dump(mode="json", exclude={"facts"} if self.facts is None else None)
        )

    def chunk_plaintext_size(self, index: int) -> int:
        """Plaintext length of chunk `index` (all full except possibly the last)."""
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.payload_bytes - (self.chunk_count - 1) * self.chunk_size
