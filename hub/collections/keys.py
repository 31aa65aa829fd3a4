"""Collection key pairs (X25519, the HPKE recipient keys of `wire.envelope`) and the operator's
key that seals their private halves at rest (AES-256-GCM).

`KeyProvider` is the seam for a KMS: `seal`/`open` of a small secret, bound to a context
string. `FileKeyProvider` reads 32 random bytes (raw, or 64 hex digits) from a file the
operator provides (`HEXCHANGE_HUB_COLLECTION_KEY_FILE`), readable by the hub's user only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.errors import InvalidRequest
from wire.envelope import RecipientKey

_NONCE = 12
_FORMAT = b"hexchange/v1 collection-key "


class KeyUnavailable(InvalidRequest):
    title = "Collection key unavailable"


class KeyProvider(Protocol):
    """Seals and opens small secrets under a key the hub never stores in its database."""

    @property
    def key_ref(self) -> str: ...
    def seal(self, secret: bytes, context: str) -> bytes: ...
    def open(self, sealed: bytes, context: str) -> bytes: ...


class FileKeyProvider:
    """AES-256-GCM under 32 bytes read from an operator-provided file."""

    def __init__(self, path: Path) -> None:
        try:
            info = path.stat()
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyUnavailable(
                f"cannot read the collection key file {path} ({exc.strerror}); create it with "
                "`head -c 32 /dev/urandom > FILE; chmod 600 FILE` and set "
                "HEXCHANGE_HUB_COLLECTION_KEY_FILE"
            ) from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyUnavailable(
                f"the collection key file {path} is readable by others; chmod 600 it"
            )
        text = raw.strip()
        if len(raw) == 32:
            key = raw
        elif len(text) == 64:
            try:
                key = bytes.fromhex(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                key = b""
        else:
            key = b""
        if len(key) != 32:
            raise KeyUnavailable(
                f"the collection key file {path} must hold 32 random bytes (or 64 hex digits)"
            )
        self._aead = AESGCM(key)
        self._ref = "file:" + hashlib.sha256(b"hexchange key ref " + key).hexdigest()[:16]

    @property
    def key_ref(self) -> str:
        return self._ref

    def seal(self, secret: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, secret, _FORMAT + context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _FORMAT + context.encode())
        except (InvalidTag, ValueError):
            raise KeyUnavailable(
                "a collection's private key does not open with the operator's key file: "
                "the file is not the one the collection was created with"
            ) from None


@dataclass(frozen=True)
class NewKey:
    key_id: str
    public_b64: str
    sealed_b64: str


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_context(collection: str, key_id: str) -> str:
    return f"{collection}/{key_id}"


def new_collection_key(provider: KeyProvider, collection: str) -> NewKey:
    private = X25519PrivateKey.generate()
    public = _raw_public(private.public_key())
    key_id = "col-" + hashlib.sha256(public).hexdigest()[:24]
    raw_private = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    sealed = provider.seal(raw_private, key_context(collection, key_id))
    return NewKey(
        key_id=key_id,
        public_b64=base64.b64encode(public).decode(),
        sealed_b64=base64.b64encode(sealed).decode(),
    )


def recipient_key(key_id: str, public_b64: str) -> RecipientKey:
    return RecipientKey(key_id, X25519PublicKey.from_public_bytes(base64.b64decode(public_b64)))


def open_private_key(
    provider: KeyProvider, collection: str, key_id: str, sealed_b64: str
) -> X25519PrivateKey:
    raw = provider.open(base64.b64decode(sealed_b64), key_context(collection, key_id))
    return X25519PrivateKey.from_private_bytes(raw)
