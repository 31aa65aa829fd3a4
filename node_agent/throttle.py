"""Upload pacing: a bandwidth cap (token bucket) and off-peak windows for bulk traffic."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    """A daily local-time window; `start > end` wraps past midnight (e.g. 19:00-07:00)."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> Window:
        match = _WINDOW.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a window like 19:00-07:00 (24-hour HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        return cls(dt.time(h1, m1), dt.time(h2, m2))

    def contains(self, moment: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def in_any_window(windows: list[Window], now: dt.datetime | None = None) -> bool:
    moment = (now or dt.datetime.now()).time()
    return any(w.contains(moment) for w in windows)


class TokenBucket:
    """At most `rate` bytes per second on average, bursts up to `burst` bytes."""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else (rate or 0.0)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def delay_for(self, size: int) -> float:
        """Take `size` bytes from the bucket; return how long to wait before sending them."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= size
            return max(0.0, -self._tokens / self.rate)

    def consume(self, size: int) -> None:
        wait = self.delay_for(size)
        if wait > 0:
            time.sleep(wait)
