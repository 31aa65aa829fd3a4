"""Research collections as recipients: how a sharing rule and a manifest name one, and the
collection's public key as the hub publishes it (signed with the hub's key, which agents got
at enrollment: the hub holds the collection's private key, so only the hub can vouch for it).

A collection `lungs` is the recipient `collection--lungs`: the prefix is not a valid start of
an organization id at the hub (it refuses to create one), so the two never collide."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from wire import signatures
from wire.envelope import RecipientKey
from wire.errors import SignatureInvalid

COLLECTION_PREFIX = "collection--"
MAX_COLLECTION_NAME = 63 - len(COLLECTION_PREFIX)


def collection_recipient(name: str) -> str:
    return COLLECTION_PREFIX + name


def collection_named(recipient: str) -> str | None:
    """The collection a recipient id names, or None for an organization."""
    return recipient[len(COLLECTION_PREFIX) :] if recipient.startswith(COLLECTION_PREFIX) else None


class CollectionKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,50}$")
    key_id: str = Field(max_length=64)
    public_key: str = Field(max_length=64, description="X25519, base64")
    signature: str = Field(max_length=512, description="the hub's ECDSA P-256 signature")

    def message(self) -> bytes:
        return collection_key_message(self.name, self.key_id, self.public_key)


def collection_key_message(name: str, key_id: str, public_b64: str) -> bytes:
    return f"hexchange/v1 collection-key\n{name}\n{key_id}\n{public_b64}".encode()


def verify_collection_key(key: CollectionKey, hub_key: ec.EllipticCurvePublicKey) -> RecipientKey:
    """The key as a RecipientKey if the hub signed it; SignatureInvalid otherwise."""
    signatures.verify(hub_key, key.message(), key.signature, f"key of collection {key.name}")
    try:
        public = X25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    except ValueError:
        raise SignatureInvalid(f"key of collection {key.name} is not an X25519 key") from None
    return RecipientKey(key_id=key.key_id, public_key=public)
