"""Retrieves that go on after their C-MOVE/C-GET association ended, followed to the end.

A retrieve that outlives `retrieve_timeout_seconds` is finished by the inbound path (the rest of
the study lands in the site's PACS as every delivery does); a thread here counts its instances
as they are stored, for `hexchange-agent request list/status`. Every count and state is a
ledger row (`Ledger.retrieve_*`, instances counted once by SOP Instance UID), so a kill -9 of the
agent loses nothing: at start, `resume` follows every retrieve left `receiving` (its
association died with the process) or `background` again. Logs name request ids, never patients.
"""

from __future__ import annotations

import io
import queue
import threading

import structlog
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from node_agent.arrivals import ArrivalBoard
from node_agent.ledger import Ledger

log = structlog.get_logger("hexchange.agent.qr")

BACKGROUND_IDLE_S = 3600.0  # a background retrieve with no instance for this long: stalled


def sop_uid_of(data: bytes) -> str | None:
    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except (InvalidDicomError, ValueError, EOFError, OSError):
        return None
    value = ds.get("SOPInstanceUID")
    return str(value) if value else None


class BackgroundRetrieves:
    def __init__(self, ledger: Ledger, board: ArrivalBoard, idle_s: float = BACKGROUND_IDLE_S):
        self.ledger = ledger
        self.board = board
        self.idle_s = idle_s

    def follow(
        self,
        study_uid: str,
        arrivals: queue.Queue[bytes],
        request_id: str,
        arrived: int,
        total: int,
    ) -> threading.Thread:
        """Count the rest of a retrieve as the inbound path stores it; `arrivals` is a
        subscription to the study the follower owns (unsubscribed at the end)."""

        def run() -> None:
            count = arrived
            try:
                while count < total:
                    try:
                        data = arrivals.get(timeout=self.idle_s)
                    except queue.Empty:
                        self.ledger.retrieve_moved(request_id, "stalled")
                        log.warning("background retrieve stalled", request=request_id,
                                    arrived=count, expected=total)  # fmt: skip
                        return
                    sop_uid = sop_uid_of(data)
                    if sop_uid is not None:
                        count = self.ledger.retrieve_arrived(request_id, sop_uid)
                if self.ledger.retrieve_moved(request_id, "completed-in-background"):
                    log.info("retrieve completed in the background", request=request_id)
            finally:
                self.board.unsubscribe(study_uid, arrivals)

        thread = threading.Thread(target=run, name="retrieve-background", daemon=True)
        thread.start()
        return thread

    def resume(self) -> list[threading.Thread]:
        """At start: follow again every retrieve the last process left unfinished."""
        threads = []
        for request_id, study_uid, expected, arrived in self.ledger.retrieves_to_resume():
            log.info("background retrieve resumed", request=request_id, arrived=arrived,
                     expected=expected)  # fmt: skip
            arrivals = self.board.subscribe(study_uid)
            threads.append(self.follow(study_uid, arrivals, request_id, arrived, expected))
        return threads
