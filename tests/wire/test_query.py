"""Sealed query/answer messages: only the recipients read them; any change is detected; size
caps are checked before parsing or cryptography."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.wire.conftest import Party
from wire.errors import NotARecipient, SignatureInvalid, WireError
from wire.query import (
    MAX_QUERY_BYTES,
    Answer,
    QueryBody,
    QueryKeys,
    SealedMessage,
    StudyMatch,
    new_request_id,
    open_message,
    parse_sealed,
    seal_message,
)

KEYS = QueryKeys(patient_name="Doe^Jane", patient_id="P-1", patient_birth_date="19600101")


def _seal(
    body: QueryBody | Answer, parties: list[Party], key: ec.EllipticCurvePrivateKey
) -> SealedMessage:
    return seal_message(
        body, request_id=new_request_id(), sender_org="org-b", sender_site="site-b",
        recipients=[p.recipient for p in parties], signing_key=key, certificate_pem="PEM",
    )  # fmt: skip


def _open(message: SealedMessage, party: Party, key: ec.EllipticCurvePrivateKey) -> object:
    return open_message(
        message, key_id=party.key_id, private_key=party.private_key,
        sender_public_key=key.public_key(),
    )  # fmt: skip


def test_round_trip_and_only_recipients_open(
    alice: Party, bob: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    message = _seal(QueryBody(find=KEYS), [alice], signing_key)
    wire_bytes = message.to_bytes()
    assert b"Doe" not in wire_bytes and b"19600101" not in wire_bytes
    again = parse_sealed(wire_bytes, "query")
    assert _open(again, alice, signing_key) == QueryBody(find=KEYS)
    with pytest.raises(NotARecipient):
        _open(again, bob, signing_key)
    forged = Party(key_id=alice.key_id, private_key=bob.private_key)
    with pytest.raises(NotARecipient):
        _open(again, forged, signing_key)


def test_answers_round_trip(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    answer = Answer(
        outcome="matches",
        matches=[StudyMatch(study_uid="1.2.3", patient_name="Doe^Jane", source_org="org-a")],
    )
    message = _seal(answer, [alice], signing_key)
    assert message.kind == "answer"
    assert _open(parse_sealed(message.to_bytes(), "answer"), alice, signing_key) == answer
    with pytest.raises(WireError, match="expected a sealed query"):
        parse_sealed(message.to_bytes(), "query")


@pytest.mark.parametrize("field", ["request_id", "sender_org", "ciphertext", "kind"])
def test_any_change_is_detected(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey, field: str
) -> None:
    message = _seal(QueryBody(find=KEYS), [alice], signing_key)
    raw = message.model_dump(mode="json")
    if field == "request_id":
        raw[field] = new_request_id()
    elif field == "sender_org":
        raw[field] = "org-x"
    elif field == "kind":
        raw[field] = "answer"
    else:
        data = bytearray(raw["ciphertext"].encode())
        data[10] = ord("A") if data[10] != ord("A") else ord("B")
        raw[field] = data.decode()
    changed = SealedMessage.model_validate(raw)
    with pytest.raises(SignatureInvalid):
        _open(changed, alice, signing_key)
    # re-signed by someone else: the sender's key does not verify it
    other = ec.generate_private_key(ec.SECP256R1())
    resigned = changed.model_copy(update={"signature": ""})
    from wire import signatures

    resigned = resigned.model_copy(
        update={"signature": signatures.sign(other, resigned.signed_bytes())}
    )
    with pytest.raises(SignatureInvalid):
        _open(resigned, alice, signing_key)


def test_ciphertext_bound_to_its_request(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    """Re-signed by the genuine sender under another id, the old ciphertext does not open."""
    message = _seal(QueryBody(find=KEYS), [alice], signing_key)
    from wire import signatures

    moved = message.model_copy(update={"request_id": new_request_id(), "signature": ""})
    moved = moved.model_copy(
        update={"signature": signatures.sign(signing_key, moved.signed_bytes())}
    )
    with pytest.raises(NotARecipient):  # the wrapped key's HPKE info names the request
        _open(moved, alice, signing_key)


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(WireError, match="limit"):
        parse_sealed(b"{" + b" " * MAX_QUERY_BYTES + b"}", "query")
    with pytest.raises(WireError, match="invalid fields"):
        parse_sealed(json.dumps({"v": 1, "kind": "query"}).encode(), "query")


def test_query_keys_are_bounded_and_checked() -> None:
    with pytest.raises(ValueError):
        QueryKeys(patient_name="x" * 65)
    with pytest.raises(ValueError):
        QueryKeys(patient_name="bad\nline")
    with pytest.raises(ValueError):
        QueryKeys(patient_birth_date="1960-01-01")
    assert QueryKeys(modalities=["ct"]).modalities == ["CT"]
    assert not QueryKeys(patient_name="*").identifies_patient
    assert QueryKeys(patient_id="P1").identifies_patient
