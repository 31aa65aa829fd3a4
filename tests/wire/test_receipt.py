from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from wire.errors import SignatureInvalid
from wire.manifest import new_bundle_id
from wire.receipt import Receipt, sign_receipt, verify_receipt


def _receipt(key: ec.EllipticCurvePrivateKey) -> Receipt:
    return sign_receipt(new_bundle_id(), "ab" * 32, 4, datetime(2025, 5, 6, 7, 8, tzinfo=UTC), key)


def test_receipt_sign_verify_and_json_round_trip() -> None:
    hub = ec.generate_private_key(ec.SECP256R1())
    receipt = _receipt(hub)
    verify_receipt(receipt, hub.public_key())
    again = Receipt.model_validate_json(receipt.model_dump_json())
    verify_receipt(again, hub.public_key())


def test_receipt_wrong_key() -> None:
    hub = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureInvalid):
        verify_receipt(_receipt(hub), other.public_key())


@pytest.mark.parametrize(
    "update",
    [
        {"chunk_count": 5},
        {"header_digest": "cd" * 32},
        {"bundle_id": "0" * 32},
        {"received_at": datetime(2025, 5, 6, 7, 9, tzinfo=UTC)},
        {"hub_signature": "not base64!"},
    ],
)
def test_receipt_tamper(update: dict[str, object]) -> None:
    hub = ec.generate_private_key(ec.SECP256R1())
    tampered = _receipt(hub).model_copy(update=update)
    with pytest.raises(SignatureInvalid):
        verify_receipt(tampered, hub.public_key())
