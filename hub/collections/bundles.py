"""Bundles sealed to a research collection: the hub opens them with the collection's private
key (sealed at rest under the operator's key) and passes every instance to `add_instance`,
which verifies it again before anything is indexed or served.

A bundle to a collection gets a delivery row like any recipient (recipient
`collection--NAME`); the hub itself is the receiver and marks it acked once every instance is
stored or quarantined. A failure (the operator's key file missing, a damaged blob) leaves the
delivery queued, and `ingest_pending` (run at each completion and by
`hexchange-hub collection ingest`) tries again; instances already stored are duplicates then.
"""

from __future__ import annotations

import json

import structlog
from sqlmodel import Session, col, select

from hub import audit
from hub.collections.blobs import InstanceFiles
from hub.collections.keys import KeyProvider, open_private_key
from hub.collections.models import Collection
from hub.collections.store import Source, add_instance
from hub.errors import Conflict
from hub.models import Bundle, Delivery, utcnow
from hub.storage import BlobStore
from wire.collection_key import COLLECTION_PREFIX, collection_named
from wire.envelope import open_data_key, open_stream, parse_header
from wire.payload import PiecesReader, read_payload

log = structlog.get_logger("hexchange.hub.collections")


def ingest_bundle(
    session: Session,
    blobs: BlobStore,
    files: InstanceFiles,
    provider: KeyProvider,
    bundle_id: str,
) -> int:
    """Open the queued collection deliveries of a complete bundle; returns instances stored."""
    deliveries = session.exec(
        select(Delivery).where(
            Delivery.bundle_id == bundle_id,
            Delivery.state == "queued",
            col(Delivery.recipient_org).startswith(COLLECTION_PREFIX),
        )
    ).all()
    bundle = session.get(Bundle, bundle_id)
    if not deliveries or bundle is None or bundle.state != "complete":
        return 0
    header = parse_header(blobs.get_header(bundle_id))
    stored = 0
    for delivery in deliveries:
        name = collection_named(delivery.recipient_org) or ""
        collection = session.exec(select(Collection).where(Collection.name == name)).first()
        if collection is None:
            log.error("bundle for an unknown collection", bundle_id=bundle_id, collection=name)
            continue
        private = open_private_key(
            provider, collection.name, collection.key_id, collection.sealed_private_key
        )
        data_key = open_data_key(header, key_id=collection.key_id, private_key=private)
        chunks = (blobs.get_chunk(bundle_id, i) for i in range(header.manifest.chunk_count))
        source = Source(
            actor=f"site:{bundle.sender_org}/{bundle.sender_site}",
            sender_org=bundle.sender_org,
            sender_site=bundle.sender_site,
            bundle_id=bundle_id,
        )
        counts = {"stored": 0, "duplicate": 0, "quarantined": 0, "conflict": 0}
        for _name, data in read_payload(PiecesReader(open_stream(header, data_key, chunks))):  # type: ignore[arg-type]
            try:
                added = add_instance(session, files, collection, data, source)
            except Conflict:
                session.rollback()
                counts["conflict"] += 1
                continue
            counts[added.status] += 1
        stored += counts["stored"]
        delivery.state = "acked"
        delivery.acked_at = utcnow()
        delivery.acked_by_site = "hub:collection"
        session.add(delivery)
        audit.record(
            session, actor="hub", action="collection.ingest", subject=f"{name}:{bundle_id}",
            detail=json.dumps(counts), org=bundle.sender_org,
        )  # fmt: skip
        session.commit()
        log.info("collection bundle ingested", bundle_id=bundle_id, collection=name, **counts)
    return stored


def ingest_pending(
    session: Session, blobs: BlobStore, files: InstanceFiles, provider: KeyProvider
) -> int:
    """Every complete bundle with a queued collection delivery (after a failure)."""
    ids = session.exec(
        select(Delivery.bundle_id)
        .join(Bundle, col(Bundle.bundle_id) == col(Delivery.bundle_id))
        .where(
            Delivery.state == "queued",
            col(Delivery.recipient_org).startswith(COLLECTION_PREFIX),
            Bundle.state == "complete",
        )
        .distinct()
    ).all()
    return sum(ingest_bundle(session, blobs, files, provider, bundle_id) for bundle_id in ids)
