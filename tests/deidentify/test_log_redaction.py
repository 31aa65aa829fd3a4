"""Log lines and tracebacks without the values they quote (`deidentify.log_redaction`)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from deidentify.log_redaction import (
    exception_without_values,
    install,
    redact_quoted,
    structlog_exc_info,
    uninstall,
)
from tests.factories.dicom import make_ct_study

TOKENS = ("Zqxwv", "Ykjhg", "773311")


def _clean(text: str) -> None:
    for token in TOKENS:
        assert token.lower() not in text.lower(), text


def _raise_chain(name: str = "Zqxwv^Ykjhg", patient_id: str = "ZQ-773311") -> None:
    """Errors whose messages quote header values (source lines name only the variables)."""
    try:
        float(name)
    except ValueError as exc:
        raise KeyError(patient_id) from exc


def test_a_traceback_keeps_frames_and_types_not_messages() -> None:
    with pytest.raises(KeyError) as caught:
        _raise_chain()
    text = exception_without_values(caught.value)
    _clean(text)
    assert "ValueError" in text and "KeyError" in text and "direct cause" in text
    assert text.index("ValueError") < text.index("KeyError")  # oldest first, as Python
    assert "_raise_chain" in text  # the frames stay: where it happened is said


def test_quoted_parts_are_redacted_even_with_a_quote_inside() -> None:
    assert redact_quoted("Invalid value for VR DA: 'Zqxwv'.") == "Invalid value for VR DA: '…'."
    _clean(redact_quoted("value 'O'Zqxwv^Ykjhg' and \"ZQ-773311\" end"))
    assert redact_quoted("no values here (72 bytes)") == "no values here (72 bytes)"
    # pynetdicom logs a handler's exception as text: the traceback's last line has the message
    logged = "Traceback (most recent call last):\n  File x\nValueError: bad ID ZQ-773311 here"
    assert redact_quoted(logged).endswith("ValueError (message left out)")


def test_structlog_processor_renders_exc_info_without_values() -> None:
    try:
        _raise_chain()
    except KeyError as exc:
        event = structlog_exc_info(None, "error", {"event": "failed", "exc_info": exc})
    assert "exc_info" not in event
    _clean(str(event["exception"]))


@pytest.fixture
def redacted_logging() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    install()
    try:
        yield stream
    finally:
        uninstall()
        root.removeHandler(handler)


def test_pydicom_warnings_about_a_header_value_do_not_quote_it(
    tmp_path: Path, redacted_logging: io.StringIO
) -> None:
    study = make_ct_study(tmp_path / "study", instances=1)
    ds = dcmread(study.files[0])
    ds["PatientBirthDate"].value = "Zqxwv"  # not a date
    ds["PatientSex"].value = "Zqxwv Ykjhg"  # not a code string
    ds.save_as(tmp_path / "bad.dcm")
    again = dcmread(tmp_path / "bad.dcm")
    _ = (again.PatientBirthDate, again.PatientSex)  # pydicom warns, quoting the values
    try:
        raise ValueError(f"could not convert string to float: {again.PatientSex!r}")
    except ValueError:
        logging.getLogger("deidentify.test").exception("could not read")
    text = redacted_logging.getvalue()
    assert "Invalid value for VR DA" in text and "ValueError" in text  # the lines are there
    _clean(text)
