"""Collection batches in other processes (`collection_ingest_processes`): verification and
indexing are pure Python, so one process uses one core at most. Each process of the pool has
its own database engine and runs the very same `add_batch` (own transaction per batch); the
worker thread keeps the lease, opens the bundle and hands out batches."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.collections.batch import add_batch
from hub.collections.blobs import InstanceFiles
from hub.collections.models import Collection
from hub.collections.store import Source

_WRITER_THREADS = 8
_child: dict[str, object] = {}


def start_pool(db_url: str, files_root: Path, processes: int) -> ProcessPoolExecutor:
    """`processes` fresh interpreters (spawned: the hub has threads, which fork would copy)."""
    return ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_child, initargs=(db_url, str(files_root)),
    )  # fmt: skip


def _init_child(db_url: str, files_root: str) -> None:
    from hub.db import make_engine

    _child["engine"] = make_engine(db_url)
    _child["files"] = InstanceFiles(Path(files_root))
    _child["writers"] = ThreadPoolExecutor(_WRITER_THREADS, thread_name_prefix="collection-files")


def batch_in_process(collection_id: int, items: list[bytes], source: Source) -> dict[str, int]:
    engine, files, writers = _child["engine"], _child["files"], _child["writers"]
    assert isinstance(engine, Engine) and isinstance(files, InstanceFiles)
    assert isinstance(writers, ThreadPoolExecutor)
    with Session(engine) as session:
        collection = session.get(Collection, collection_id)
        if collection is None:
            raise LookupError(f"collection {collection_id} is gone")
        return add_batch(session, files, collection, items, source, writers)
