"""One indexer process of `bench/dicomweb_bench.py --ingest-only --baseline TREE`: the
collection worker's batched path (`hub.collections.batch.add_batch`) as fast as it goes, with
the `hub` package of whichever source tree PYTHONPATH names (so that two trees are measured
the same way in one run).

    PYTHONPATH=TREE python bench/ingest_indexer.py DB_URL DATA_DIR FILES SECONDS BATCH

FILES: the Part 10 files, each as its length (4 bytes, big-endian) and its bytes.

Prints one JSON line: {"done": committed instances, "elapsed": seconds, "cpu": CPU seconds
of this process (all its threads; PostgreSQL's not counted)}.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main(argv: list[str]) -> int:
    # `hub` from PYTHONPATH (the tree under test), never from this file's checkout
    from sqlmodel import Session, select

    from hub.collections.batch import add_batch
    from hub.collections.blobs import InstanceFiles
    from hub.collections.bundles import WRITER_THREADS
    from hub.collections.models import Collection
    from hub.collections.store import Source
    from hub.db import make_engine

    db_url, data_dir, files_path, seconds, batch = argv
    raw = Path(files_path).read_bytes()
    files: list[bytes] = []
    at = 0
    while at < len(raw):
        size = int.from_bytes(raw[at : at + 4], "big")
        files.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    engine = make_engine(db_url)
    store = InstanceFiles(Path(data_dir) / "collections")
    done = 0
    with Session(engine) as session, ThreadPoolExecutor(WRITER_THREADS) as pool:
        row = session.exec(select(Collection).where(Collection.name == "bench")).one()
        started, cpu = time.monotonic(), time.process_time()
        stop_at = started + float(seconds)
        while time.monotonic() < stop_at and done < len(files):
            part = files[done : done + int(batch)]
            add_batch(session, store, row, part, Source("bench"), pool)
            done += len(part)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    engine.dispose()
    print(json.dumps({"done": done, "elapsed": elapsed, "cpu": cpu}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
