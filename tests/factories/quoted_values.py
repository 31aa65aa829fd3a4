"""Header values that libraries quote in their messages: the inputs of the tests that a
process's logs keep no value (`deidentify.log_redaction` as the agent and the hub install it)."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from tests.factories.dicom import make_ct_study

TOKENS = ("Zqxwv", "Ykjhg", "773311")


def read_header_with_bad_values(tmp_path: Path) -> str:
    """Reads a CT header whose birth date and sex hold the tokens (not a DA, not a CS), so
    pydicom warns quoting them, and returns the sex's text for a caller to fail on."""
    study = make_ct_study(tmp_path / "study", instances=1)
    ds = dcmread(study.files[0])
    ds["PatientBirthDate"].value = TOKENS[0]
    ds["PatientSex"].value = f"{TOKENS[1]} {TOKENS[2]}"
    ds.save_as(tmp_path / "bad.dcm")
    header = dcmread(tmp_path / "bad.dcm")
    _ = header.PatientBirthDate  # pydicom warns, quoting the value
    return str(header.PatientSex)


def fail_on(value: str) -> None:
    """Raises as library code does with a value it cannot use: the message quotes it."""
    float(value)  # ValueError: could not convert string to float: '<value>'


def assert_no_token(text: str) -> None:
    for token in TOKENS:
        assert token.lower() not in text.lower(), text
