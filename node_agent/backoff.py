"""Retry timing for persisted queues: exponential backoff with full jitter."""

from __future__ import annotations

import random
import time

from node_agent.state import AgentState


def next_delay(
    attempts: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after `attempts` failures (>= 1): uniform in [base/2, min(cap, base*2^n)]."""
    ceiling = min(cap, base * (2 ** min(attempts, 30)))
    draw = (rng or random).uniform(base / 2, max(base / 2, ceiling))
    return draw


_RETRY_TABLES = {"outbox", "inbound"}


def schedule_retry(
    state: AgentState,
    table: str,
    bundle_id: str,
    reason: str,
    *,
    base: float,
    cap: float,
    progressed: bool = False,
) -> float:
    """Count one more failure of a queue row and set when to try it again; returns the delay.

    Backoff counts failures in a row: after progress (`progressed`) the next failure starts
    again from the base delay, or a long transfer on a flaky link would idle up to `cap`.
    """
    if table not in _RETRY_TABLES:
        raise ValueError(f"no retry schedule for table {table!r}")
    with state.transaction() as conn:
        row = conn.execute(
            f"SELECT attempts FROM {table} WHERE bundle_id = ?",  # noqa: S608 (fixed names)
            (bundle_id,),
        ).fetchone()
        attempts = 1 if progressed else (row["attempts"] if row else 0) + 1
        delay = next_delay(attempts, base=base, cap=cap)
        conn.execute(
            f"UPDATE {table} SET attempts = ?, next_attempt_at = ?, last_error = ?, "  # noqa: S608
            "updated_at = ? WHERE bundle_id = ?",
            (attempts, time.time() + delay, reason, time.time(), bundle_id),
        )
    return delay
