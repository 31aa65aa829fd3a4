"""The manifest's optional held-back counts (issue 16): classes and counts only, and manifests
without them keep their exact canonical bytes (signatures made by older senders still verify)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from tests.wire.conftest import SMALL_CHUNK, ListSink, Party, make_draft
from wire.envelope import parse_header, seal, verify_header
from wire.manifest import Manifest, new_bundle_id


def _fields(**extra: Any) -> dict[str, Any]:
    return {
        "bundle_id": new_bundle_id(),
        "wire_version": 1,
        "sender_org": "clinic-a",
        "sender_site": "site-1",
        "recipients": ["research-b"],
        "mode": "deidentified",
        "instance_count": 43,
        "modalities": ["CT", "SR"],
        "payload_bytes": 10,
        "chunk_size": 1024,
        "chunk_count": 1,
        "created_at": datetime(2026, 12, 3, tzinfo=UTC),
        **extra,
    }


def test_absent_held_back_is_not_serialized() -> None:
    manifest = Manifest(**_fields())
    assert manifest.held_back is None
    data = json.loads(manifest.canonical_bytes())
    assert "held_back" not in data
    assert "held_back" not in manifest.model_dump(mode="json")
    # what an older sender signed parses to the same canonical bytes
    assert Manifest.model_validate(data).canonical_bytes() == manifest.canonical_bytes()


def test_held_back_counts_travel_by_class() -> None:
    manifest = Manifest(**_fields(held_back={"verification-failed": 3, "document": 2}))
    data = json.loads(manifest.canonical_bytes())
    assert data["held_back"] == {"document": 2, "verification-failed": 3}
    assert Manifest.model_validate(data) == manifest


@pytest.mark.parametrize(
    "held_back",
    [{"Quixote^Dulcinea": 1}, {"verification-failed": 0}, {"policy": -1}],
)
def test_held_back_refuses_values_and_bad_counts(held_back: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Manifest(**_fields(held_back=held_back))


def test_sealed_header_carries_held_back_and_verifies(
    signing_key: ec.EllipticCurvePrivateKey, alice: Party
) -> None:
    draft = make_draft().model_copy(update={"held_back": {"verification-failed": 5}})
    header = seal(
        io.BytesIO(b"payload"),
        ListSink(),
        draft=draft,
        recipients=[alice.recipient],
        signing_key=signing_key,
        signer_key_id="serial-01",
        chunk_size=SMALL_CHUNK,
    )
    assert header.manifest.held_back == {"verification-failed": 5}
    reparsed = parse_header(header.to_bytes())
    verify_header(reparsed, signing_key.public_key())  # the signature covers the counts
    plain = seal(
        io.BytesIO(b"payload"),
        ListSink(),
        draft=make_draft(),
        recipients=[alice.recipient],
        signing_key=signing_key,
        signer_key_id="serial-01",
        chunk_size=SMALL_CHUNK,
    )
    assert b"held_back" not in plain.to_bytes()
