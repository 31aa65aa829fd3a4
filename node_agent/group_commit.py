"""Group commit: callers on several threads (one per DICOM association) hand in an item and
return only once it is committed; whoever commits takes every item waiting at that moment, so
concurrent associations share one database commit (one WAL fsync) instead of one each.

No thread of its own: the first caller to find nobody committing commits (the leader); the
others wait. When the leader's commit is done, it wakes the callers of its batch (with the
commit's error, if any) and hands the leadership to the first caller still waiting. A caller
never returns before the commit that holds its item has returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Waiter:
    __slots__ = ("done", "error", "lead")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.lead = False


class GroupCommit(Generic[T]):
    def __init__(self, commit: Callable[[list[T]], None]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._waiting: list[tuple[T, _Waiter]] = []
        self._busy = False
        self.batches = 0  # commits made (for tests and benchmarks)

    def submit(self, item: T) -> None:
        """Return once `item` is committed; raise the commit's error if it failed."""
        me = _Waiter()
        with self._lock:
            self._waiting.append((item, me))
            lead = not self._busy
            self._busy = True
        if not lead:
            me.done.wait()
            if not me.lead:
                if me.error is not None:
                    raise me.error
                return
        with self._lock:
            batch, self._waiting = self._waiting, []
        error: BaseException | None = None
        try:
            self._commit([item for item, _ in batch])
            self.batches += 1
        except BaseException as exc:  # every caller of the batch gets it
            error = exc
        with self._lock:
            successor = self._waiting[0][1] if self._waiting else None
            if successor is None:
                self._busy = False
            else:
                successor.lead = True
        for _item, waiter in batch:
            if waiter is not me:
                waiter.error = error
                waiter.done.set()
        if successor is not None:
            successor.done.set()
        if error is not None:
            raise error
