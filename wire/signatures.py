"""ECDSA P-256 / SHA-256 signatures, carried as base64 of the DER encoding."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from wire.errors import SignatureInvalid


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict standard base64; raises ValueError on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not valid base64") from exc


def _require_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise SignatureInvalid(f"signing keys must be P-256, got {key.curve.name}")


def sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> str:
    """Sign `message`; returns base64 DER ECDSA."""
    _require_p256(private_key)
    return b64encode(private_key.sign(message, ec.ECDSA(hashes.SHA256())))


def verify(
    public_key: ec.EllipticCurvePublicKey, message: bytes, signature: str, what: str
) -> None:
    """Verify a base64 DER ECDSA signature; raises SignatureInvalid naming `what`."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise SignatureInvalid(f"{what}: verification key is not an EC public key")
    _require_p256(public_key)
    try:
        der = b64decode(signature)
    except ValueError:
        raise SignatureInvalid(f"{what}: signature is not valid base64") from None
    try:
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid(f"{what}: signature does not verify") from None
