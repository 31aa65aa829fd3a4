"""Durable append-only JSON-lines files and an inter-process lock (fcntl.flock).

Appends are flushed and fsynced before returning; a torn trailing line left by a crash is
ignored on read and fenced off with a newline before the next append. Rewrites go through a
temporary file and an atomic rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created 0600) for the duration of the block."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_records(path: Path) -> list[dict[str, Any]]:
    """All well-formed JSON object lines of `path` (missing file: no records)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # torn write from a crash; it was never acknowledged
        if isinstance(record, dict):
            records.append(record)
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync. Call with the directory lock held."""
    line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def rewrite_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace `path` atomically with `records`. Call with the directory lock held."""
    tmp = path.with_name(path.name + ".tmp")
    data = b"".join(
        json.dumps(r, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"
        for r in records
    )
    write_file_atomic(tmp, path, data, mode=0o600)


def write_file_atomic(tmp: Path, final: Path, data: bytes, *, mode: int) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, mode)
        handle.write(data)
        handle.flush()
        os.fsync(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)
