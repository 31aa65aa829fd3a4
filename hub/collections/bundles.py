"""Bundles sealed to a research collection: the hub opens them with the collection's private
key (sealed at rest under the operator's key) and passes every instance, a batch at a time, to
`hub.collections.batch.add_batch`, which verifies it again before anything is indexed or served.

A bundle to a collection gets a delivery row like any recipient (recipient `collection--NAME`)
and, in the completion's transaction, a row in the ingest queue (`hub.collections.queue`). The
hub's background worker (`hub.collections.worker`) or `hexchange-hub collection ingest` takes
it under a lease (`hub.collections.lease`), and marks the delivery acked once every instance is
stored or quarantined. A failure (the operator's key file missing, a damaged blob) is recorded
on the queue row and tried again later; instances already stored are duplicates then.
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait

import structlog
from sqlmodel import Session, select

from hub.collections import queue
from hub.collections.batch import COUNT_KEYS, add_batch, zero_counts
from hub.collections.blobs import InstanceFiles
from hub.collections.keys import KeyProvider, open_private_key
from hub.collections.lease import IngestLeases
from hub.collections.models import Collection, CollectionIngest
from hub.collections.processes import batch_in_process
from hub.collections.store import Source
from hub.errors import HubError, NotFound
from hub.models import Bundle
from hub.storage import BlobStore
from wire.collection_key import collection_named
from wire.envelope import open_data_key, open_stream, parse_header
from wire.errors import WireError
from wire.payload import PiecesReader, read_payload

log = structlog.get_logger("hexchange.hub.collections")

BATCH_BYTES = 64 * 1024 * 1024
WRITER_THREADS = 16
MAX_IN_FLIGHT = 4  # batches handed to other processes and not finished, at most


def ingest_job(
    session: Session,
    blobs: BlobStore,
    files: InstanceFiles,
    provider: KeyProvider,
    job: CollectionIngest,
    *,
    batch_size: int = 500,
    writers: Executor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    processes: ProcessPoolExecutor | None = None,
) -> dict[str, int] | None:
    """Open one queued bundle for its collection and add every instance, `batch_size` per
    transaction (in `processes` if given, a few batches at once); marks the job done. None if
    `should_stop` said to stop between batches (the job stays pending; what was committed is
    found again as duplicates)."""
    bundle = session.get(Bundle, job.bundle_id)
    name = collection_named(job.recipient) or ""
    collection = session.exec(select(Collection).where(Collection.name == name)).first()
    if bundle is None or bundle.state != "complete":
        raise NotFound(f"bundle {job.bundle_id} is not complete at this hub")
    if collection is None:
        raise NotFound(f"research collection {name!r} no longer exists at this hub")
    header = parse_header(blobs.get_header(job.bundle_id))
    private = open_private_key(
        provider, collection.name, collection.key_id, collection.sealed_private_key
    )
    data_key = open_data_key(header, key_id=collection.key_id, private_key=private)
    chunks = (blobs.get_chunk(job.bundle_id, i) for i in range(header.manifest.chunk_count))
    source = Source(
        actor=f"site:{bundle.sender_org}/{bundle.sender_site}",
        sender_org=bundle.sender_org, sender_site=bundle.sender_site, bundle_id=job.bundle_id,
    )  # fmt: skip
    counts = zero_counts()
    own_pool = writers is None
    pool = writers or ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="collection-files")
    in_flight: deque[Future[dict[str, int]]] = deque()

    def add(items: list[bytes]) -> None:
        if processes is None:
            _merge(counts, add_batch(session, files, collection, items, source, pool))
            return
        in_flight.append(processes.submit(batch_in_process, collection.id or 0, items, source))
        while len(in_flight) >= MAX_IN_FLIGHT:
            _merge(counts, in_flight.popleft().result())

    try:
        batch: list[bytes] = []
        size = 0
        for _name, data in read_payload(PiecesReader(open_stream(header, data_key, chunks))):  # type: ignore[arg-type]
            batch.append(data)
            size += len(data)
            if len(batch) >= batch_size or size >= BATCH_BYTES:
                add(batch)
                batch, size = [], 0
                if should_stop():
                    return None
        if batch:
            add(batch)
    finally:
        wait(in_flight)  # every batch handed out has committed or failed before we go on
        if own_pool:
            pool.shutdown()
    while in_flight:
        _merge(counts, in_flight.popleft().result())
    queue.finish(session, job, counts)
    log.info("collection bundle ingested", bundle_id=job.bundle_id, collection=name, **counts)
    return counts


def _merge(total: dict[str, int], more: dict[str, int]) -> None:
    for key in COUNT_KEYS:
        total[key] += more[key]


def ingest_leased(
    session: Session,
    blobs: BlobStore,
    files: InstanceFiles,
    keys: Callable[[], KeyProvider],
    leases: IngestLeases,
    bundle_id: str,
    recipient: str,
    *,
    batch_size: int = 500,
    retry_base_s: float = 5.0,
    writers: Executor | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    processes: ProcessPoolExecutor | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int] | None:
    """One queued bundle under its lease: None if another worker holds it, finished it, or we
    were told to stop; with `now` (the worker), None too if it is not due any more. A failure
    (`keys()` too: the operator's key file is read when needed) is recorded on the queue row,
    with an error naming no patient."""
    with leases.hold(f"{bundle_id}/{recipient}") as held:
        if not held:
            return None
        job = queue.claim(session, bundle_id, recipient, now)
        if job is None:
            return None
        try:
            return ingest_job(
                session, blobs, files, keys(), job, batch_size=batch_size, writers=writers,
                should_stop=should_stop, processes=processes,
            )  # fmt: skip
        except Exception as exc:  # recorded on the job, which waits; the worker goes on
            session.rollback()
            error = _describe(exc)
            job = queue.claim(session, bundle_id, recipient)
            if job is not None:
                wait = queue.fail(session, job, error, retry_base_s)
                log.error(
                    "collection bundle not ingested; it is tried again",
                    bundle_id=bundle_id, error=error[:300], retry_in_s=wait,
                    where=raised_at(exc),
                )  # fmt: skip
            return None


def raised_at(exc: BaseException) -> str:
    """The line that raised `exc` (for the log; no message, which may quote data)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _describe(exc: BaseException) -> str:
    """What went wrong, for the sending org's admins: the hub's own messages (they name
    bundles, collections and files, never a patient); an OS error by its kind only."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__} on the hub's files: {exc.strerror or 'I/O error'}"
    if isinstance(exc, HubError | WireError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (unexpected; the hub's log says where)"


def ingest_pending(
    session: Session,
    blobs: BlobStore,
    files: InstanceFiles,
    keys: Callable[[], KeyProvider],
    leases: IngestLeases,
    *,
    batch_size: int = 500,
) -> int:
    """Every queued bundle, failed ones too without waiting (`hexchange-hub collection
    ingest`); returns instances stored."""
    stored = 0
    for bundle_id, recipient in queue.due(session, None, limit=10_000):
        counts = ingest_leased(
            session, blobs, files, keys, leases, bundle_id, recipient, batch_size=batch_size
        )
        stored += counts["stored"] if counts else 0
    return stored
