"""What the classical detector alone blanks through the scrub (shared by the detector tests)."""

from __future__ import annotations

import numpy as np
import pytest

from deidentify.pixels import PixelPolicy, RuleSet, scrub
from tests.deidentify.pixels.synth import FakeOcr
from tests.factories.burned_text import Anatomy, Sample, installed_fonts

POLICY = PixelPolicy(rules=RuleSet(), learned="off")  # the classical detector alone
needs_fonts = pytest.mark.skipif(
    len(installed_fonts()) < 3, reason="Debian fonts (fonts-dejavu-core, fonts-liberation) missing"
)


def dark(rows: int = 320, columns: int = 512) -> Anatomy:
    """A dark, empty frame with a CT window's dynamic range."""
    pixels = np.full((rows, columns), 40, np.int32)
    pixels[0, 0] = 1000  # the dynamic range of a CT window
    return Anatomy("dark", pixels, "CT")


def blanked(sample: Sample) -> np.ndarray:
    """The pixels the scrub blanked (OCR reads nothing: every detected line is blanked)."""
    result = scrub(sample.ds, POLICY, FakeOcr([]))
    assert result.dataset is not None, result.reason
    out = np.zeros((int(sample.ds.Rows), int(sample.ds.Columns)), bool)
    for box in result.boxes.get(0, []):
        out[box.top : box.bottom, box.left : box.right] = True
    return out
