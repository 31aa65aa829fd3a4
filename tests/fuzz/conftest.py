"""Hypothesis settings for the fuzz suite: bounded so the whole folder runs in seconds."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz",
    max_examples=60,
    deadline=2000,  # ms per example: a hang fails the test instead of stalling the suite
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    report_multiple_bugs=False,  # one exception per test, so an xfail can name its type
    derandomize=True,  # the same examples in CI and on a laptop
)
settings.load_profile("fuzz")
