"""Python's cyclic garbage collector while a collection batch is checked and indexed.

A batch keeps its instances (data sets and their DICOM JSON) until it is indexed: hundreds of
thousands of young objects, which the collector's default first threshold (700 allocations)
scans again and again while the next instances are read. Measured (`bench/RESULTS.md`, issue
11): about 0.15-0.2 ms of CPU per instance of read + verify + JSON. During a batch
(`batch.add_batch`) the process collects less often; what is freed is freed by reference
counting as before, and cycles wait a little longer (at most 10,000 allocations). The
threshold is the process's own, so it is set back after the batch: a hub process that
collected rarely all the time would keep unreachable cycles (an unclosed client's socket,
say) open for longer."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FIRST_THRESHOLD = 10_000

_lock = threading.Lock()
_held = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The first threshold at least `FIRST_THRESHOLD` inside, as it was after the last one
    (batches in several threads of one process share it)."""
    global _held, _saved
    with _lock:
        if _held == 0:
            _saved = gc.get_threshold()
            first, second, third = _saved
            if 0 < first < FIRST_THRESHOLD:
                gc.set_threshold(FIRST_THRESHOLD, second, third)
        _held += 1
    try:
        yield
    finally:
        with _lock:
            _held -= 1
            if _held == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
