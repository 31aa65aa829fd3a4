"""The manifest's optional held-back counts (issue 16): classes and counts only, and manifests
without them keep their exact canonical bytes (signatures made by older senders still verify)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

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
