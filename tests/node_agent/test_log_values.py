"""The agent's logs quote no header value: its logging set-up (`hexchange-agent run`) renders
tracebacks without exception messages, and library warnings (pydicom reading a header with a
bad value) without the quoted value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from deidentify.log_redaction import uninstall
from node_agent import cli
from tests.factories.quoted_values import assert_no_token, fail_on, read_header_with_bad_values


@pytest.fixture
def agent_logging() -> Iterator[None]:
    """Undoes the agent's logging set-up after the test."""
    try:
        yield
    finally:
        uninstall()
        structlog.reset_defaults()


def test_agent_logs_quote_no_header_value(
    agent_logging: None,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cli._configure_logging(json_logs=True)  # here: its lines go to the stderr captured now
    sex = read_header_with_bad_values(tmp_path)  # pydicom warns, quoting the values
    try:
        fail_on(sex)
    except ValueError:
        structlog.get_logger("hexchange.agent.test").exception("loop step failed")
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    assert "loop step failed" in text and "ValueError" in text and "VR DA" in text
    assert_no_token(text)
