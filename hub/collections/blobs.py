"""The files of collection instances, content-addressed: <root>/<sha[:2]>/<sha>.dcm.

A file is durable (fsynced, folder too) before its index row is committed; the same bytes sent
again are one file. Files are never changed in place, so a published version's hash holds."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from hub.storage import durable_write

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
