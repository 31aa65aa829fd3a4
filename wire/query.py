"""Sealed federated query/retrieve messages: a request's keys and an organization's answer.

A clinician's query (patient name, ID, birth date, ...) must reach the answering organization
without the hub learning it, and the answer (matching studies, identified when the policy says
so) must come back the same way. Both travel as a `SealedMessage`:

- `kind` is "query" (B -> A: `QueryKeys` or `RetrieveOrder`) or "answer" (A -> B: `Answer`);
- the plaintext body is canonical JSON, encrypted once with a random 32-byte AES-256-GCM key,
  nonce random 12 bytes, AAD = b"hexchange/v1 sealed " || kind || " " || request_id || " " ||
  sender_org || "/" || sender_site, so a ciphertext cannot be replayed under another request,
  kind or sender;
- that key is wrapped per recipient site key with HPKE (X25519, HKDF-SHA256, AES-256-GCM),
  info = b"hexchange/v1 query-key " || kind || " " || request_id (as bundles do);
- the sending site signs `signed_bytes()` (ECDSA P-256 over every field but the signature) and
  carries its certificate, which the receiver checks against the network CA.

The hub stores and routes the sealed bytes and sees only what the routing needs (request id,
kind, sender, recipients' key ids, sizes). Sizes are checked before JSON parsing and before any
cryptography: `MAX_QUERY_BYTES` for a query, `MAX_ANSWER_BYTES` for an answer.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wire import signatures
from wire.canonical import canonical_json
from wire.envelope import RecipientKey
from wire.errors import NotARecipient, WireError
from wire.manifest import BundleId, Name, UtcDatetime

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_MATCHES",
    "MAX_QUERY_BYTES",
    "Answer",
    "MessageKind",
    "Outcome",
    "QueryKeys",
    "RetrieveOrder",
    "SealedMessage",
    "StudyMatch",
    "new_request_id",
    "open_message",
    "parse_sealed",
    "seal_message",
]

MAX_QUERY_BYTES = 64 * 1024
"""Largest sealed query accepted (a query is a handful of keys for up to 64 recipient keys)."""
MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Largest sealed answer accepted (`MAX_MATCHES` studies with their keys fit easily)."""
MAX_MATCHES = 500
"""Most studies one answer lists; an organization with more says so in `Answer.reason`."""
MAX_RECIPIENT_KEYS = 64

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_AAD_PREFIX = b"hexchange/v1 sealed "
_KEY_INFO_PREFIX = b"hexchange/v1 query-key "
_SIGNED_TAG = b"hexchange/v1 sealed-message\n"
_NONCE_BYTES = 12
_KEY_BYTES = 32

MessageKind = Literal["query", "answer"]
Outcome = Literal[
    "matches",  # matching studies listed
    "no_match",  # the keys match nothing the policy lets this organization see
    "refused",  # the answering organization's policy does not allow this request
    "awaiting_approval",  # a person at the answering organization must approve it first
    "accepted",  # a retrieve: the study is on its way
    "failed",  # the answering agent could not do it (its PACS down...); reason says what
]

_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DA = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")

DicomText = Annotated[str, Field(max_length=64, pattern=_PRINTABLE.pattern)]
Uid = Annotated[str, Field(max_length=64, pattern=_UID.pattern)]


def new_request_id() -> str:
    return uuid.uuid4().hex


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QueryKeys(_Model):
    """What B's PACS asked for (C-FIND keys). Empty strings and None mean "not given".

    DICOM wildcards (* and ?) are passed on as given; `study_date` is a DA or DA range.
    At least one patient-identifying key or a study UID is required: the federation answers
    "priors of this patient", never "every study you have".
    """

    level: Literal["PATIENT", "STUDY"] = "STUDY"
    patient_name: DicomText | None = None
    patient_id: DicomText | None = None
    issuer_of_patient_id: DicomText | None = None
    patient_birth_date: Annotated[str, Field(pattern=r"^\d{8}$")] | None = None
    other_patient_ids: list[DicomText] = Field(default_factory=list, max_length=16)
    study_uids: list[Uid] = Field(default_factory=list, max_length=64)
    accession_number: Annotated[str, Field(max_length=16, pattern=_PRINTABLE.pattern)] | None = None
    study_date: Annotated[str, Field(max_length=17, pattern=_DA.pattern)] | None = None
    modalities: list[str] = Field(default_factory=list, max_length=16)
    complete_when_back: bool = Field(
        default=False,
        description="if the organization is offline, answer when it returns (B asked for it)",
    )

    @field_validator("modalities")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        value = [v.strip().upper() for v in value]
        for v in value:
            if not _CS.fullmatch(v):
                raise ValueError("modalities are DICOM code strings (A-Z, 0-9, _; <= 16)")
        return value

    @property
    def identifies_patient(self) -> bool:
        def given(text: str | None) -> bool:
            return bool(text and text.strip("*? "))

        return (
            given(self.patient_name)
            or given(self.patient_id)
            or bool(self.other_patient_ids)
            or bool(self.study_uids)
            or given(self.accession_number)
        )


class RetrieveOrder(_Model):
    """B asks A to send one study it listed in an answer (C-MOVE / C-GET at B)."""

    study_uid: Uid
    query_request_id: BundleId | None = Field(
        default=None, description="the C-FIND request whose answer listed the study"
    )


class QueryBody(_Model):
    """The plaintext of a "query" message: a find or a retrieve, never both."""

    find: QueryKeys | None = None
    retrieve: RetrieveOrder | None = None


class StudyMatch(_Model):
    """One study in an answer; patient fields only when the answering policy says identified."""

    study_uid: Uid
    study_date: Annotated[str, Field(max_length=8)] | None = None
    study_time: Annotated[str, Field(max_length=16)] | None = None
    study_description: DicomText | None = None
    accession_number: Annotated[str, Field(max_length=16)] | None = None
    modalities: list[str] = Field(default_factory=list, max_length=32)
    series: int | None = Field(default=None, ge=0)
    instances: int | None = Field(default=None, ge=0)
    patient_name: DicomText | None = None
    patient_id: DicomText | None = None
    issuer_of_patient_id: DicomText | None = None
    patient_birth_date: Annotated[str, Field(max_length=8)] | None = None
    patient_sex: Annotated[str, Field(max_length=16)] | None = None
    source_org: Name
    institution_name: DicomText | None = None
    retrieve_ae_title: Annotated[str, Field(max_length=16)] | None = None


class Answer(_Model):
    outcome: Outcome
    reason: str = Field(default="", max_length=500, pattern=_PRINTABLE.pattern)
    matches: list[StudyMatch] = Field(default_factory=list, max_length=MAX_MATCHES)
    instances: int | None = Field(default=None, ge=0, description="a retrieve: how many")


class Stanza(_Model):
    key_id: str = Field(min_length=1, max_length=256)
    wrapped_key: str = Field(max_length=512)


class SealedMessage(_Model):
    """The wire form. Everything here is visible to the hub; nothing identifies a patient."""

    v: Literal[1] = 1
    kind: MessageKind
    request_id: BundleId
    sender_org: Name
    sender_site: Name
    created_at: UtcDatetime
    stanzas: list[Stanza] = Field(min_length=1, max_length=MAX_RECIPIENT_KEYS)
    nonce: str = Field(max_length=32)
    ciphertext: str = Field(max_length=2 * MAX_ANSWER_BYTES)
    sender_certificate_pem: str = Field(max_length=16384)
    signature: str = Field(default="", max_length=512)

    def signed_bytes(self) -> bytes:
        return _SIGNED_TAG + canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def to_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    def stanza_for(self, key_id: str) -> Stanza | None:
        return next((s for s in self.stanzas if s.key_id == key_id), None)


def _limit(kind: MessageKind) -> int:
    return MAX_QUERY_BYTES if kind == "query" else MAX_ANSWER_BYTES


def _aad(kind: str, request_id: str, sender_org: str, sender_site: str) -> bytes:
    return _AAD_PREFIX + f"{kind} {request_id} {sender_org}/{sender_site}".encode("ascii")


def _info(kind: str, request_id: str) -> bytes:
    return _KEY_INFO_PREFIX + f"{kind} {request_id}".encode("ascii")


def seal_message(
    body: QueryBody | Answer,
    *,
    request_id: str,
    sender_org: str,
    sender_site: str,
    recipients: Sequence[RecipientKey],
    signing_key: ec.EllipticCurvePrivateKey,
    certificate_pem: str,
    now: dt.datetime | None = None,
) -> SealedMessage:
    """Encrypt `body` to every recipient key and sign it; raises WireError when too large."""
    kind: MessageKind = "query" if isinstance(body, QueryBody) else "answer"
    if not recipients:
        raise WireError("a sealed message needs at least one recipient key")
    if len(recipients) > MAX_RECIPIENT_KEYS:
        raise WireError(f"{len(recipients)} recipient keys, limit is {MAX_RECIPIENT_KEYS}")
    plaintext = canonical_json(body.model_dump(mode="json"))
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(
        nonce, plaintext, _aad(kind, request_id, sender_org, sender_site)
    )
    info = _info(kind, request_id)
    stanzas = [
        Stanza(
            key_id=r.key_id,
            wrapped_key=signatures.b64encode(_SUITE.encrypt(key, r.public_key, info=info)),
        )
        for r in recipients
    ]
    unsigned = SealedMessage(
        kind=kind,
        request_id=request_id,
        sender_org=sender_org,
        sender_site=sender_site,
        created_at=now or dt.datetime.now(dt.UTC),
        stanzas=stanzas,
        nonce=signatures.b64encode(nonce),
        ciphertext=signatures.b64encode(ciphertext),
        sender_certificate_pem=certificate_pem,
    )
    sealed = unsigned.model_copy(
        update={"signature": signatures.sign(signing_key, unsigned.signed_bytes())}
    )
    size = len(sealed.to_bytes())
    if size > _limit(kind):
        raise WireError(f"sealed {kind} would be {size} bytes, limit is {_limit(kind)}")
    return sealed


def parse_sealed(data: bytes, kind: MessageKind) -> SealedMessage:
    """Parse a sealed message of `kind`: size first, then JSON and schema (no cryptography)."""
    if len(data) > _limit(kind):
        raise WireError(f"sealed {kind} is {len(data)} bytes, limit is {_limit(kind)}")
    try:
        message = SealedMessage.model_validate_json(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(root)" for e in exc.errors())
        raise WireError(f"not a sealed {kind} message; invalid fields: {fields[:300]}") from None
    if message.kind != kind:
        raise WireError(f"expected a sealed {kind}, got a sealed {message.kind}")
    return message


def verify_message(message: SealedMessage, sender_public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the sender's signature (the caller has checked its certificate); SignatureInvalid."""
    signatures.verify(
        sender_public_key,
        message.signed_bytes(),
        message.signature,
        f"sealed {message.kind} of request {message.request_id}",
    )


def open_message(
    message: SealedMessage,
    *,
    key_id: str,
    private_key: X25519PrivateKey,
    sender_public_key: ec.EllipticCurvePublicKey,
) -> QueryBody | Answer:
    """Verify the signature, unwrap the key filed under `key_id`, decrypt and parse the body.

    Raises SignatureInvalid, NotARecipient, or WireError (tampered or malformed)."""
    verify_message(message, sender_public_key)
    stanza = message.stanza_for(key_id)
    if stanza is None:
        raise NotARecipient(f"request {message.request_id} has no stanza for key {key_id!r}")
    try:
        key = _SUITE.decrypt(
            signatures.b64decode(stanza.wrapped_key),
            private_key,
            info=_info(message.kind, message.request_id),
        )
    except (InvalidTag, ValueError):
        raise NotARecipient(
            f"stanza for key {key_id!r} of request {message.request_id} does not open"
        ) from None
    if len(key) != _KEY_BYTES:
        raise NotARecipient(f"stanza for key {key_id!r} holds no AES-256 key")
    try:
        nonce = signatures.b64decode(message.nonce)
        plaintext = AESGCM(key).decrypt(
            nonce,
            signatures.b64decode(message.ciphertext),
            _aad(message.kind, message.request_id, message.sender_org, message.sender_site),
        )
    except (InvalidTag, ValueError):
        raise WireError(
            f"sealed {message.kind} of request {message.request_id} was altered"
        ) from None
    model: type[QueryBody] | type[Answer] = QueryBody if message.kind == "query" else Answer
    try:
        return model.model_validate_json(plaintext)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise WireError(
            f"sealed {message.kind} of request {message.request_id} has invalid fields: "
            f"{fields[:300]}"
        ) from None
