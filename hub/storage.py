"""Blob storage for sealed bundles: headers and ciphertext chunks.

The hub only ever stores ciphertext and signed headers. The local filesystem backend is the
default; other backends (S3-compatible) implement the same protocol.

Durability: `put_header` is durable when it returns. `put_chunk` makes the chunk's bytes
durable but not necessarily its name; `sync_bundle` makes every chunk stored so far durable,
and ingest calls it before a bundle is marked complete (the receipt is the hub's promise).
After a power cut before that, a chunk the index lists may be missing: ingest checks
`has_chunk` at completion and asks for it again.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")


class BlobStore(Protocol):
    def put_header(self, bundle_id: str, data: bytes) -> None: ...
    def get_header(self, bundle_id: str) -> bytes: ...
    def put_chunk(self, bundle_id: str, index: int, data: bytes) -> None: ...
    def get_chunk(self, bundle_id: str, index: int) -> bytes: ...
    def has_chunk(self, bundle_id: str, index: int) -> bool: ...
    def sync_bundle(self, bundle_id: str) -> None: ...


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fsync_folder(path: Path) -> None:
    """Make the names in folder `path` durable."""
    _fsync_dir(path)


def synced_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: temp file, fsync, rename. The folder is not fsynced,
    so after a power cut `path` may be absent (never partial)."""
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


def durable_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: temp file, fsync, rename, fsync the folder."""
    synced_write(path, data)
    _fsync_dir(path.parent)


class LocalBlobStore:
    """Bundles as files: <root>/<id[:2]>/<id>/header.bin and chunk-<index>.bin."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def is_available() -> bool:
        return True

    def _dir(self, bundle_id: str) -> Path:
        if not _BUNDLE_ID.match(bundle_id):
            raise ValueError("bundle id must be 32 lowercase hex characters")
        return self.root / bundle_id[:2] / bundle_id

    def put_header(self, bundle_id: str, data: bytes) -> None:
        durable_write(self._dir(bundle_id) / "header.bin", data)

    def get_header(self, bundle_id: str) -> bytes:
        return (self._dir(bundle_id) / "header.bin").read_bytes()

    def _chunk_path(self, bundle_id: str, index: int) -> Path:
        if index < 0:
            raise ValueError("chunk index must be >= 0")
        return self._dir(bundle_id) / f"chunk-{index:07d}.bin"

    def put_chunk(self, bundle_id: str, index: int, data: bytes) -> None:
        synced_write(self._chunk_path(bundle_id, index), data)

    def get_chunk(self, bundle_id: str, index: int) -> bytes:
        return self._chunk_path(bundle_id, index).read_bytes()

    def has_chunk(self, bundle_id: str, index: int) -> bool:
        return self._chunk_path(bundle_id, index).exists()

    def sync_bundle(self, bundle_id: str) -> None:
        """Make the names of every chunk stored so far durable: fsync of the bundle's folder,
        and of the folder holding it (where the bundle folder's own name is)."""
        folder = self._dir(bundle_id)
        _fsync_dir(folder)
        _fsync_dir(folder.parent)
