"""The ledger: the one place that moves the agent's queue from state to state.

Five queues live in the state database (node_agent/state.py): studies, the instances in the
spool, outbox bundles and inbound deliveries. Their arrows are written once, below, in
`ARROWS`; every change of a row's state goes through `Ledger._move`, which refuses an arrow
the table lacks (`IllegalTransition`). Each named method is one committed transaction, so a
kill -9 between two of them leaves the queue at one arrow or the next, never between.

A method may name states in which the row is left as it is (`skip`): those are races the
pipeline expects (e.g. a study that got a new instance while it was being sealed is
`receiving` again, and is sealed again later). Any other state raises.

Studies::

    receiving -> stable            quiet period over, or the PACS retrieve ended (pull)
    stable|waiting -> waiting      no recipient key / policy yet, or a spool file changed
    stable|waiting -> held         no sharing rule matches
    stable|waiting -> sealed       every instance sealed for every destination
    stable|waiting -> partial      sealed, but some instances are quarantined
    stable|waiting -> quarantined  every instance is quarantined: nothing was sent
    held|sealed|partial|quarantined|waiting -> stable   policy changed / operator release
    any -> receiving               a new instance arrived (an addition to the study)

Instances: spooled -> quarantined -> spooled (release); re-received: -> spooled.
Outbox: sealed -> uploading -> delivered | failed; failed|sealed|uploading -> sealed (retry).
Inbound: downloading -> stored -> acked; downloading|stored -> failed -> downloading (release)
| discarded; a delivery listed again by the hub goes back to downloading.
Retrieves (a C-MOVE/C-GET here of another org's study, followed as its instances arrive):
receiving -> complete | cancelled | background (the association's time is up, or the agent
restarted under it); background -> completed-in-background | stalled -> background.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from node_agent.state import AgentState, record_quarantine
from wire.api import QuarantineReason

_DelayFor = Callable[[int], float]  # the retry delay after n failures in a row

STUDY_STATES = (
    "receiving",
    "stable",
    "waiting",
    "held",
    "sealed",
    "partial",
    "quarantined",
)
INSTANCE_STATES = ("spooled", "quarantined")
OUTBOX_STATES = ("sealed", "uploading", "delivered", "failed")
INBOUND_STATES = ("downloading", "stored", "acked", "failed", "discarded")
RETRIEVE_STATES = (
    "receiving", "complete", "cancelled", "background", "completed-in-background", "stalled"
)  # fmt: skip

_FINISHED = ("sealed", "partial", "quarantined")
# what may happen to a study between the pipeline's read of it and its arrow: a new instance
# (receiving), an operator's release or a new policy (stable), another pass finishing it
_RACES = ("receiving", "stable", "held", *_FINISHED)

ARROWS: dict[str, frozenset[tuple[str, str]]] = {
    "studies": frozenset(
        {("receiving", "stable")}
        | {(s, t) for s in ("stable", "waiting") for t in ("waiting", "held", *_FINISHED)}
        | {(s, "stable") for s in ("stable", "held", "waiting", *_FINISHED)}
        | {(s, "receiving") for s in STUDY_STATES}
    ),
    "instances": frozenset(
        {
            ("spooled", "quarantined"),
            ("quarantined", "quarantined"),
            ("quarantined", "spooled"),
            ("spooled", "spooled"),
        }
    ),
    "outbox": frozenset(
        {
            ("sealed", "uploading"),
            ("uploading", "uploading"),  # a lease that ran out is claimed again
            ("uploading", "delivered"),
            ("uploading", "failed"),
            ("sealed", "failed"),
            ("failed", "sealed"),
            ("sealed", "sealed"),
            ("uploading", "sealed"),
        }
    ),
    "inbound": frozenset(
        {
            ("downloading", "downloading"),
            ("stored", "downloading"),
            ("acked", "downloading"),
            ("downloading", "stored"),
            ("stored", "acked"),
            ("downloading", "failed"),
            ("stored", "failed"),
            ("failed", "downloading"),
            ("failed", "discarded"),
        }
    ),
    "retrieves": frozenset(
        {
            ("receiving", "receiving"),
            ("receiving", "complete"),
            ("receiving", "cancelled"),
            ("receiving", "background"),
            ("background", "background"),
            ("background", "completed-in-background"),
            ("background", "stalled"),
            ("stalled", "background"),
        }
    ),
}

_KEY = {
    "studies": "study_uid",
    "instances": "sop_uid",
    "outbox": "bundle_id",
    "inbound": "bundle_id",
    "retrieves": "request_id",
}


class LedgerError(Exception):
    """A queue row asked for is not there."""


class IllegalTransition(LedgerError):
    """An arrow the transition table does not have: a bug, never a user's mistake."""

    def __init__(self, queue: str, current: str, target: str) -> None:
        super().__init__(f"{queue}: no arrow {current} -> {target}")
        self.queue = queue
        self.current = current
        self.target = target


@dataclass(frozen=True)
class Received:
    """An instance durable in the spool, to be recorded."""

    sop_uid: str
    study_uid: str
    path: str
    sha256: str
    size: int
    modality: str | None
    quiet_s: float | None
    source_ae: str | None = None


@dataclass(frozen=True)
class NewBundle:
    bundle_id: str
    study_uid: str
    dest_org: str
    mode: str
    priority: int
    payload_bytes: int
    sealed_bytes: int
    instances: list[tuple[str, str]]  # (SOP Instance UID, sha256)


def _check_arrow(queue: str, current: str, target: str) -> None:
    if (current, target) not in ARROWS[queue]:
        raise IllegalTransition(queue, current, target)


def _move(
    conn: sqlite3.Connection,
    queue: str,
    key: str,
    target: str,
    *,
    skip: Iterable[str] = (),
    also: dict[str, object] | None = None,
) -> bool:
    """Move one row to `target` (setting the `also` columns with it). Returns False, changing
    nothing, when the row is in a `skip` state; raises for a missing row or an illegal arrow."""
    column = _KEY[queue]
    row = conn.execute(
        f"SELECT state FROM {queue} WHERE {column} = ?",  # noqa: S608 (fixed names)
        (key,),
    ).fetchone()
    if row is None:
        raise LedgerError(f"{queue}: no row {key}")
    current = str(row[0])
    if (current, target) not in ARROWS[queue]:
        if current in set(skip):
            return False
        raise IllegalTransition(queue, current, target)
    sets = {"state": target, **(also or {})}
    assignments = ", ".join(f"{name} = ?" for name in sets)
    conn.execute(
        f"UPDATE {queue} SET {assignments} WHERE {column} = ?",  # noqa: S608 (fixed names)
        (*sets.values(), key),
    )
    return True


class Ledger:
    """Named transitions of the agent's queues, each its own transaction."""

    def __init__(self, state: AgentState) -> None:
        self.state = state

    # -- studies and instances ------------------------------------------------------------

    def instances_received(self, received: list[Received], *, flush: bool = True) -> None:
        """Durable spool files: their instance rows (spooled), their studies receiving again;
        one transaction for all of them (the spool's group commit). `flush=False`: the commit
        is not fsynced, for files the spool can register again after a power loss."""
        now = time.time()
        with self.state.transaction(flush=flush) as conn:
            for r in received:
                conn.execute(
                    "INSERT INTO instances(sop_uid, study_uid, path, sha256, size, modality, "
                    "received_at, state, source_ae) VALUES (?,?,?,?,?,?,?, 'spooled', ?) "
                    "ON CONFLICT(sop_uid) DO UPDATE SET sha256=excluded.sha256, "
                    "path=excluded.path, size=excluded.size, modality=excluded.modality, "
                    "received_at=excluded.received_at, state='spooled', "
                    "source_ae=COALESCE(excluded.source_ae, instances.source_ae)",
                    (
                        r.sop_uid,
                        r.study_uid,
                        r.path,
                        r.sha256,
                        r.size,
                        r.modality,
                        now,
                        r.source_ae,
                    ),
                )
                conn.execute(
                    "INSERT INTO studies(study_uid, state, first_at, last_at, quiet_s) "
                    "VALUES (?, 'receiving', ?, ?, ?) "
                    "ON CONFLICT(study_uid) DO UPDATE SET state='receiving', "
                    "last_at=excluded.last_at, "
                    "quiet_s=MAX(COALESCE(studies.quiet_s, excluded.quiet_s), "
                    "COALESCE(excluded.quiet_s, studies.quiet_s))",  # the longer; NULL: none
                    (r.study_uid, now, now, r.quiet_s),
                )

    def mark_stable(self, quiet_period: float, now: float) -> list[str]:
        """receiving -> stable for studies quiet for their period (`quiet_s`, else the given)."""
        with self.state.transaction() as conn:
            rows = conn.execute(
                "SELECT study_uid FROM studies WHERE state = 'receiving' "
                "AND last_at + COALESCE(quiet_s, ?) <= ?",
                (quiet_period, now),
            ).fetchall()
            uids = [str(row[0]) for row in rows]
            for uid in uids:
                _move(conn, "studies", uid, "stable")
        return uids

    def retrieve_complete(self, study_uid: str) -> bool:
        """receiving -> stable: a PACS retrieve ended with every instance in the spool."""
        with self.state.transaction() as conn:
            row = conn.execute(
                "SELECT state FROM studies WHERE study_uid = ?", (study_uid,)
            ).fetchone()
            if row is None or row[0] != "receiving":
                return False
            return _move(conn, "studies", study_uid, "stable", also={"next_attempt_at": 0})

    def restart_quiet_periods(self, now: float) -> None:
        """After a restart: studies still receiving wait a fresh quiet period (no arrow)."""
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE studies SET last_at = MAX(last_at, ?) WHERE state = 'receiving'", (now,)
            )

    def study_held(self, study_uid: str, reason: str) -> bool:
        with self.state.transaction() as conn:
            return _move(
                conn, "studies", study_uid, "held", skip=_RACES, also={"last_error": reason}
            )

    def study_waits(self, study_uid: str, reason: str, retry_at: float) -> bool:
        with self.state.transaction() as conn:
            return _move(
                conn,
                "studies",
                study_uid,
                "waiting",
                skip=_RACES,
                also={"next_attempt_at": retry_at, "last_error": reason},
            )

    def study_finished(self, study_uid: str) -> str | None:
        """stable|waiting -> sealed, partial (some instances quarantined) or quarantined (all
        of them): returns the new state, or None when the study is receiving again."""
        with self.state.transaction() as conn:
            counts = dict(
                conn.execute(
                    "SELECT state, COUNT(*) FROM instances WHERE study_uid = ? GROUP BY state",
                    (study_uid,),
                ).fetchall()
            )
            quarantined = int(counts.get("quarantined", 0))
            total = sum(int(n) for n in counts.values())
            if quarantined and quarantined == total:
                target = "quarantined"
                reason: str | None = f"all {total} instances are quarantined; nothing was sent"
            elif quarantined:
                target = "partial"
                reason = f"{quarantined} of {total} instances are quarantined and were not sent"
            else:
                target, reason = "sealed", None
            moved = _move(
                conn,
                "studies",
                study_uid,
                target,
                skip=_RACES,
                also={"last_error": reason},
            )
        return target if moved else None

    def release_held(self) -> int:
        """held -> stable for every held study (a new policy may send them now)."""
        with self.state.transaction() as conn:
            rows = conn.execute("SELECT study_uid FROM studies WHERE state = 'held'").fetchall()
            for row in rows:
                _move(
                    conn,
                    "studies",
                    str(row[0]),
                    "stable",
                    also={"next_attempt_at": 0, "last_error": None},
                )
        return len(rows)

    def quarantine_instance(
        self,
        sop_uid: str,
        reason: str,
        path: str | None,
        category: QuarantineReason = QuarantineReason.OTHER,
    ) -> None:
        """spooled -> quarantined, with the item a human must look at."""
        with self.state.transaction() as conn:
            _move(conn, "instances", sop_uid, "quarantined")
            record_quarantine(conn, "instance", sop_uid, reason, path, category)

    def release_instance(self, item_id: int, sop_uid: str) -> None:
        """quarantined -> spooled; its study goes through the pipeline (and checks) again."""
        with self.state.transaction() as conn:
            row = conn.execute(
                "SELECT study_uid FROM instances WHERE sop_uid = ?", (sop_uid,)
            ).fetchone()
            if row is None:
                raise LedgerError("the instance is no longer in the spool; discard the item")
            _move(conn, "instances", sop_uid, "spooled")
            _move(
                conn,
                "studies",
                str(row[0]),
                "stable",
                skip=("receiving",),
                also={"next_attempt_at": 0},
            )
            conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))

    def discard_instance(self, item_id: int, sop_uid: str) -> None:
        """A quarantined instance leaves the spool for good."""
        with self.state.transaction() as conn:
            conn.execute("DELETE FROM instances WHERE sop_uid = ?", (sop_uid,))
            conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))

    def forget_quarantine(self, item_id: int) -> None:
        """Drop a quarantine item that names no queue row (e.g. kind "x" from an old release)."""
        with self.state.transaction() as conn:
            conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))

    # -- outbox ---------------------------------------------------------------------------

    def bundle_sealed(self, bundle: NewBundle) -> None:
        """-> sealed: the sealed folder is in the outbox; the bundle's row and its members."""
        now = time.time()
        with self.state.transaction() as conn:
            conn.execute(
                "INSERT INTO outbox(bundle_id, study_uid, dest_org, mode, state, priority, "
                "payload_bytes, sealed_bytes, instance_count, created_at, updated_at) "
                "VALUES (?,?,?,?, 'sealed', ?,?,?,?,?,?)",
                (
                    bundle.bundle_id,
                    bundle.study_uid,
                    bundle.dest_org,
                    bundle.mode,
                    bundle.priority,
                    bundle.payload_bytes,
                    bundle.sealed_bytes,
                    len(bundle.instances),
                    now,
                    now,
                ),
            )
            conn.executemany(
                "INSERT INTO bundle_instances(bundle_id, dest_org, mode, sop_uid, sha256) "
                "VALUES (?,?,?,?,?)",
                [
                    (bundle.bundle_id, bundle.dest_org, bundle.mode, sop, sha)
                    for sop, sha in bundle.instances
                ],
            )

    def claim_bundle(self, bundle_id: str, owner: str, until: float, lease_free: str) -> bool:
        """sealed|uploading -> uploading under a lease for `owner` (when no live lease holds
        it; `lease_free` is the SQL clause that says so, with two parameters: owner, now)."""
        now = time.time()
        with self.state.transaction() as conn:
            row = conn.execute(
                f"SELECT state FROM outbox WHERE bundle_id = ? AND {lease_free}",  # noqa: S608
                (bundle_id, owner, now),
            ).fetchone()
            if row is None:
                return False
            return _move(
                conn,
                "outbox",
                bundle_id,
                "uploading",
                skip=("delivered", "failed"),
                also={"lease_owner": owner, "lease_until": until, "updated_at": now},
            )

    def renew_lease(self, bundle_id: str, owner: str, until: float) -> None:
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET lease_until = ? WHERE bundle_id = ? AND lease_owner = ?",
                (until, bundle_id, owner),
            )

    def release_lease(self, bundle_id: str, owner: str) -> bool:
        with self.state.transaction() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL "
                "WHERE bundle_id = ? AND lease_owner = ?",
                (bundle_id, owner),
            )
            return cursor.rowcount == 1

    def bundle_delivered(self, bundle_id: str, receipt_json: str) -> None:
        with self.state.transaction() as conn:
            _move(
                conn,
                "outbox",
                bundle_id,
                "delivered",
                also={"receipt": receipt_json, "last_error": None, "updated_at": time.time()},
            )

    def bundle_failed(self, bundle_id: str, reason: str) -> None:
        with self.state.transaction() as conn:
            _move(
                conn,
                "outbox",
                bundle_id,
                "failed",
                also={"last_error": reason, "updated_at": time.time()},
            )

    def requeue_bundle(self, bundle_id: str, *, only_failed: bool = False) -> str:
        """failed (or sealed/uploading, unless `only_failed`) -> sealed, due now; returns the
        state it was in. Raises LedgerError for an unknown or delivered bundle."""
        with self.state.transaction() as conn:
            row = conn.execute(
                "SELECT state FROM outbox WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
            if row is None:
                raise LedgerError(f"no outbox bundle {bundle_id}")
            before = str(row[0])
            if only_failed and before != "failed":
                return before
            _move(
                conn,
                "outbox",
                bundle_id,
                "sealed",
                also={"next_attempt_at": 0, "attempts": 0, "updated_at": time.time()},
            )
            return before

    def raise_priority(self, study_uid: str, priority: int) -> int:
        """Ask for `priority` (or better) for the study; its queued bundles take it now."""
        with self.state.transaction() as conn:
            conn.execute(
                "INSERT INTO study_priority(study_uid, priority, requested_at) VALUES (?,?,?) "
                "ON CONFLICT(study_uid) DO UPDATE SET "
                "priority = MIN(study_priority.priority, excluded.priority), "
                "requested_at = excluded.requested_at",
                (study_uid, priority, time.time()),
            )
            cursor = conn.execute(
                "UPDATE outbox SET priority = ? WHERE study_uid = ? AND priority > ? "
                "AND state IN ('sealed', 'uploading', 'failed')",
                (priority, study_uid, priority),
            )
            return cursor.rowcount

    # -- retries (outbox and inbound; no arrow, only when to try again) -------------------

    def retry_later(
        self, queue: str, bundle_id: str, reason: str, delay_for: _DelayFor, progressed: bool
    ) -> float:
        """Count one more failure and set when to try again; returns the delay chosen."""
        if queue not in ("outbox", "inbound"):
            raise ValueError(f"no retry schedule for queue {queue!r}")
        with self.state.transaction() as conn:
            row = conn.execute(
                f"SELECT attempts FROM {queue} WHERE bundle_id = ?",  # noqa: S608 (fixed names)
                (bundle_id,),
            ).fetchone()
            attempts = 1 if progressed else (int(row[0]) if row else 0) + 1
            delay = delay_for(attempts)
            now = time.time()
            conn.execute(
                f"UPDATE {queue} SET attempts = ?, next_attempt_at = ?, last_error = ?, "  # noqa: S608
                "updated_at = ? WHERE bundle_id = ?",
                (attempts, now + delay, reason, now, bundle_id),
            )
        return delay

    # -- inbound deliveries ---------------------------------------------------------------

    def delivery_downloading(self, bundle_id: str, sender: str) -> None:
        now = time.time()
        with self.state.transaction() as conn:
            exists = conn.execute(
                "SELECT 1 FROM inbound WHERE bundle_id = ?", (bundle_id,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    "INSERT INTO inbound(bundle_id, state, sender, updated_at) "
                    "VALUES (?, 'downloading', ?, ?)",
                    (bundle_id, sender, now),
                )
            else:
                _move(conn, "inbound", bundle_id, "downloading", also={"updated_at": now})

    def delivery_stored(self, bundle_id: str, count: int) -> None:
        with self.state.transaction() as conn:
            _move(
                conn,
                "inbound",
                bundle_id,
                "stored",
                also={"instance_count": count, "updated_at": time.time()},
            )

    def delivery_acked(self, bundle_id: str) -> bool:
        with self.state.transaction() as conn:
            return _move(
                conn,
                "inbound",
                bundle_id,
                "acked",
                skip=("acked", "failed", "discarded", "downloading"),
                also={"last_error": None, "updated_at": time.time()},
            )

    def delivery_failed(self, bundle_id: str, reason: str) -> None:
        """-> failed, with the quarantine item an operator releases or discards."""
        with self.state.transaction() as conn:
            _move(
                conn,
                "inbound",
                bundle_id,
                "failed",
                also={"last_error": reason, "updated_at": time.time()},
            )
            record_quarantine(conn, "delivery", bundle_id, reason, None, QuarantineReason.DELIVERY)

    def release_delivery(self, item_id: int, bundle_id: str) -> None:
        with self.state.transaction() as conn:
            _move(
                conn,
                "inbound",
                bundle_id,
                "downloading",
                skip=INBOUND_STATES,
                also={"attempts": 0, "next_attempt_at": 0, "last_error": None},
            )
            conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))

    def discard_delivery(self, item_id: int, bundle_id: str) -> None:
        with self.state.transaction() as conn:
            _move(conn, "inbound", bundle_id, "discarded", skip=INBOUND_STATES)
            conn.execute("DELETE FROM quarantine WHERE id = ?", (item_id,))

    # -- retrieves (asked here of another organization) ------------------------------------

    def retrieve_started(self, request_id: str, study_uid: str, expected: int) -> None:
        with self.state.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO retrieves (request_id, study_uid, expected, arrived, "
                "state, updated_at) VALUES (?, ?, ?, 0, 'receiving', ?)",
                (request_id, study_uid, expected, time.time()),
            )

    def retrieve_arrived(self, request_id: str, sop_uid: str) -> int:
        """One instance of the retrieve arrived (once per instance, however often it is
        stored again); a stalled retrieve is followed again. Returns how many arrived."""
        with self.state.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO retrieve_instances (request_id, sop_uid) VALUES (?, ?)",
                (request_id, sop_uid),
            )
            arrived = int(
                conn.execute(
                    "SELECT count(*) FROM retrieve_instances WHERE request_id = ?", (request_id,)
                ).fetchone()[0]
            )
            row = conn.execute(
                "SELECT state FROM retrieves WHERE request_id = ?", (request_id,)
            ).fetchone()
            target = "background" if row is not None and row[0] == "stalled" else None
            if target is not None:
                _move(conn, "retrieves", request_id, target)
            conn.execute(
                "UPDATE retrieves SET arrived = ?, updated_at = ? WHERE request_id = ?",
                (arrived, time.time(), request_id),
            )
        return arrived

    def retrieve_moved(self, request_id: str, target: str) -> bool:
        """-> complete | cancelled | background | completed-in-background | stalled; False when
        the row already finished (a follower and a restart racing)."""
        with self.state.transaction() as conn:
            return _move(
                conn, "retrieves", request_id, target,
                skip=("complete", "cancelled", "completed-in-background"),
                also={"updated_at": time.time()},
            )  # fmt: skip

    def retrieves_to_resume(self) -> list[tuple[str, str, int, int]]:
        """At start: a retrieve whose association died with the last process goes on in the
        background; (request id, study UID, expected, arrived) of every one to follow."""
        with self.state.transaction() as conn:
            for (request_id,) in conn.execute(
                "SELECT request_id FROM retrieves WHERE state = 'receiving'"
            ).fetchall():
                _move(conn, "retrieves", request_id, "background")
            rows = conn.execute(
                "SELECT request_id, study_uid, expected, arrived FROM retrieves "
                "WHERE state IN ('background', 'stalled') AND study_uid IS NOT NULL"
            ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2] or 1), int(r[3])) for r in rows]
