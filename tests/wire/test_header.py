from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.wire.conftest import Party, do_seal
from wire.envelope import parse_header, verify_header
from wire.errors import HeaderTooLarge, MalformedHeader, UnsupportedVersion
from wire.version import MAX_HEADER_BYTES, MAX_STANZAS


def _raw(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    sealed = do_seal(b"z" * 3000, [alice], signing_key)
    raw: dict[str, Any] = json.loads(sealed.header.to_bytes())
    return raw


def test_parse_round_trip_and_any_json_spelling_verifies(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    sealed = do_seal(b"z" * 3000, [alice], signing_key)
    data = sealed.header.to_bytes()
    assert parse_header(data) == sealed.header
    assert parse_header(data).to_bytes() == data
    pretty = json.dumps(json.loads(data), indent=2).encode()
    reparsed = parse_header(pretty)
    assert reparsed.digest() == sealed.header.digest()
    verify_header(reparsed, signing_key.public_key())


def test_oversized_header_rejected_before_json_parsing() -> None:
    # Not JSON at all: only the size check can produce HeaderTooLarge.
    with pytest.raises(HeaderTooLarge):
        parse_header(b"{" * (MAX_HEADER_BYTES + 1))
    with pytest.raises(MalformedHeader):
        parse_header(b"{" * MAX_HEADER_BYTES)


def test_too_many_stanzas_rejected_before_schema(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    raw = _raw(alice, signing_key)
    raw["stanzas"] = [{"key_id": f"k{i}", "wrapped_key": "x"} for i in range(MAX_STANZAS + 1)]
    with pytest.raises(MalformedHeader, match=f"{MAX_STANZAS + 1} stanzas"):
        parse_header(json.dumps(raw).encode())


def test_chunk_count_must_match_digests(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    raw = _raw(alice, signing_key)
    raw["chunk_digests"] = raw["chunk_digests"][:-1]
    with pytest.raises(MalformedHeader, match="chunk_count"):
        parse_header(json.dumps(raw).encode())


def test_unsupported_version(alice: Party, signing_key: ec.EllipticCurvePrivateKey) -> None:
    raw = _raw(alice, signing_key)
    raw["manifest"]["wire_version"] = 2
    raw["manifest"]["something_new"] = True  # a future schema must not mask the version
    with pytest.raises(UnsupportedVersion):
        parse_header(json.dumps(raw).encode())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.__setitem__("extra", 1),
        lambda r: r["manifest"].__setitem__("bundle_id", "NOT-HEX"),
        lambda r: r["manifest"].__setitem__("patient_name", "DOE^JOHN"),
        lambda r: r["manifest"].__setitem__("chunk_count", "3"),
        lambda r: r["manifest"].__setitem__("created_at", "2025-01-02T03:04:05"),
        lambda r: r["stanzas"][0].__setitem__("wrapped_key", "AAAA"),
        lambda r: r["chunk_digests"].__setitem__(0, "00"),
        lambda r: r.__setitem__("stanzas", []),
    ],
)
def test_schema_violations_are_malformed(
    mutate: Any, alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    raw = _raw(alice, signing_key)
    mutate(raw)
    with pytest.raises(MalformedHeader) as info:
        parse_header(json.dumps(raw).encode())
    assert "DOE" not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"manifest": 1}', b"\xff\xfe", b"[" * 100_000],
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedHeader):
        parse_header(data)


def test_duplicate_json_keys_rejected(
    alice: Party, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    data = do_seal(b"z", [alice], signing_key).header.to_bytes()
    doubled = data[:-1] + b',"signer_key_id":"other"}'
    with pytest.raises(MalformedHeader):
        parse_header(doubled)
