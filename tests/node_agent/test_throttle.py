"""Bandwidth cap and off-peak windows."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from node_agent.config import UploadSection
from node_agent.throttle import TokenBucket, Window, in_any_window


def test_windows_parse_and_wrap_past_midnight() -> None:
    night = Window.parse("19:00-07:00")
    assert night.contains(dt.time(23, 30)) and night.contains(dt.time(6, 59))
    assert not night.contains(dt.time(7, 0)) and not night.contains(dt.time(12, 0))
    lunch = Window.parse("12:00-13:30")
    assert lunch.contains(dt.time(13, 29)) and not lunch.contains(dt.time(13, 30))
    assert in_any_window([lunch, night], dt.datetime(2026, 1, 1, 20, 0))
    assert not in_any_window([lunch], dt.datetime(2026, 1, 1, 20, 0))


def test_a_bad_window_is_refused_with_the_expected_form() -> None:
    with pytest.raises(ValidationError, match="19:00-07:00"):
        UploadSection(offpeak_windows=["7pm-7am"])


def test_token_bucket_paces_to_the_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=1000.0)
    assert bucket.delay_for(1000) == pytest.approx(0.0, abs=0.01)  # the burst
    # the next 2000 bytes need about 2 s of refill at 1000 B/s
    assert bucket.delay_for(2000) == pytest.approx(2.0, abs=0.05)
    assert TokenBucket(rate=None).delay_for(10**9) == 0.0
