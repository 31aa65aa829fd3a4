"""The hub's logs quote no header value: `serve` sets up uvicorn's logging, then
`redact_logs`; an unhandled error's traceback (uvicorn's "Exception in ASGI application") and
pydicom's warnings (a collection instance's header read) keep no value."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import uvicorn

from deidentify.log_redaction import uninstall
from hub.server import redact_logs
from tests.factories.quoted_values import assert_no_token, fail_on, read_header_with_bad_values


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        yield
    finally:
        uninstall()
        structlog.reset_defaults()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)


def test_hub_logs_quote_no_header_value(
    restored_logging: None,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    uvicorn.Config(lambda *_: None, log_level="warning", access_log=False)  # as `serve` does
    redact_logs()
    sex = read_header_with_bad_values(tmp_path)  # pydicom warns, quoting the values
    try:
        fail_on(sex)
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        structlog.get_logger("hexchange.hub.test").exception("ingest step failed")
    out, err = capfd.readouterr()
    text = out + err + caplog.text  # pydicom's lines: to the root's handlers (here pytest's)
    assert "Exception in ASGI application" in text and "ValueError" in text, text
    assert "Invalid value for VR DA" in text and "ingest step failed" in text, text
    assert_no_token(text)
