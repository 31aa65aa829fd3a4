"""The agent's logs quote no header value: its logging set-up (`hexchange-agent run`) renders
tracebacks without exception messages, and library warnings (pydicom reading a header with a
bad value) without the quoted value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydicom import dcmread

from deidentify.log_redaction import uninstall
from node_agent import cli
from tests.factories.dicom import make_ct_study

TOKENS = ("Zqxwv", "Ykjhg", "773311")


@pytest.fixture
def agent_logging() -> Iterator[None]:
    """Undoes the agent's logging set-up after the test."""
    try:
        yield
    finally:
        uninstall()
        structlog.reset_defaults()


def _fail_on(value: str) -> None:
    float(value)  # ValueError: could not convert string to float: '<value>'


def test_agent_logs_quote_no_header_value(
    agent_logging: None,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cli._configure_logging(json_logs=True)  # here: its lines go to the stderr captured now
    study = make_ct_study(tmp_path / "study", instances=1)
    ds = dcmread(study.files[0])
    ds["PatientBirthDate"].value = "Zqxwv"
    ds["PatientSex"].value = "Ykjhg 773311"
    ds.save_as(tmp_path / "bad.dcm")
    header = dcmread(tmp_path / "bad.dcm")
    _ = (header.PatientBirthDate, header.PatientSex)  # pydicom warns, quoting the values
    try:
        _fail_on(str(header.PatientSex))
    except ValueError:
        structlog.get_logger("hexchange.agent.test").exception("loop step failed")
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    assert "loop step failed" in text and "ValueError" in text and "VR DA" in text
    for token in TOKENS:
        assert token.lower() not in text.lower(), text
