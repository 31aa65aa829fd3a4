from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from deidentify.engine import PseudonymKeys, apply
from deidentify.profile import Profile
from tests.deidentify.factories import sr_referencing
from tests.factories.dicom import make_ct_study

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")


def _errors(path: Path) -> set[str]:
    proc = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    # normalise: drop values in quotes/brackets so the same error on input and output compares equal
    return {re.sub(r" = <[^>]*>", "", ln).strip() for ln in lines if ln.startswith("Error")}


@pytest.mark.parametrize(
    "options",
    [[], ["retain-long-modified-dates", "retain-patient-characteristics", "clean-descriptors"]],
)
def test_no_new_dciodvfy_errors(tmp_path: Path, keys: PseudonymKeys, options: list[str]) -> None:
    study = make_ct_study(tmp_path / "in", instances=2)
    sr_path = tmp_path / "in" / "sr.dcm"
    sr_referencing(study).save_as(sr_path, enforce_file_format=True)
    profile = Profile.from_names(options)
    for path in [*study.files, sr_path]:
        out_path = tmp_path / f"out-{path.name}"
        apply(dcmread(path), profile, keys).dataset.save_as(out_path, enforce_file_format=True)
        new = _errors(out_path) - _errors(path)
        assert not new, f"{path.name}: {sorted(new)}"
