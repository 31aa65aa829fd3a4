"""Ingest fast paths keep their promises: the header cache, chunk names lost to a power cut
before completion, and the same chunk sent twice at once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from hub.ingest import HeaderCache
from hub.models import ReceivedChunk
from hub.storage import LocalBlobStore
from tests.hub.conftest import EnrolledSite, Hub
from tests.hub.test_ingest import _count
from wire.receipt import Receipt, verify_receipt

CHUNK = 1024


def test_header_cache_keeps_the_conflict_for_another_header(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    original = site_a.seal(os.urandom(3 * CHUNK), ["org-b"], chunk_size=CHUNK)
    assert site_a.put_header(original).status_code == 200
    # the header is parsed and cached by the first chunk ...
    assert site_a.put_chunk(original.bundle_id, 0, original.chunks[0]).status_code == 204
    other = site_a.seal(
        os.urandom(3 * CHUNK), ["org-b"], chunk_size=CHUNK, bundle_id=original.bundle_id
    )
    # ... and another header under the same id is still a conflict, its chunks refused
    response = site_a.put_header(other)
    assert response.status_code == 409, response.text
    assert site_a.put_chunk(original.bundle_id, 1, other.chunks[1]).status_code == 422
    assert site_a.put_chunk(original.bundle_id, 1, original.chunks[1]).status_code == 204
    assert site_a.status(original.bundle_id).json()["received_chunks"] == [0, 1]


def test_header_cache_is_keyed_by_digest_and_bounded(
    sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite],
) -> None:
    site_a, _, _ = sites
    first = site_a.seal(b"x" * 100, ["org-b"])
    second = site_a.seal(b"y" * 100, ["org-b"])
    cache = HeaderCache(size=1)
    cache.put(first.bundle_id, first.header.digest(), first.header)
    assert cache.get(first.bundle_id, first.header.digest()) == first.header
    assert cache.get(first.bundle_id, second.header.digest()) is None
    cache.put(second.bundle_id, second.header.digest(), second.header)
    assert cache.get(first.bundle_id, first.header.digest()) is None  # evicted


def test_a_chunk_name_lost_before_completion_is_asked_for_again(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    sealed = site_a.seal(os.urandom(3 * CHUNK + 5), ["org-b"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    assert site_a.put_header(sealed).status_code == 200
    for index, data in sealed.chunks.items():
        assert site_a.put_chunk(bundle_id, index, data).status_code == 204
    blobs = LocalBlobStore(hub.settings.blob_dir)
    # A power cut before the folder was fsynced: chunk 2's file is gone, its row is not.
    os.unlink(blobs.root / bundle_id[:2] / bundle_id / "chunk-0000002.bin")
    assert site_a.status(bundle_id).json()["received_chunks"] == [0, 1, 3]
    response = site_a.complete(bundle_id)
    assert response.status_code == 409, response.text
    assert "missing 1 of 4" in response.json()["detail"]
    assert _count(hub, ReceivedChunk, bundle_id=bundle_id) == 3
    # The agent sends it again; now the bundle completes with a verifiable receipt.
    assert site_a.put_chunk(bundle_id, 2, sealed.chunks[2]).status_code == 204
    response = site_a.complete(bundle_id)
    assert response.status_code == 200, response.text
    verify_receipt(Receipt.model_validate(response.json()), site_a.receipt_public_key)
    assert blobs.get_chunk(bundle_id, 2) == sealed.chunks[2]


def test_a_lost_chunk_file_with_its_row_is_stored_again(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    sealed = site_a.seal(os.urandom(2 * CHUNK), ["org-b"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    assert site_a.put_header(sealed).status_code == 200
    assert site_a.put_chunk(bundle_id, 0, sealed.chunks[0]).status_code == 204
    blobs = LocalBlobStore(hub.settings.blob_dir)
    os.unlink(blobs.root / bundle_id[:2] / bundle_id / "chunk-0000000.bin")
    assert site_a.put_chunk(bundle_id, 0, sealed.chunks[0]).status_code == 204
    assert blobs.get_chunk(bundle_id, 0) == sealed.chunks[0]
    assert _count(hub, ReceivedChunk, bundle_id=bundle_id) == 1


def test_the_same_chunk_sent_several_times_at_once_is_stored_once(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    sealed = site_a.seal(os.urandom(4 * CHUNK), ["org-b"], chunk_size=CHUNK)
    bundle_id = sealed.bundle_id
    assert site_a.put_header(sealed).status_code == 200
    jobs = [(index, data) for index, data in sealed.chunks.items() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda job: site_a.put_chunk(bundle_id, *job).status_code, jobs))
    assert codes == [204] * len(jobs)
    assert _count(hub, ReceivedChunk, bundle_id=bundle_id) == len(sealed.chunks)
    assert site_a.complete(bundle_id).status_code == 200
