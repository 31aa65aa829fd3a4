"""Uploader: outbox bundles go to the hub chunk by chunk, resuming from what the hub has.

Up to `[upload] parallel_chunks` chunks are in flight over the client's keep-alive pool while
chunks go through fast (each within FAST_CHUNK_SECONDS); a slow chunk or an error brings it
back to one at a time, so on a slow link a cut costs at most the one chunk in flight. Each
chunk is read from its file by the thread that sends it: memory holds at most that many chunks.

Most urgent first: each bundle is picked by priority (lower first), then age, and a bundle being
sent gives way between chunks when a more urgent one becomes due (a clinician's request does not
wait behind a bulk backfill on a slow link); it resumes later from what the hub has.

Leases: an uploader takes a bundle by writing its name and a lease time into the outbox row,
renews it while it sends and clears it when done. A bundle leased by another uploader (another
thread or process on the same data folder) is left alone until that lease runs out, e.g. after
a crash; the hub stores a chunk sent twice once, so an expired lease costs bytes, not data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import structlog

from node_agent.backoff import schedule_retry
from node_agent.config import AgentConfig
from node_agent.hubclient import HubClient, HubRefused, HubUnavailable
from node_agent.identity import AgentIdentity
from node_agent.ledger import Ledger, LedgerError
from node_agent.state import AgentState
from node_agent.throttle import TokenBucket, Window, in_any_window
from wire.envelope import parse_header
from wire.errors import WireError
from wire.receipt import verify_receipt

log = structlog.get_logger("hexchange.agent.uploader")

FAST_CHUNK_SECONDS = 1.0
# a bundle this uploader may take: nobody's, its own, or a lease that ran out (params: owner, now)
_LEASE_FREE = "(lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)"
LEASE_SECONDS = 300.0  # renewed every chunk, so only a stalled or dead uploader loses it
YIELD_CHECK_SECONDS = 1.0  # how often a bundle being sent looks for a more urgent one


class Preempted(Exception):
    """A more urgent bundle is due: this one pauses and resumes later."""


class Uploader:
    def __init__(
        self, config: AgentConfig, state: AgentState, identity: AgentIdentity, client: HubClient
    ) -> None:
        self.config = config
        self.state = state
        self.ledger = Ledger(state)
        self.identity = identity
        self.client = client
        self.outbox = config.agent.data_dir / "outbox"
        self.bucket = TokenBucket(config.upload.max_bytes_per_second)
        self.windows = [Window.parse(w) for w in config.upload.offpeak_windows]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{id(self)}"

    def _max_priority(self, now: float) -> int:
        if self.windows and not in_any_window(self.windows, dt.datetime.fromtimestamp(now)):
            return self.config.upload.urgent_priority  # outside off-peak: urgent ones only
        return 1 << 30

    def _due_rows(self, now: float) -> list[tuple[str, int]]:
        """(bundle, priority) to upload now, most urgent first; bulk waits for an off-peak
        window; a bundle leased by another uploader waits for its lease to run out."""
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT bundle_id, priority FROM outbox WHERE state IN ('sealed', 'uploading') "  # noqa: S608 (a fixed clause)
                f"AND next_attempt_at <= ? AND priority <= ? AND {_LEASE_FREE} "
                "ORDER BY priority, created_at",
                (now, self._max_priority(now), self.owner, now),
            ).fetchall()
        return [(r["bundle_id"], r["priority"]) for r in rows]

    def due(self, now: float | None = None) -> list[str]:
        """Bundles to upload now, most urgent first (see `_due_rows`)."""
        return [b for b, _p in self._due_rows(time.time() if now is None else now)]

    def run_once(self) -> int:
        """Upload what is due, most urgent first, picking again after each bundle (a bundle
        sealed meanwhile, or made urgent, goes next); returns bundles delivered."""
        done = 0
        tried: set[str] = set()  # delivered, failed or retried later: once per run
        while True:
            due = [b for b in self.due() if b not in tried]
            if not due:
                return done
            bundle_id = due[0]
            try:
                delivered = self.upload(bundle_id, tried)
            except Preempted:
                continue  # a more urgent bundle first; this one is picked again after it
            tried.add(bundle_id)
            done += delivered

    def recover_leases(self) -> int:
        """At start: free the leases of uploaders on this host whose process is gone (killed
        mid-upload), so their bundles resume now rather than when the lease runs out."""
        host = socket.gethostname()
        freed = 0
        rows_to_free: list[tuple[str, str]] = []
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT bundle_id, lease_owner FROM outbox WHERE lease_owner IS NOT NULL"
            ).fetchall()
            for row in rows:
                owner_host, _, rest = str(row["lease_owner"]).partition(":")
                pid_text = rest.partition(":")[0]
                if owner_host != host or not pid_text.isdigit() or _alive(int(pid_text)):
                    continue
                rows_to_free.append((str(row["bundle_id"]), str(row["lease_owner"])))
        for bundle_id, owner in rows_to_free:
            if self.ledger.release_lease(bundle_id, owner):
                freed += 1
        return freed

    def _claim(self, bundle_id: str) -> bool:
        until = time.time() + LEASE_SECONDS
        return self.ledger.claim_bundle(bundle_id, self.owner, until, _LEASE_FREE)

    def _renew(self, bundle_id: str) -> None:
        self.ledger.renew_lease(bundle_id, self.owner, time.time() + LEASE_SECONDS)

    def _release(self, bundle_id: str) -> None:
        self.ledger.release_lease(bundle_id, self.owner)

    def _more_urgent_due(self, bundle_id: str, skip: set[str]) -> bool:
        """Is a bundle more urgent than this one due now (and not tried in this run)?"""
        with self.state.connect() as conn:
            mine = conn.execute(
                "SELECT priority FROM outbox WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
        if mine is None:
            return False
        return any(
            priority < mine["priority"] and other not in skip
            for other, priority in self._due_rows(time.time())
        )

    def upload(self, bundle_id: str, tried: set[str] | None = None) -> bool:
        """Send one bundle; True once the hub's receipt for it verified. Raises Preempted when
        a more urgent bundle became due between chunks (this one keeps what the hub has)."""
        if not self._claim(bundle_id):
            log.info("bundle leased by another uploader; left to it", bundle_id=bundle_id)
            return False
        try:
            return self._upload(bundle_id, tried if tried is not None else set())
        finally:
            self._release(bundle_id)

    def _upload(self, bundle_id: str, tried: set[str]) -> bool:
        folder = self.outbox / bundle_id
        sent: list[int] = []  # chunks that got through in this attempt: the link works again
        try:
            header = (folder / "header.bin").read_bytes()
            status = self.client.put_header(bundle_id, header)
            if status.state != "complete":
                have = set(status.received_chunks)
                missing = [i for i in range(status.chunk_count) if i not in have]
                self._put_chunks(bundle_id, folder, missing, sent, tried)
            try:
                receipt = self.client.complete(bundle_id)
            except HubRefused as exc:
                if exc.status != 409:
                    raise
                # the hub lacks chunks it had listed (e.g. lost to a power cut there): the
                # next attempt asks for its status again and sends them
                raise HubUnavailable(f"hub asks for chunks again: {exc.detail}") from exc
            verify_receipt(receipt, self.identity.hub_receipt_key)
            expected = parse_header(header).digest()
            if receipt.bundle_id != bundle_id or receipt.header_digest != expected:
                raise WireError("the hub's receipt is for another bundle or another header")
        except Preempted:
            log.info(
                "upload paused for a more urgent bundle", bundle_id=bundle_id, chunks=len(sent)
            )
            raise
        except HubUnavailable as exc:
            self._retry(bundle_id, str(exc), progressed=bool(sent))
            return False
        except HubRefused as exc:
            self._fail(bundle_id, str(exc))
            return False
        except WireError as exc:
            self._retry(bundle_id, f"receipt did not verify: {exc}")
            return False
        except OSError as exc:
            self._fail(bundle_id, f"sealed files unreadable ({type(exc).__name__}); reseal needed")
            return False
        self.ledger.bundle_delivered(bundle_id, json.dumps(receipt.model_dump(mode="json")))
        self._free_chunks(folder)
        log.info("bundle uploaded", bundle_id=bundle_id)
        return True

    def _send_chunk(self, bundle_id: str, folder: Path, index: int) -> float:
        """Read and send one chunk; returns the seconds the request took."""
        data = (folder / f"chunk-{index:07d}.bin").read_bytes()
        self.bucket.consume(len(data))
        started = time.monotonic()
        self.client.put_chunk(bundle_id, index, data)
        return time.monotonic() - started

    def _put_chunks(
        self,
        bundle_id: str,
        folder: Path,
        missing: list[int],
        sent: list[int],
        tried: set[str] | None = None,
    ) -> None:
        """Send `missing` chunks, several at once while they go through fast; each index that
        got through is appended to `sent`. On an error, waits for those in flight, then raises
        (a refusal or an unreadable file before a network error). Between chunks: renews the
        lease and raises Preempted when a more urgent bundle (not in `tried`) is due."""
        skip = tried if tried is not None else set()
        checked = time.monotonic()

        def between_chunks() -> None:
            nonlocal checked
            if time.monotonic() - checked < YIELD_CHECK_SECONDS:
                return
            checked = time.monotonic()
            self._renew(bundle_id)
            if self._more_urgent_due(bundle_id, skip):
                raise Preempted(bundle_id)

        limit = self.config.upload.parallel_chunks
        if limit <= 1:
            for index in missing:
                self._send_chunk(bundle_id, folder, index)
                sent.append(index)
                if index != missing[-1]:
                    between_chunks()
            return
        errors: list[BaseException] = []
        window = 1  # grows to `limit` once a chunk has gone through fast
        queue = iter(missing)
        in_flight: dict[Future[float], int] = {}
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="upload") as pool:
            while True:
                while not errors and len(in_flight) < window:
                    upcoming = next(queue, None)
                    if upcoming is None:
                        break
                    future = pool.submit(self._send_chunk, bundle_id, folder, upcoming)
                    in_flight[future] = upcoming
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    index = in_flight.pop(future)
                    error = future.exception()
                    if error is not None:
                        errors.append(error)
                        window = 1
                        continue
                    sent.append(index)
                    window = limit if future.result() <= FAST_CHUNK_SECONDS else 1
                if not errors:
                    try:
                        between_chunks()
                    except Preempted as exc:
                        errors.append(exc)  # stop taking chunks; those in flight finish
        if errors:
            raise next(
                (e for e in errors if not isinstance(e, HubUnavailable | Preempted)),
                next((e for e in errors if isinstance(e, HubUnavailable)), errors[0]),
            )

    @staticmethod
    def _free_chunks(folder: Path) -> None:
        for chunk in folder.glob("chunk-*.bin"):
            chunk.unlink(missing_ok=True)

    def _retry(self, bundle_id: str, reason: str, *, progressed: bool = False) -> None:
        schedule_retry(
            self.state,
            "outbox",
            bundle_id,
            reason,
            progressed=progressed,
            base=self.config.upload.retry_base_seconds,
            cap=self.config.upload.retry_max_seconds,
        )
        log.warning("upload will be retried", bundle_id=bundle_id, reason=reason)

    def _fail(self, bundle_id: str, reason: str) -> None:
        self.ledger.bundle_failed(bundle_id, reason)
        log.error("upload refused; needs an operator", bundle_id=bundle_id, reason=reason)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def retry_failed(state: AgentState, bundle_id: str) -> bool:
    try:
        return Ledger(state).requeue_bundle(bundle_id, only_failed=True) == "failed"
    except LedgerError:
        return False


__all__ = ["Preempted", "Uploader", "retry_failed"]
