"""The hub's background ingest worker: a thread started and stopped by the public app's
lifespan (`hub.main.create_app`), never at import. It takes queued collection bundles
(`hub.collections.queue`) each under its lease (`hub.collections.lease`), so that several hub
processes on one database never ingest the same bundle twice. A completion in this process
wakes it at once; otherwise it looks every `collection_ingest_poll_s`. Stopping lets the batch
in hand commit; a bundle left half done resumes on the next start (duplicates by SOP UID)."""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import structlog
from sqlalchemy.exc import SQLAlchemyError

from hub.collections import queue
from hub.collections.bundles import WRITER_THREADS, ingest_leased, raised_at
from hub.collections.lease import IngestLeases
from hub.collections.processes import start_pool
from hub.collections.runtime import instance_files, key_provider
from hub.models import utcnow
from hub.services import Services

log = structlog.get_logger("hexchange.hub.collections")

WORKER_KEY = "collection_ingest_worker"


class IngestWorker:
    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.poll_s = settings.collection_ingest_poll_s
        self.batch_size = settings.collection_ingest_batch
        self.leases = IngestLeases(services.engine, settings.data_dir / "locks")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._processes: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="collection-ingest", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        settings = self.services.settings
        if settings.collection_ingest_processes:
            try:
                self._processes = start_pool(
                    settings.db_url, instance_files(self.services).root,
                    settings.collection_ingest_processes,
                )  # fmt: skip
            except OSError as exc:  # e.g. no processes left: the thread does the work
                log.error("collection ingest: no process pool", error=type(exc).__name__)
        try:
            self._loop()
        finally:
            if self._processes is not None:
                self._processes.shutdown(cancel_futures=True)

    def _loop(self) -> None:
        with ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="collection-files") as pool:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    worked = self.run_once(pool)
                except SQLAlchemyError as exc:  # the database away for a moment: next round
                    log.error("collection ingest worker: database error", error=type(exc).__name__)
                    worked = False
                except Exception as exc:  # never let the thread die; no message (may quote data)
                    log.error(
                        "collection ingest worker: unexpected error",
                        error=type(exc).__name__,
                        where=raised_at(exc),
                    )
                    worked = False
                if not worked:
                    self._wake.wait(self.poll_s)

    def run_once(self, pool: ThreadPoolExecutor) -> bool:
        """Ingest what is due; True if a bundle was finished (look again at once)."""
        services = self.services
        worked = False
        with services.session() as session:
            for bundle_id, recipient in queue.due(session, utcnow()):
                if self._stop.is_set():
                    break
                counts = ingest_leased(  # `now` again: due when listed may be put off since
                    session, services.blobs, instance_files(services),
                    lambda: key_provider(services.settings), self.leases, bundle_id, recipient,
                    batch_size=self.batch_size, retry_base_s=self.poll_s, writers=pool,
                    should_stop=self._stop.is_set, processes=self._processes, now=utcnow(),
                )  # fmt: skip
                worked = worked or counts is not None
        return worked


def start_worker(services: Services) -> IngestWorker:
    worker = IngestWorker(services)
    services.extras[WORKER_KEY] = worker
    worker.start()
    return worker


def stop_worker(services: Services) -> None:
    worker = services.extras.pop(WORKER_KEY, None)
    if isinstance(worker, IngestWorker):
        worker.stop()


def wake_worker(services: Services) -> None:
    """After a completion: the worker of this process, if it runs, looks at once."""
    worker = services.extras.get(WORKER_KEY)
    if isinstance(worker, IngestWorker):
        worker.wake()
