"""What an operator can do to the queues: inspect, retry, release or discard quarantine."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node_agent.files import fsync_dir
from node_agent.ledger import IllegalTransition, Ledger, LedgerError
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
    category: str  # wire.api.QuarantineReason: what the hub's quarantine view counts


def _item(row: sqlite3.Row) -> QuarantineItem:
    return QuarantineItem(
        row["id"],
        row["kind"],
        row["ref"],
        row["reason"],
        row["path"],
        row["created_at"],
        row["category"],
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
    with state.connect() as conn:
        row = conn.execute("SELECT state FROM outbox WHERE bundle_id = ?", (bundle_id,)).fetchone()
    if row is None:
        raise OperationError(f"no outbox bundle {bundle_id}; see `hexchange-agent queue`")
    if row["state"] == "delivered":
        raise OperationError(f"bundle {bundle_id} was already delivered")
    try:
        return Ledger(state).requeue_bundle(bundle_id)
    except IllegalTransition as exc:  # delivered meanwhile
        raise OperationError(f"bundle {bundle_id} cannot be sent again ({exc})") from exc


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
    ledger = Ledger(state)
    try:
        if item.kind == "instance":
            ledger.release_instance(item_id, item.ref)
        elif item.kind == "delivery":
            ledger.release_delivery(item_id, item.ref)
        else:
            ledger.forget_quarantine(item_id)
    except LedgerError as exc:
        raise OperationError(str(exc)) from exc
    _drop_previews(state, item)
    return item.kind


def _durable_unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    if path.parent.is_dir():
        fsync_dir(path.parent)


def discard(state: AgentState, item_id: int) -> str:
    """Give up on the item: an instance is removed from the spool, a delivery is skipped."""
    item = quarantine_get(state, item_id)
    ledger = Ledger(state)
    if item.kind == "instance":
        # the file first: a labelled spool file without a row is registered again at the next
        # start (`Spool.recover`)
        with state.connect() as conn:
            row = conn.execute("SELECT path FROM instances WHERE sop_uid = ?", (item.ref,))
            spooled = row.fetchone()
        for path in {p for p in (item.path, spooled[0] if spooled else None) if p}:
            _durable_unlink(Path(path))
        ledger.discard_instance(item_id, item.ref)
    elif item.kind == "delivery":
        ledger.discard_delivery(item_id, item.ref)
    else:
        ledger.forget_quarantine(item_id)
    _drop_previews(state, item)
    return item.kind
