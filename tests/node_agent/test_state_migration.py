"""An agent upgraded in place keeps its queue: the state database of the first release is
migrated to the current schema at start, rows intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node_agent.state import SCHEMA_VERSION, AgentState

FIRST_RELEASE = """
CREATE TABLE instances (sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, path TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL);
CREATE TABLE studies (study_uid TEXT PRIMARY KEY, state TEXT NOT NULL, first_at REAL NOT NULL,
    last_at REAL NOT NULL, next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT);
CREATE TABLE outbox (bundle_id TEXT PRIMARY KEY, study_uid TEXT NOT NULL,
    dest_org TEXT NOT NULL, mode TEXT NOT NULL, state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 100, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT,
    payload_bytes INTEGER NOT NULL DEFAULT 0, sealed_bytes INTEGER NOT NULL DEFAULT 0,
    instance_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE bundle_instances (bundle_id TEXT NOT NULL, dest_org TEXT NOT NULL,
    sop_uid TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (bundle_id, sop_uid));
INSERT INTO studies VALUES ('1.2.3', 'receiving', 1, 2, 0, NULL);
INSERT INTO outbox(bundle_id, study_uid, dest_org, mode, state, created_at, updated_at)
    VALUES ('b1', '1.2.3', 'org-b', 'identified', 'uploading', 1, 2);
INSERT INTO bundle_instances VALUES ('b1', 'org-b', '1.2.3.4', 'ab');
"""


def _columns(state: AgentState, table: str) -> set[str]:
    with state.connect() as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_a_first_release_database_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(FIRST_RELEASE)
    old.close()

    state = AgentState(path)
    with state.connect() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        outbox = conn.execute("SELECT state, lease_owner, priority FROM outbox").fetchone()
        study = conn.execute("SELECT state, quiet_s FROM studies").fetchone()
        mode = conn.execute("SELECT mode FROM bundle_instances").fetchone()[0]
    assert tuple(outbox) == ("uploading", None, 100)  # the queued upload resumes
    assert tuple(study) == ("receiving", None)  # the default quiet period applies
    assert mode == "identified"
    assert "modality" in _columns(state, "instances")
    assert {"lease_owner", "lease_until"} <= _columns(state, "outbox")
    with state.connect() as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "study_priority" in tables

    AgentState(path)  # opening again changes nothing
    assert _columns(state, "outbox") >= {"lease_owner", "lease_until"}


def test_a_version_8_database_gets_the_answer_links_and_the_retrieves_study(
    tmp_path: Path,
) -> None:
    """Schema 9 (issue 12): the de-identified answers' links, and each retrieve's study (so a
    background retrieve can be followed again after a restart)."""
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE retrieves (request_id TEXT PRIMARY KEY, expected INTEGER, "
        "arrived INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, updated_at REAL NOT NULL);"
        "INSERT INTO retrieves VALUES ('r1', 3, 1, 'background', 5);"
        "PRAGMA user_version = 8;"
    )
    old.close()
    state = AgentState(path)
    with state.connect() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
        row = conn.execute("SELECT state, arrived, study_uid FROM retrieves").fetchone()
    assert tuple(row) == ("background", 1, None)
    assert {"requester_org", "pseudonym_uid", "study_uid", "linked_at"} <= _columns(
        state, "answer_links"
    )
