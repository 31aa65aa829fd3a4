"""Retry timing for persisted queues: exponential backoff with full jitter."""

from __future__ import annotations

import random

from node_agent.ledger import Ledger
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
    return Ledger(state).retry_later(
        table,
        bundle_id,
        reason,
        lambda attempts: next_delay(attempts, base=base, cap=cap),
        progressed,
    )
