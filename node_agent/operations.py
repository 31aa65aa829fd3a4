"""What an operator can do to the queues: inspect, retry, release or discard quarantine."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from node_agent.state import AgentState


class OperationError(Exception):
    pass


@dataclass(frozen=True)
class QuarantineItem:
    id: int
    kind: str
    ref: str
    reason: str
    path: str | None
    created_at: float


def _item(row: sqlite3.Row) -> QuarantineItem:
    return QuarantineItem(
        row["id"], row["kind"], row["ref"], row["reason"], row["path"], row["created_at"]
    )


def queue(state: AgentState, *, include_done: bool = False) -> list[sqlite3.Row]:
    where = "" if include_done else "WHERE state != 'delivered'"
    with state.connect() as conn:
        return conn.execute(
            f"SELECT bundle_id, study_uid, dest_org, mode, state, priority, attempts, "  # noqa: S608
            f"next_attempt_at, instance_count, sealed_bytes, last_error, created_at, "
            f"lease_owner, lease_until FROM outbox {where} "
            "ORDER BY priority, created_at"
        ).fetchall()


def retry(state: AgentState, bundle_id: str) -> str:
    """Send a failed or backing-off bundle again now."""
    with state.transaction() as conn:
        row = conn.execute("SELECT state FROM outbox WHERE bundle_id = ?", (bundle_id,)).fetchone()
        if row is None:
            raise OperationError(f"no outbox bundle {bundle_id}; see `hexchange-agent queue`")
        if row["state"] == "delivered":
            raise OperationError(f"bundle {bundle_id} was already delivered")
        conn.execute(
            "UPDATE outbox SET state = 'sealed', next_attempt_at = 0, attempts = 0, "
            "updated_at = ? WHERE bundle_id = ?",
            (time.time(), bundle_id),
        )
        return str(row["state"])


def quarantine_list(state: AgentState) -> list[QuarantineItem]:
    with state.connect() as conn:
        return [_item(r) for r in conn.execute("SELECT * FROM quarantine ORDER BY id")]


def quarantine_get(state: AgentState, item_id: int) -> QuarantineItem:
    with state.connect() as conn:
        row = conn.execute("SELECT * FROM quarantine WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise OperationError(f"no quarantine item {item_id}; see `hexchange-agent quarantine list`")
    return _item(row)


def _drop_previews(state: AgentState, item: QuarantineItem) -> None:
    """Before/after pictures kept for the reviewer go with the decision."""
    import shutil

    folder = state.path.parent / "quarantine" / item.ref
    if item.kind == "instance" and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def release(state: AgentState, item_id: int) -> str:
    """Try the item again: an instance goes back through the pipeline (and its checks)."""
    item = quarantine_get(state, item_id)
    with state.transaction() as conn:
        if item.kind == "instance":
            row = conn.execute(
                "SELECT study_uid FROM instances WHERE sop_uid = ?", (item.ref,)
            ).fetchone()
            if row is None:
                raise OperationError("the instance is no longer in the spool; discard the item")
            conn.execute(
                "UPDATE studies SET state = 'stable', next_attempt_at = 0 WHERE study_uid = ?",
                (row["study_uid"],),
            )
        elif item.kind == "delivery":
            conn.execute(
                "UPDATE inbound SET state = 'downloading', attempts = 0, next_attempt_at = 0, "
                "last_error = NULL WHERE bundle_id = ?",
                (item.ref,),
            )
        conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))
    _drop_previews(state, item)
    return item.kind


def discard(state: AgentState, item_id: int) -> str:
    """Give up on the item: an instance is removed from the spool, a delivery is skipped."""
    item = quarantine_get(state, item_id)
    with state.transaction() as conn:
        if item.kind == "instance":
            conn.execute("DELETE FROM instances WHERE sop_uid = ?", (item.ref,))
            if item.path:
                Path(item.path).unlink(missing_ok=True)
        elif item.kind == "delivery":
            conn.execute("UPDATE inbound SET state = 'discarded' WHERE bundle_id = ?", (item.ref,))
        conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))
    _drop_previews(state, item)
    return item.kind
