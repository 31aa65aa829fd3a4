"""The sealed header: signed manifest, recipient stanzas and chunk digests, and its parser.

The header is what the hub stores and indexes next to the ciphertext chunks. It is JSON; the
bytes that are hashed and signed are its canonical form (`wire.canonical`), so any JSON
spelling of the same content verifies the same way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from wire.canonical import canonical_json
from wire.errors import HeaderTooLarge, MalformedHeader, UnsupportedVersion
from wire.manifest import Manifest
from wire.signatures import b64decode
from wire.version import MAX_CHUNKS, MAX_HEADER_BYTES, MAX_STANZAS, WIRE_VERSION

WRAPPED_KEY_BYTES = 32 + 32 + 16
"""HPKE X25519 encapsulated key (32) + AES-256-GCM ciphertext of a 32-byte key (32 + 16 tag)."""

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _wrapped_key_shape(value: str) -> str:
    try:
        raw = b64decode(value)
    except ValueError:
        raise ValueError("wrapped_key is not valid base64") from None
    if len(raw) != WRAPPED_KEY_BYTES:
        raise ValueError(f"wrapped_key must decode to {WRAPPED_KEY_BYTES} bytes")
    return value


class Stanza(BaseModel):
    """The bundle's data key wrapped (HPKE) to one recipient key.

    `wrapped_key` is base64 of HPKE enc || ciphertext, with
    info = b"hexchange/v1 data-key " + bundle_id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(min_length=1, max_length=256)
    wrapped_key: Annotated[str, AfterValidator(_wrapped_key_shape)]


class SealedHeader(BaseModel):
    """Everything a receiver needs besides the chunks, signed by the sending site.

    `chunk_digests` are sha256 hex of each ciphertext chunk in order. `key_commitment` is
    HMAC-SHA256(data key, b"hexchange/v1 key-commitment " + bundle_id) in hex: it binds the
    header to exactly one data key, so every recipient provably decrypts the same bytes and a
    wrong key is told apart from a tampered chunk. `signature` is base64 DER ECDSA P-256/SHA-256
    over `signed_bytes()`, made with the key identified by the caller-chosen `signer_key_id`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest: Manifest
    stanzas: list[Stanza] = Field(min_length=1, max_length=MAX_STANZAS)
    chunk_digests: list[Sha256Hex] = Field(min_length=1, max_length=MAX_CHUNKS)
    key_commitment: Sha256Hex
    signer_key_id: str = Field(min_length=1, max_length=256)
    signature: str = Field(max_length=512)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.chunk_digests) != self.manifest.chunk_count:
            raise ValueError(
                f"{len(self.chunk_digests)} chunk digests for chunk_count "
                f"{self.manifest.chunk_count}"
            )
        key_ids = [s.key_id for s in self.stanzas]
        if len(set(key_ids)) != len(key_ids):
            raise ValueError("stanza key_ids must be unique")
        return self

    def to_bytes(self) -> bytes:
        """Canonical JSON of the whole header, signature included."""
        return canonical_json(self.model_dump(mode="json"))

    def signed_bytes(self) -> bytes:
        """Canonical JSON of everything except `signature`: the bytes the signature covers."""
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def digest(self) -> str:
        """sha256 hex of `to_bytes()`; names this exact header in receipts."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def stanza_for(self, key_id: str) -> Stanza | None:
        for stanza in self.stanzas:
            if stanza.key_id == key_id:
                return stanza
        return None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _precheck(raw: Any) -> None:
    """Version and count caps on the raw JSON, before schema validation or any cryptography."""
    if not isinstance(raw, dict):
        raise MalformedHeader("header is not a JSON object")
    manifest = raw.get("manifest")
    if not isinstance(manifest, dict):
        raise MalformedHeader("header has no manifest object")
    version = manifest.get("wire_version")
    if type(version) is not int:
        raise MalformedHeader("manifest.wire_version is missing or not an integer")
    if version != WIRE_VERSION:
        raise UnsupportedVersion(f"wire version {version} is not supported (want {WIRE_VERSION})")
    stanzas = raw.get("stanzas")
    if not isinstance(stanzas, list):
        raise MalformedHeader("header stanzas is not a list")
    if len(stanzas) > MAX_STANZAS:
        raise MalformedHeader(f"header has {len(stanzas)} stanzas, more than {MAX_STANZAS}")
    digests = raw.get("chunk_digests")
    if not isinstance(digests, list):
        raise MalformedHeader("header chunk_digests is not a list")
    if len(digests) > MAX_CHUNKS:
        raise MalformedHeader(f"header lists {len(digests)} chunks, more than {MAX_CHUNKS}")
    chunk_count = manifest.get("chunk_count")
    if type(chunk_count) is not int:
        raise MalformedHeader("manifest.chunk_count is missing or not an integer")
    if chunk_count > MAX_CHUNKS:
        raise MalformedHeader(f"manifest.chunk_count {chunk_count} exceeds {MAX_CHUNKS}")
    if chunk_count != len(digests):
        raise MalformedHeader(
            f"manifest.chunk_count {chunk_count} but {len(digests)} chunk digests"
        )


def parse_header(data: bytes) -> SealedHeader:
    """Parse a serialized header, enforcing size, version and count caps first.

    Order: byte length (HeaderTooLarge) before JSON parsing; then wire version
    (UnsupportedVersion), stanza and chunk counts (MalformedHeader) on the raw JSON; then the
    schema (MalformedHeader). No cryptography happens here; call `verify_header` next.
    """
    if len(data) > MAX_HEADER_BYTES:
        raise HeaderTooLarge(f"header is {len(data)} bytes, limit is {MAX_HEADER_BYTES}")
    try:
        raw = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        raise MalformedHeader(f"header is {reason}") from None
    _precheck(raw)
    try:
        return SealedHeader.model_validate_json(data, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "header"
        raise MalformedHeader(
            f"header does not match the schema ({exc.error_count()} errors; "
            f"first at {where}: {first['msg']})"
        ) from None
