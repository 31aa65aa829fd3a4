"""Access events (every API request, reads included) appended in batches by one thread.

A request only puts its event on a queue; a writer thread appends everything queued in one
transaction (one lock of the chain head, one multi-row insert, one commit: `record_many`)
every `interval` seconds. Changes to data are not logged through here: the domain functions
record those in the same transaction as the change. The price: access events of the last
fraction of a second are lost if the process is killed; `flush()` (called before the log is
read, and at shutdown) writes them now.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from hub.audit.chain import CHECKPOINT_EVERY, checkpoint, record_many

log = structlog.get_logger("hexchange.hub.audit")


@dataclass(frozen=True)
class AccessEvent:
    actor: str
    action: str
    subject: str
    detail: str
    org: str
    address: str
    outcome: str


class AuditBuffer:
    def __init__(self, engine: Engine, signing_key: object, interval: float = 0.1) -> None:
        self.engine = engine
        self.signing_key = signing_key
        self.interval = interval
        self._queue: queue.Queue[AccessEvent] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._enqueued = 0
        self._written = 0

    def put(self, event: AccessEvent) -> None:
        with self._progress:
            self._enqueued += 1
            self._queue.put(event)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="audit-writer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
        self.flush()

    def sync(self, timeout: float = 2.0) -> bool:
        """Wait until every event queued before this call is written (read-your-writes for
        the audit log). Readers share the writer's next batch instead of each writing one."""
        with self._progress:
            target = self._enqueued
            if self._written >= target or self._thread is None:
                return self._written >= target
            self._wake.set()
            return self._progress.wait_for(lambda: self._written >= target, timeout)

    def flush(self) -> int:
        """Append everything queued so far; returns how many events were written."""
        with self._lock:
            events: list[AccessEvent] = []
            while True:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not events:
                return 0
            try:
                with Session(self.engine) as session:
                    first, last = record_many(session, [event.__dict__ for event in events])
                    session.commit()
                    if last // CHECKPOINT_EVERY > (first - 1) // CHECKPOINT_EVERY:
                        checkpoint(session, self.signing_key)  # type: ignore[arg-type]
                with self._progress:
                    self._written += len(events)
                    self._progress.notify_all()
            except SQLAlchemyError as exc:
                log.error("audit append failed", error=type(exc).__name__, events=len(events))
                for event in events:  # kept for the next try, in order
                    self._queue.put(event)
                return 0
            return len(events)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
