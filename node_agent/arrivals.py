"""Instances delivered to this site, announced per study while a C-MOVE/C-GET waits for them.

`ArrivalTee` wraps the inbound store (the site's PACS or folder): every instance stored is
also offered to whoever watches its study (`ArrivalBoard.watch`), so a retrieve from another
organization answers with real sub-operation counts as the instances arrive. Nothing is kept
for studies nobody watches; a watcher that gave up leaves the rest to the inbound store.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from node_agent.dicom.store import InstanceStore


class ArrivalBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str, list[queue.Queue[bytes]]] = {}

    def subscribe(self, study_uid: str) -> queue.Queue[bytes]:
        inbox: queue.Queue[bytes] = queue.Queue()
        with self._lock:
            self._watchers.setdefault(study_uid, []).append(inbox)
        return inbox

    def unsubscribe(self, study_uid: str, inbox: queue.Queue[bytes]) -> None:
        with self._lock:
            watchers = self._watchers.get(study_uid, [])
            if inbox in watchers:
                watchers.remove(inbox)
            if not watchers:
                self._watchers.pop(study_uid, None)

    @contextmanager
    def watch(self, study_uid: str) -> Iterator[queue.Queue[bytes]]:
        inbox = self.subscribe(study_uid)
        try:
            yield inbox
        finally:
            self.unsubscribe(study_uid, inbox)

    def publish(self, data: bytes) -> None:
        with self._lock:
            if not self._watchers:
                return
        try:
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True,
                         specific_tags=["StudyInstanceUID"])  # fmt: skip
        except (InvalidDicomError, EOFError, ValueError):
            return
        study_uid = str(ds.get("StudyInstanceUID", ""))
        with self._lock:
            watchers = list(self._watchers.get(study_uid, []))
        for inbox in watchers:
            inbox.put(data)


class ArrivalTee:
    """An InstanceStore that stores as the wrapped one does, then announces the instance."""

    def __init__(self, inner: InstanceStore, board: ArrivalBoard) -> None:
        self.inner = inner
        self.board = board

    def store(self, data: bytes) -> str:
        sop_uid = self.inner.store(data)
        self.board.publish(data)
        return sop_uid

    def confirm(self, sop_uids: list[str]) -> None:
        self.inner.confirm(sop_uids)

    def __getattr__(self, name: str) -> object:  # close() and the like of the wrapped store
        return getattr(self.inner, name)
