"""Ingest: resumable, idempotent chunk upload checked against the signed header; receipts."""

from __future__ import annotations

import datetime as dt
import os

from sqlmodel import func, select

from certs.keys import new_site_key
from hub.models import Bundle, Delivery, ReceivedChunk
from hub.storage import LocalBlobStore
from tests.hub.conftest import EnrolledSite, Hub
from wire.api import BundleStatus
from wire.receipt import Receipt, verify_receipt

CHUNK = 1024
PAYLOAD_BYTES = 5 * CHUNK + 123  # six chunks, the last one short


def _count(hub: Hub, model: type, **where: str) -> int:
    with hub.session() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(session.exec(query).one())


def test_resumable_upload_then_a_verifiable_receipt(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    payload = os.urandom(PAYLOAD_BYTES)
    sealed = site_a.seal(payload, ["org-b"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    assert len(sealed.chunks) == 6

    response = site_a.put_header(sealed)
    assert response.status_code == 200, response.text
    status = BundleStatus.model_validate(response.json())
    assert (status.state, status.chunk_count, status.received_chunks) == ("receiving", 6, [])

    first = [0, 2, 5]
    for index in first:
        assert site_a.put_chunk(bundle_id, index, sealed.chunks[index]).status_code == 204
    status = BundleStatus.model_validate(site_a.status(bundle_id).json())
    assert status.received_chunks == first
    assert status.state == "receiving" and status.receipt is None

    for index in sorted(set(sealed.chunks) - set(first)):
        assert site_a.put_chunk(bundle_id, index, sealed.chunks[index]).status_code == 204
    assert site_a.status(bundle_id).json()["received_chunks"] == list(range(6))

    response = site_a.complete(bundle_id)
    assert response.status_code == 200, response.text
    receipt = Receipt.model_validate(response.json())
    verify_receipt(receipt, site_a.receipt_public_key)
    assert receipt.bundle_id == bundle_id
    assert receipt.header_digest == sealed.header.digest()
    assert receipt.chunk_count == 6
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(minutes=1) <= receipt.received_at <= now + dt.timedelta(seconds=1)

    status = BundleStatus.model_validate(site_a.status(bundle_id).json())
    assert status.state == "complete"
    assert status.receipt is not None
    verify_receipt(status.receipt, site_a.receipt_public_key)
    assert status.receipt.signed_bytes() == receipt.signed_bytes()
    assert [d["bundle_id"] for d in site_b.deliveries()] == [bundle_id]


def test_repeating_every_step_is_idempotent(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    sealed = site_a.seal(os.urandom(PAYLOAD_BYTES), ["org-b", "org-c"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    receipt = site_a.push(sealed)

    # An agent that lost its connection at any point replays everything.
    again = site_a.put_header(sealed)
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "complete"
    for index, data in sealed.chunks.items():
        assert site_a.put_chunk(bundle_id, index, data).status_code == 204
    replay = site_a.complete(bundle_id)
    assert replay.status_code == 200, replay.text
    second = Receipt.model_validate(replay.json())
    verify_receipt(second, site_a.receipt_public_key)
    assert second.signed_bytes() == receipt.signed_bytes()  # same bundle, digest, count, time

    assert _count(hub, Bundle, bundle_id=bundle_id) == 1
    assert _count(hub, ReceivedChunk, bundle_id=bundle_id) == len(sealed.chunks)
    assert _count(hub, Delivery, bundle_id=bundle_id) == 2  # one per recipient org
    assert [d["bundle_id"] for d in site_b.deliveries()] == [bundle_id]


def test_a_different_header_under_the_same_bundle_id_is_a_conflict(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    original = site_a.seal(b"first study" * 300, ["org-b"])
    assert site_a.put_header(original).status_code == 200
    # Same bundle id, other content (and another data key): another header.
    other = site_a.seal(b"second study" * 300, ["org-b"], bundle_id=original.bundle_id)
    assert other.header.digest() != original.header.digest()
    response = site_a.put_header(other)
    assert response.status_code == 409, response.text
    assert "different header" in response.json()["detail"]
    # The first header still stands: its chunks are accepted, the other's are not.
    assert site_a.put_chunk(original.bundle_id, 0, original.chunks[0]).status_code == 204
    assert site_a.put_chunk(original.bundle_id, 1, other.chunks[1]).status_code == 422


def test_a_chunk_with_a_flipped_byte_is_refused_and_not_stored(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    sealed = site_a.seal(os.urandom(3 * CHUNK), ["org-b"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    assert site_a.put_header(sealed).status_code == 200
    good = sealed.chunks[1]
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x01

    response = site_a.put_chunk(bundle_id, 1, bytes(flipped))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "chunk 1" in response.json()["detail"]
    assert site_a.status(bundle_id).json()["received_chunks"] == []
    assert _count(hub, ReceivedChunk, bundle_id=bundle_id) == 0
    assert not LocalBlobStore(hub.settings.blob_dir).has_chunk(bundle_id, 1)

    # Truncated and out-of-range chunks are refused the same way; a padded one is longer than
    # any chunk of this bundle can be, so it is refused while it streams (413).
    assert site_a.put_chunk(bundle_id, 1, good[:-1]).status_code == 422
    assert site_a.put_chunk(bundle_id, 1, good + b"\x00").status_code == 413
    assert site_a.put_chunk(bundle_id, 3, good).status_code == 422
    assert site_a.put_chunk(bundle_id, 0, good).status_code == 422  # right bytes, wrong index

    assert site_a.put_chunk(bundle_id, 1, good).status_code == 204
    assert site_a.status(bundle_id).json()["received_chunks"] == [1]
    assert LocalBlobStore(hub.settings.blob_dir).get_chunk(bundle_id, 1) == good


def test_complete_with_missing_chunks_is_a_conflict_naming_how_many(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    sealed = site_a.seal(os.urandom(PAYLOAD_BYTES), ["org-b"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    assert site_a.put_header(sealed).status_code == 200
    for index in (0, 4):
        assert site_a.put_chunk(bundle_id, index, sealed.chunks[index]).status_code == 204

    response = site_a.complete(bundle_id)
    assert response.status_code == 409, response.text
    assert "missing 4 of 6 chunks" in response.json()["detail"]
    assert site_a.status(bundle_id).json()["state"] == "receiving"
    assert site_b.deliveries() == []
    assert _count(hub, Delivery, bundle_id=bundle_id) == 0

    for index in (1, 2, 3):
        site_a.put_chunk(bundle_id, index, sealed.chunks[index])
    assert "missing 1 of 6 chunks" in site_a.complete(bundle_id).json()["detail"]


def test_headers_the_hub_cannot_trust_are_refused(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    # Signed by a key that is not the one in site A's certificate.
    forged = site_a.seal(b"p" * 2000, ["org-b"], signing_key=new_site_key())
    response = site_a.put_header(forged)
    assert response.status_code == 422, response.text
    assert "signature" in response.json()["detail"]
    # Addressed to an organization that is not part of the network.
    stranger = site_a.seal(b"p" * 2000, ["org-zzz"], recipients=site_a.recipient_keys("org-b"))
    response = site_a.put_header(stranger)
    assert response.status_code == 422, response.text
    assert "org-zzz" in response.json()["detail"]
    # The URL names another bundle id than the manifest.
    sealed = site_a.seal(b"p" * 2000, ["org-b"])
    response = site_a.client.put("/node/v1/bundles/" + "ab" * 16, content=sealed.header.to_bytes())
    assert response.status_code == 422, response.text
    # Not a header at all.
    response = site_a.client.put(f"/node/v1/bundles/{sealed.bundle_id}", content=b"\x00garbage")
    assert response.status_code == 422, response.text
    for bundle_id in (forged.bundle_id, stranger.bundle_id, sealed.bundle_id, "ab" * 16):
        assert site_a.status(bundle_id).status_code == 404
