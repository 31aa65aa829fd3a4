"""Which hub process ingests a queued collection bundle: a lease per bundle, held only while
its ingest runs, so that with several hub processes or hosts exactly one works on it.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its
own, released when the work ends or when the process or its connection dies. SQLite (one host):
an exclusive `flock` on one of a fixed set of lock files beside the database, released when
the file is closed or the process dies. A lease not granted means another worker has the
bundle (or, rarely, one whose key hashes alike): the caller skips it for now."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

# first key of the two-int advisory lock: "hexchange collection ingest"
_PG_CLASS = 0x48584349
_LOCK_FILES = 64


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


class IngestLeases:
    def __init__(self, engine: Engine, lock_dir: Path) -> None:
        self.engine = engine
        self.lock_dir = lock_dir
        self.postgres = engine.dialect.name == "postgresql"

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """Try to take the lease `name` without waiting; yields whether it is held."""
        if self.postgres:
            with self._advisory(name) as held:
                yield held
        else:
            with self._file(name) as held:
                yield held

    @contextmanager
    def _advisory(self, name: str) -> Iterator[bool]:
        with self.engine.connect() as conn:
            args = {"c": _PG_CLASS, "k": _key(name)}
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"), args).scalar())
            conn.commit()  # the lock is the session's: no transaction left open meanwhile
            try:
                yield held
            finally:
                if held:
                    conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), args)
                    conn.commit()

    @contextmanager
    def _file(self, name: str) -> Iterator[bool]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / f"ingest-{_key(name) % _LOCK_FILES:02d}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
