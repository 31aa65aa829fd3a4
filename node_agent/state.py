"""The agent's durable state: one SQLite database in WAL mode, one connection per thread.

Every pipeline arrow is a row update here, so a kill -9 at any point resumes where it was.
Every commit is synchronous=FULL (the WAL is fsynced before COMMIT returns), except the spool's
rows of labelled files (`transaction(flush=False)`): a power loss may take the last of those,
and the spool registers their durable files again at the next start (`Spool.recover`). The
connection is kept per thread (opening one and setting its PRAGMAs cost as much as the commit).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from wire.api import QuarantineReason

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    modality TEXT,
    received_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'spooled',  -- spooled | quarantined (node_agent/ledger.py)
    source_ae TEXT                  -- calling AE title it came from (sharing rules match on it)
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,            -- see node_agent/ledger.py for states and arrows
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    quiet_s REAL                    -- longest quiet period of its sources; NULL: the default
);
CREATE TABLE IF NOT EXISTS outbox (
    bundle_id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    dest_org TEXT NOT NULL,
    mode TEXT NOT NULL,
    state TEXT NOT NULL,            -- sealed | uploading | delivered | failed
    priority INTEGER NOT NULL DEFAULT 100,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    payload_bytes INTEGER NOT NULL DEFAULT 0,
    sealed_bytes INTEGER NOT NULL DEFAULT 0,
    instance_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    lease_owner TEXT,               -- the uploader working on it, until lease_until
    lease_until REAL
);
CREATE TABLE IF NOT EXISTS study_priority (  -- asked for by someone (e.g. a clinician's pull)
    study_uid TEXT PRIMARY KEY,
    priority INTEGER NOT NULL,
    requested_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, priority, created_at);
CREATE TABLE IF NOT EXISTS bundle_instances (
    bundle_id TEXT NOT NULL,
    dest_org TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    mode TEXT NOT NULL DEFAULT 'identified',
    PRIMARY KEY (bundle_id, sop_uid)
);
CREATE INDEX IF NOT EXISTS bundle_instances_dest ON bundle_instances(dest_org, sop_uid);
CREATE TABLE IF NOT EXISTS inbound (
    bundle_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,            -- downloading | stored | acked | failed | discarded
    sender TEXT NOT NULL,
    instance_count INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    reason TEXT NOT NULL,
    path TEXT,
    created_at REAL NOT NULL,
    category TEXT NOT NULL DEFAULT 'other'  -- wire.api.QuarantineReason: counted at the hub
);
CREATE TABLE IF NOT EXISTS answer_links (  -- de-identified federated answers given here
    requester_org TEXT NOT NULL,
    pseudonym_uid TEXT NOT NULL,    -- the study UID the requester saw (node_agent/answer_deid.py)
    study_uid TEXT NOT NULL,        -- this site's own study
    linked_at REAL NOT NULL,        -- last answered; dropped after LINK_DAYS
    PRIMARY KEY (requester_org, pseudonym_uid)
);
CREATE INDEX IF NOT EXISTS answer_links_age ON answer_links(linked_at);
CREATE TABLE IF NOT EXISTS retrieves (  -- C-MOVE/C-GET asked here of another org (ledger.py)
    request_id TEXT PRIMARY KEY,
    study_uid TEXT,
    expected INTEGER,
    arrived INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,  -- receiving | complete | cancelled | background |
                          -- completed-in-background | stalled
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retrieve_instances (  -- what arrived for a retrieve (counted once)
    request_id TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    PRIMARY KEY (request_id, sop_uid)
);
"""


SCHEMA_VERSION = 9


# columns added after the first release, by the schema version that added them
_ADDED_COLUMNS: dict[int, list[tuple[str, str, str]]] = {
    2: [("instances", "modality", "TEXT")],
    3: [("bundle_instances", "mode", "TEXT NOT NULL DEFAULT 'identified'")],
    4: [("studies", "quiet_s", "REAL")],
    5: [("outbox", "lease_owner", "TEXT"), ("outbox", "lease_until", "REAL")],
    6: [("instances", "state", "TEXT NOT NULL DEFAULT 'spooled'")],
    7: [("instances", "source_ae", "TEXT")],
    8: [("quarantine", "category", "TEXT NOT NULL DEFAULT 'other'")],
    # 9 also adds the table answer_links (CREATE TABLE IF NOT EXISTS above)
    9: [("retrieves", "study_uid", "TEXT")],
}

# rows to bring in line once a version's columns exist (the instances already quarantined)
_BACKFILL: dict[int, str] = {
    6: "UPDATE instances SET state = 'quarantined' WHERE sop_uid IN "
    "(SELECT ref FROM quarantine WHERE kind = 'instance')",
    8: "UPDATE quarantine SET category = 'delivery' WHERE kind = 'delivery'",
}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older state database up to SCHEMA_VERSION (PRAGMA user_version)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for added_in, columns in sorted(_ADDED_COLUMNS.items()):
        if version >= added_in:
            continue
        for table, column, kind in columns:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        if added_in in _BACKFILL:
            conn.execute(_BACKFILL[added_in])
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def record_quarantine(
    conn: sqlite3.Connection,
    kind: str,
    ref: str,
    reason: str,
    path: str | None,
    category: QuarantineReason = QuarantineReason.OTHER,
) -> None:
    """Inside a transaction: record an item a human must look at (once per kind and ref).
    `reason` stays at the site; only `category` is counted in the hub's view."""
    if conn.execute("SELECT 1 FROM quarantine WHERE kind = ? AND ref = ?", (kind, ref)).fetchone():
        return
    conn.execute(
        "INSERT INTO quarantine(kind, ref, reason, path, created_at, category) "
        "VALUES (?,?,?,?,?,?)",
        (kind, ref, reason, path, time.time(), category.value),
    )


class AgentState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.connect() as conn:
            conn.executescript(SCHEMA)
            _migrate(conn)
        for suffix in ("", "-wal", "-shm"):  # UIDs and queue state: readable by the agent only
            candidate = path.with_name(path.name + suffix)
            if candidate.exists():
                candidate.chmod(0o600)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; a forked child opens its own)."""
        cached: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        conn = self._open()
        self._local.conn = (os.getpid(), conn)
        return conn

    def _discard(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with suppress(sqlite3.Error):
            conn.close()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in autocommit mode; a nested use shares it."""
        conn = self._thread_connection()
        try:
            yield conn
        except sqlite3.Error:
            self._discard(conn)  # e.g. a broken database handle: the next use opens afresh
            raise

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        cached: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
        if cached is not None:
            self._discard(cached[1])

    @contextmanager
    def transaction(self, *, flush: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. `flush=False`: its commit is not fsynced (synchronous=NORMAL
        for it alone): a crash of the process loses nothing, a power loss may lose the last
        such commits (never one before a flushed commit: the WAL is written in order). Only for
        rows that can be rebuilt from durable files (the spool's, see `Spool.recover`)."""
        with self.connect() as conn:
            if not flush:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # e.g. SQLITE_BUSY on commit: leave no open write
                        conn.execute("ROLLBACK")
                    raise
            finally:
                if not flush:
                    conn.execute("PRAGMA synchronous=FULL")

    def quarantine(self, kind: str, ref: str, reason: str, path: str | None = None) -> None:
        """Record an item a human must look at (once per kind and ref)."""
        with self.transaction() as conn:
            record_quarantine(conn, kind, ref, reason, path)

    def counts(self) -> dict[str, int]:
        with self.connect() as conn:
            out: dict[str, int] = {}
            for table, column in (
                ("studies", "state"),
                ("instances", "state"),
                ("outbox", "state"),
                ("inbound", "state"),
            ):
                for row in conn.execute(f"SELECT {column}, COUNT(*) FROM {table} GROUP BY 1"):  # noqa: S608
                    out[f"{table}.{row[0]}"] = row[1]
            out["quarantine"] = conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
            return out
