"""Seal and open study bundles: chunked AES-256-GCM payload, HPKE-wrapped data key, ECDSA.

Format (wire version 1):
- one random 32-byte data key per bundle;
- the payload is cut into `chunk_size` plaintext chunks (an empty payload is one empty chunk);
  chunk i is AES-256-GCM with nonce = 4 zero bytes || u64be(i) and
  AAD = b"hexchange/v1 chunk" || bundle_id (32 ASCII hex) || u64be(i) || is_last (1 byte);
- the header lists sha256 of every ciphertext chunk, so anyone holding the header (the hub)
  can check a chunk without the key, and a receiver detects swapped or reordered chunks;
- the data key is wrapped per recipient key with HPKE (X25519, HKDF-SHA256, AES-256-GCM),
  info = b"hexchange/v1 data-key " || bundle_id;
- the sending site signs the header (ECDSA P-256, SHA-256).

Everything here works on bytes and caller-supplied streams; nothing touches files or network.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wire import signatures
from wire.errors import (
    HeaderTooLarge,
    NotARecipient,
    TamperedChunk,
    TruncatedBundle,
    WireError,
)
from wire.header import SealedHeader, Stanza, parse_header
from wire.manifest import Manifest, ManifestDraft
from wire.version import (
    CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_HEADER_BYTES,
    MAX_STANZAS,
    WIRE_VERSION,
)

__all__ = [
    "ChunkSink",
    "RecipientKey",
    "SealedHeader",
    "Stanza",
    "add_recipient",
    "check_chunk",
    "open_chunk",
    "open_data_key",
    "open_stream",
    "parse_header",
    "seal",
    "verify_header",
]

DATA_KEY_BYTES = 32
TAG_BYTES = 16
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_CHUNK_AAD_PREFIX = b"hexchange/v1 chunk"
_DATA_KEY_INFO_PREFIX = b"hexchange/v1 data-key "
_COMMITMENT_PREFIX = b"hexchange/v1 key-commitment "
# Serialized size of one chunk digest in the header: 64 hex digits, two quotes, a comma.
_DIGEST_JSON_BYTES = 67


@dataclass(frozen=True)
class RecipientKey:
    """A recipient's X25519 public key and the id its stanza is filed under."""

    key_id: str
    public_key: X25519PublicKey


class ChunkSink(Protocol):
    """Where `seal` puts ciphertext chunks (an outbox file, an upload, a dict in tests)."""

    def write_chunk(self, index: int, data: bytes) -> None: ...


def _nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def _chunk_aad(bundle_id: str, index: int, is_last: bool) -> bytes:
    return (
        _CHUNK_AAD_PREFIX
        + bundle_id.encode("ascii")
        + struct.pack(">Q", index)
        + (b"\x01" if is_last else b"\x00")
    )


def _data_key_info(bundle_id: str) -> bytes:
    return _DATA_KEY_INFO_PREFIX + bundle_id.encode("ascii")


def _key_commitment(data_key: bytes, bundle_id: str) -> str:
    message = _COMMITMENT_PREFIX + bundle_id.encode("ascii")
    return hmac.new(data_key, message, hashlib.sha256).hexdigest()


def _check_data_key(header: SealedHeader, data_key: bytes) -> None:
    if len(data_key) != DATA_KEY_BYTES or not hmac.compare_digest(
        _key_commitment(data_key, header.manifest.bundle_id), header.key_commitment
    ):
        raise WireError(f"data key does not belong to bundle {header.manifest.bundle_id}")


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Read up to `size` bytes, looping over short reads; fewer only at end of stream."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _wrap(data_key: bytes, bundle_id: str, recipient: RecipientKey) -> Stanza:
    wrapped = _SUITE.encrypt(data_key, recipient.public_key, info=_data_key_info(bundle_id))
    return Stanza(key_id=recipient.key_id, wrapped_key=signatures.b64encode(wrapped))


def _signed(
    manifest: Manifest,
    stanzas: list[Stanza],
    chunk_digests: list[str],
    key_commitment: str,
    signing_key: ec.EllipticCurvePrivateKey,
    signer_key_id: str,
) -> SealedHeader:
    unsigned = SealedHeader(
        manifest=manifest,
        stanzas=stanzas,
        chunk_digests=chunk_digests,
        key_commitment=key_commitment,
        signer_key_id=signer_key_id,
        signature="",
    )
    signature = signatures.sign(signing_key, unsigned.signed_bytes())
    header = unsigned.model_copy(update={"signature": signature})
    size = len(header.to_bytes())
    if size > MAX_HEADER_BYTES:
        raise HeaderTooLarge(f"sealed header would be {size} bytes, limit is {MAX_HEADER_BYTES}")
    return header


def _check_recipients(recipients: Sequence[RecipientKey]) -> None:
    if not recipients:
        raise WireError("a bundle needs at least one recipient key")
    if len(recipients) > MAX_STANZAS:
        raise WireError(f"{len(recipients)} recipient keys, limit is {MAX_STANZAS}")
    key_ids = [r.key_id for r in recipients]
    if len(set(key_ids)) != len(key_ids):
        raise WireError("recipient key_ids must be unique")


def seal(
    source: BinaryIO,
    sink: ChunkSink,
    *,
    draft: ManifestDraft,
    recipients: Sequence[RecipientKey],
    signing_key: ec.EllipticCurvePrivateKey,
    signer_key_id: str,
    chunk_size: int = CHUNK_SIZE,
) -> SealedHeader:
    """Encrypt `source` chunk by chunk into `sink` and return the signed header.

    Streams: holds the current chunk, one read-ahead chunk and one ciphertext at a time. Chunks
    are handed to `sink` in index order as they are made. The data key never leaves this call;
    keep `open_data_key` (as a recipient) for `add_recipient` later.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise WireError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
    _check_recipients(recipients)
    bundle_id = draft.bundle_id
    data_key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(data_key)
    digests: list[str] = []
    payload_bytes = 0
    index = 0
    current = _read_full(source, chunk_size)
    while True:
        upcoming = _read_full(source, chunk_size) if len(current) == chunk_size else b""
        is_last = not upcoming
        if index >= MAX_CHUNKS or (index + 1) * _DIGEST_JSON_BYTES > MAX_HEADER_BYTES:
            raise HeaderTooLarge(
                f"payload needs more chunks than a header can list at chunk_size {chunk_size}"
            )
        ciphertext = aead.encrypt(_nonce(index), current, _chunk_aad(bundle_id, index, is_last))
        digests.append(hashlib.sha256(ciphertext).hexdigest())
        sink.write_chunk(index, ciphertext)
        payload_bytes += len(current)
        if is_last:
            break
        current = upcoming
        index += 1
    manifest = Manifest.model_validate(
        {
            **draft.model_dump(),
            "wire_version": WIRE_VERSION,
            "payload_bytes": payload_bytes,
            "chunk_size": chunk_size,
            "chunk_count": len(digests),
        }
    )
    stanzas = [_wrap(data_key, bundle_id, r) for r in recipients]
    commitment = _key_commitment(data_key, bundle_id)
    return _signed(manifest, stanzas, digests, commitment, signing_key, signer_key_id)


def verify_header(header: SealedHeader, signer_public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the sender's signature over the header; raises SignatureInvalid."""
    signatures.verify(
        signer_public_key,
        header.signed_bytes(),
        header.signature,
        f"sealed header of bundle {header.manifest.bundle_id}",
    )


def open_data_key(header: SealedHeader, *, key_id: str, private_key: X25519PrivateKey) -> bytes:
    """Unwrap the bundle's data key with the recipient key filed under `key_id`.

    Raises NotARecipient when there is no stanza for `key_id`, it does not decrypt with
    `private_key`, or it opens to a key other than the one the header commits to.
    """
    bundle_id = header.manifest.bundle_id
    stanza = header.stanza_for(key_id)
    if stanza is None:
        raise NotARecipient(f"bundle {bundle_id} has no stanza for key {key_id!r}")
    wrapped = signatures.b64decode(stanza.wrapped_key)
    try:
        data_key = _SUITE.decrypt(wrapped, private_key, info=_data_key_info(bundle_id))
    except (InvalidTag, ValueError):
        raise NotARecipient(
            f"stanza for key {key_id!r} in bundle {bundle_id} does not open with this key"
        ) from None
    try:
        _check_data_key(header, data_key)
    except WireError:
        raise NotARecipient(
            f"stanza for key {key_id!r} in bundle {bundle_id} opens to a key the header does "
            "not commit to"
        ) from None
    return data_key


def check_chunk(header: SealedHeader, index: int, ciphertext: bytes) -> None:
    """Check a ciphertext chunk's index, length and sha256 against the header (no key needed).

    Raises TamperedChunk(index). This is what the hub runs on every uploaded chunk.
    """
    manifest = header.manifest
    if not 0 <= index < manifest.chunk_count:
        raise TamperedChunk(index, f"index out of range for {manifest.chunk_count} chunks")
    expected_len = manifest.chunk_plaintext_size(index) + TAG_BYTES
    if len(ciphertext) != expected_len:
        raise TamperedChunk(index, f"{len(ciphertext)} bytes, expected {expected_len}")
    digest = hashlib.sha256(ciphertext).hexdigest()
    if not hmac.compare_digest(digest, header.chunk_digests[index]):
        raise TamperedChunk(index, "sha256 does not match the header")


def open_chunk(header: SealedHeader, data_key: bytes, index: int, ciphertext: bytes) -> bytes:
    """Check chunk `index` against the header, then decrypt it; raises TamperedChunk(index)."""
    _check_data_key(header, data_key)
    check_chunk(header, index, ciphertext)
    is_last = index == header.manifest.chunk_count - 1
    aad = _chunk_aad(header.manifest.bundle_id, index, is_last)
    try:
        return AESGCM(data_key).decrypt(_nonce(index), ciphertext, aad)
    except InvalidTag:
        raise TamperedChunk(index, "authentication failed") from None


def open_stream(header: SealedHeader, data_key: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield plaintext chunks in order from ciphertext chunks given in order.

    Each yielded chunk is authenticated, but the bundle is complete only when the iterator
    finishes without error: raises TruncatedBundle if chunks run out early, TamperedChunk for a
    wrong, flipped or out-of-order chunk, WireError for chunks past the declared count.
    """
    _check_data_key(header, data_key)
    expected = header.manifest.chunk_count
    received = 0
    for index, ciphertext in enumerate(chunks):
        if index >= expected:
            raise WireError(
                f"bundle {header.manifest.bundle_id} has more than its {expected} chunks"
            )
        yield open_chunk(header, data_key, index, ciphertext)
        received = index + 1
    if received < expected:
        raise TruncatedBundle(
            f"bundle {header.manifest.bundle_id} ended after {received} of {expected} chunks"
        )


def add_recipient(
    header: SealedHeader,
    *,
    data_key: bytes,
    recipient: RecipientKey,
    signing_key: ec.EllipticCurvePrivateKey,
    signer_key_id: str,
    recipient_org: str | None = None,
) -> SealedHeader:
    """Return a re-signed header with one more stanza; the chunks are untouched.

    `recipient_org`, if given and not already listed, is appended to `manifest.recipients`
    so the hub routes the bundle there too. Raises WireError if `data_key` is not this
    bundle's key, the key_id already has a stanza, or the stanza limit is reached.
    """
    _check_data_key(header, data_key)
    if header.stanza_for(recipient.key_id) is not None:
        raise WireError(f"key {recipient.key_id!r} already has a stanza")
    if len(header.stanzas) >= MAX_STANZAS:
        raise WireError(f"bundle already has {MAX_STANZAS} stanzas")
    manifest = header.manifest
    if recipient_org is not None and recipient_org not in manifest.recipients:
        manifest = Manifest.model_validate(
            {**manifest.model_dump(), "recipients": [*manifest.recipients, recipient_org]}
        )
    stanzas = [*header.stanzas, _wrap(data_key, manifest.bundle_id, recipient)]
    return _signed(
        manifest,
        stanzas,
        list(header.chunk_digests),
        header.key_commitment,
        signing_key,
        signer_key_id,
    )
