"""Retry timing for persisted queues: exponential backoff with full jitter."""

from __future__ import annotations

import random


def next_delay(
    attempts: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after `attempts` failures (>= 1): uniform in [base/2, min(cap, base*2^n)]."""
    ceiling = min(cap, base * (2 ** min(attempts, 30)))
    draw = (rng or random).uniform(base / 2, max(base / 2, ceiling))
    return draw
