"""Durable file writes: temp file, fsync, atomic rename, fsync of the folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def durable_move(src: Path, dst: Path) -> None:
    """Move a file into place durably (same filesystem)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(src, dst)
    fsync_dir(dst.parent)
