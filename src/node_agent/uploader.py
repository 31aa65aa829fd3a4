"""Uploader: outbox bundles go to the hub chunk by chunk, resuming from what the hub has.

Up to `[upload] parallel_chunks` chunks are in flight over the client's keep-alive pool while
chunks go through fast (each within FAST_CHUNK_SECONDS); a slow chunk or an error brings it
back to one at a time, so on a slow link a cut costs at most the one chunk in flight. Each
chunk is read from its file by the thread that sends it: memory holds at most that many chunks.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import structlog

from node_agent.backoff import schedule_retry
from node_agent.config import AgentConfig
from node_agent.hubclient import HubClient, HubRefused, HubUnavailable
from node_agent.identity import AgentIdentity
from node_agent.state import AgentState
from node_agent.throttle import TokenBucket, Window, in_any_window
from wire.envelope import parse_header
from wire.errors import WireError
from wire.receipt import verify_receipt

log = structlog.get_logger("hexchange.agent.uploader")

FAST_CHUNK_SECONDS = 1.0


class Uploader:
    def __init__(
        self, config: AgentConfig, state: AgentState, identity: AgentIdentity, client: HubClient
    ) -> None:
        self.config = config
        self.state = state
        self.identity = identity
        self.client = client
        self.outbox = config.agent.data_dir / "outbox"
        self.bucket = TokenBucket(config.upload.max_bytes_per_second)
        self.windows = [Window.parse(w) for w in config.upload.offpeak_windows]

    def due(self, now: float | None = None) -> list[str]:
        """Bundles to upload now, most urgent first; bulk waits for an off-peak window."""
        now = time.time() if now is None else now
        max_priority = 1 << 30
        if self.windows and not in_any_window(self.windows, dt.datetime.fromtimestamp(now)):
            max_priority = self.config.upload.urgent_priority
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT bundle_id FROM outbox WHERE state IN ('sealed', 'uploading') "
                "AND next_attempt_at <= ? AND priority <= ? ORDER BY priority, created_at",
                (now, max_priority),
            ).fetchall()
        return [r["bundle_id"] for r in rows]

    def run_once(self) -> int:
        done = 0
        for bundle_id in self.due():
            if self.upload(bundle_id):
                done += 1
        return done

    def upload(self, bundle_id: str) -> bool:
        folder = self.outbox / bundle_id
        sent: list[int] = []  # chunks that got through in this attempt: the link works again
        try:
            self._set(bundle_id, "uploading")
            header = (folder / "header.bin").read_bytes()
            status = self.client.put_header(bundle_id, header)
            if status.state != "complete":
                have = set(status.received_chunks)
                missing = [i for i in range(status.chunk_count) if i not in have]
                self._put_chunks(bundle_id, folder, missing, sent)
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
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'delivered', receipt = ?, last_error = NULL, "
                "updated_at = ? WHERE bundle_id = ?",
                (json.dumps(receipt.model_dump(mode="json")), time.time(), bundle_id),
            )
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
        self, bundle_id: str, folder: Path, missing: list[int], sent: list[int]
    ) -> None:
        """Send `missing` chunks, several at once while they go through fast; each index that
        got through is appended to `sent`. On an error, waits for those in flight, then raises
        (a refusal or an unreadable file before a network error)."""
        limit = self.config.upload.parallel_chunks
        if limit <= 1:
            for index in missing:
                self._send_chunk(bundle_id, folder, index)
                sent.append(index)
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
        if errors:
            raise next((e for e in errors if not isinstance(e, HubUnavailable)), errors[0])

    @staticmethod
    def _free_chunks(folder: Path) -> None:
        for chunk in folder.glob("chunk-*.bin"):
            chunk.unlink(missing_ok=True)

    def _set(self, bundle_id: str, new_state: str) -> None:
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, updated_at = ? WHERE bundle_id = ?",
                (new_state, time.time(), bundle_id),
            )

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
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'failed', last_error = ?, updated_at = ? "
                "WHERE bundle_id = ?",
                (reason, time.time(), bundle_id),
            )
        log.error("upload refused; needs an operator", bundle_id=bundle_id, reason=reason)


def retry_failed(state: AgentState, bundle_id: str) -> bool:
    with state.transaction() as conn:
        cursor = conn.execute(
            "UPDATE outbox SET state = 'sealed', next_attempt_at = 0, attempts = 0 "
            "WHERE bundle_id = ? AND state = 'failed'",
            (bundle_id,),
        )
        return cursor.rowcount > 0


__all__ = ["Uploader", "retry_failed"]
