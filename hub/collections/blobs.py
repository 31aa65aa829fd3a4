"""The files of collection instances, content-addressed: <root>/<sha[:2]>/<sha>.dcm.

A file is durable (fsynced, folder too) before its index row is committed; the same bytes sent
again are one file. Files are never changed in place, so a published version's hash holds."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from concurrent.futures import Executor
from pathlib import Path

from hub.storage import durable_write, fsync_folder, synced_write

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class InstanceFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise ValueError("an instance digest is 64 lowercase hex digits")
        return self.root / digest[:2] / f"{digest}.dcm"

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            durable_write(path, data)
        return digest

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put_unsynced(self, data: bytes, digest: str) -> list[Path]:
        """Write a file whose bytes are durable but whose name is not yet: returns the folders
        to sync (`sync_folders`) before the file may be indexed; none if it was there."""
        path = self.path(digest)
        if path.exists():
            return []
        new_folder = not path.parent.exists()
        synced_write(path, data)
        return [path.parent, self.root] if new_folder else [path.parent]

    def sync_folders(self, folders: Iterable[Path], pool: Executor) -> None:
        """One fsync per folder for a whole batch of `put_unsynced` files (subfolders first,
        then the root that names them), several at once."""
        wanted = set(folders)
        subfolders = sorted(wanted - {self.root})
        for _ in pool.map(fsync_folder, subfolders):
            pass
        if self.root in wanted:
            fsync_folder(self.root)
