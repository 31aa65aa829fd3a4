"""Python's cyclic garbage collector, as the collection ingest wants it.

A batch keeps its instances (data sets and their DICOM JSON) until it is indexed: hundreds of
thousands of young objects, which the collector's default first threshold (700 allocations)
scans again and again while the next instances are read. Measured (`bench/RESULTS.md`, issue
11): about 0.2 ms of CPU per instance of read + verify + JSON, a fifth of it. The processes
that ingest (the hub with its ingest worker, the pool of `collection_ingest_processes`) collect
less often; what they free is freed by reference counting as before, and the cycles wait a
little longer (at most 10,000 allocations)."""

from __future__ import annotations

import gc

FIRST_THRESHOLD = 10_000


def collect_less_often() -> None:
    """Raise the first threshold to `FIRST_THRESHOLD` (never lower it)."""
    first, second, third = gc.get_threshold()
    if 0 < first < FIRST_THRESHOLD:
        gc.set_threshold(FIRST_THRESHOLD, second, third)
