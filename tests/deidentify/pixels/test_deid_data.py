"""Real ultrasound files with burned-in banners from the `deid-data` sdist, when cached.

Fetch them with `python tools/fetch_deid_data.py` (never committed); skipped otherwise.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from deidentify.clean import identifying_values
from deidentify.pixels import Needles, PixelPolicy, RuleSet, TesseractBackend, find_hits, scrub
from deidentify.pixels.frames import decode
from deidentify.pixels.ocr_input import ocr_image

CACHE = Path(os.environ.get("HEXCHANGE_DEID_DATA", str(Path.home() / ".cache/hexchange/deid-data")))
US = CACHE / "ultrasounds"
BACKEND = TesseractBackend()
pytestmark = [
    pytest.mark.skipif(not US.is_dir(), reason="deid-data not fetched (tools/fetch_deid_data.py)"),
    pytest.mark.skipif(not BACKEND.is_available(), reason=BACKEND.unavailable_reason()),
]
# (file, banner height in rows)
SINGLE = [("GREYSCALE_IMAGE.dcm", 24), ("RGB_IMAGE.dcm", 56)]


def _residual(ds_out, needles: Needles) -> list[str]:  # type: ignore[no-untyped-def]
    decoded = decode(ds_out)
    images = [ocr_image(f, decoded.photometric) for f in decoded.frames[:1]]
    return [h.kind for h in find_hits(BACKEND.read(images)[0], needles)]


@pytest.mark.parametrize("name, banner", SINGLE)
def test_default_policy_removes_the_banner(name: str, banner: int) -> None:
    ds = dcmread(US / name)
    result = scrub(ds, PixelPolicy.default(), BACKEND)
    assert result.dataset is not None, result.reason
    frame = decode(result.dataset).frames[0]
    assert int(frame[:banner].max()) == int(frame[:banner].min())
    assert result.dataset.BurnedInAnnotation == "NO"
    assert _residual(result.dataset, Needles.from_values(identifying_values(ds))) == []


@pytest.mark.parametrize("name, banner", SINGLE)
def test_ocr_alone_removes_the_identifying_banner_text(name: str, banner: int) -> None:
    ds = dcmread(US / name)
    policy = PixelPolicy(rules=RuleSet(), ultrasound_regions_only=False, learned="off")
    result = scrub(ds, policy, BACKEND)
    assert result.dataset is not None, result.reason
    assert result.hits["identifying-value"] >= 2
    before, after = decode(ds).frames[0], decode(result.dataset).frames[0]
    changed = np.any(before != after, axis=-1) if before.ndim == 3 else before != after
    assert changed[banner:].mean() < 0.02  # the image below the banner is left alone
    assert _residual(result.dataset, Needles.from_values(identifying_values(ds))) == []


def test_greyscale_cine_every_frame() -> None:
    ds = dcmread(US / "GREYSCALE_CINE.dcm")
    policy = replace(PixelPolicy.default(), learned="off")  # the learned stage: test_netdetect.py
    result = scrub(ds, policy, BACKEND)
    assert result.dataset is not None, result.reason
    frames = decode(result.dataset).frames
    assert frames.shape[0] == 27 and len(result.ocr_frames) == 27
    assert int(frames[:, :24].max()) == int(frames[:, :24].min())
