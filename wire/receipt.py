"""The hub's signed receipt: proof that a bundle arrived whole, for the sending agent to keep."""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field

from wire import signatures
from wire.canonical import canonical_json
from wire.header import Sha256Hex
from wire.manifest import BundleId, UtcDatetime
from wire.version import MAX_CHUNKS


class Receipt(BaseModel):
    """Hub attestation that bundle `bundle_id`, with header `header_digest`, is complete.

    `hub_signature` is base64 DER ECDSA P-256/SHA-256 over `signed_bytes()`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle_id: BundleId
    header_digest: Sha256Hex
    chunk_count: int = Field(ge=1, le=MAX_CHUNKS)
    received_at: UtcDatetime
    hub_signature: str = Field(max_length=512)

    def signed_bytes(self) -> bytes:
        """Canonical JSON of everything except `hub_signature`."""
        return canonical_json(self.model_dump(mode="json", exclude={"hub_signature"}))


def sign_receipt(
    bundle_id: str,
    header_digest: str,
    chunk_count: int,
    received_at: datetime,
    hub_key: ec.EllipticCurvePrivateKey,
) -> Receipt:
    """Make a receipt signed with the hub's receipt key."""
    unsigned = Receipt(
        bundle_id=bundle_id,
        header_digest=header_digest,
        chunk_count=chunk_count,
        received_at=received_at,
        hub_signature="",
    )
    signature = signatures.sign(hub_key, unsigned.signed_bytes())
    return unsigned.model_copy(update={"hub_signature": signature})


def verify_receipt(receipt: Receipt, hub_public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the hub's signature on a receipt; raises SignatureInvalid."""
    signatures.verify(
        hub_public_key,
        receipt.signed_bytes(),
        receipt.hub_signature,
        f"receipt for bundle {receipt.bundle_id}",
    )
