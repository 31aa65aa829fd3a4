"""The text detector and the screen in the scrubber, on real anatomy with burned-in identity.

Images: `tests/factories/burned_text.py` (pydicom's bundled CT/NM slices with invented
identifying text burned in). OCR is a fake that reads nothing, so what is blanked here is
what the detector found: the part of the scrubber that does not depend on tesseract.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from deidentify.pixels import PixelPolicy, RuleSet, scrub
from deidentify.pixels.allow import line_is_safe, word_is_safe
from deidentify.pixels.frames import decode, render_gray8
from deidentify.pixels.ocr import Box, OcrWord
from deidentify.pixels.textdetect import find_text
from tests.deidentify.pixels.synth import FakeOcr, Text, mono_image
from tests.factories.burned_text import Anatomy, Burn, Sample, anatomy, burn, installed_fonts

POLICY = PixelPolicy(rules=RuleSet(), learned="off")  # the classical detector alone
needs_fonts = pytest.mark.skipif(
    len(installed_fonts()) < 3, reason="Debian fonts (fonts-dejavu-core, fonts-liberation) missing"
)


def _identity(name: str, height: int, contrast: float) -> list[Burn]:
    """A name top left (background), a birth date bottom left, an ID over the anatomy."""
    base = anatomy(name)
    rows, columns = base.pixels.shape
    return [
        Burn("QUIGLEY, ROSALIND", 8, 8, height, contrast, "DejaVuSans.ttf"),
        Burn("DOB 17/03/1962", 8, rows - height - 40, height, contrast,
             "LiberationSerif-Regular.ttf"),
        Burn("8812345670", columns // 2 - 60, rows // 2, height, contrast, "DejaVuSansMono.ttf"),
    ]  # fmt: skip


def _coverage_and_unchanged(sample: Sample, out: Dataset, boxes: list[Box]) -> tuple[float, float]:
    """(smallest share of a text's ink inside blanked boxes, share of other pixels unchanged)."""
    before, after = decode(sample.ds).frames[0], decode(out).frames[0]
    blanked = np.zeros(before.shape, bool)
    for box in boxes:
        blanked[box.top : box.bottom, box.left : box.right] = True
        assert int(np.ptp(after[box.top : box.bottom, box.left : box.right])) == 0  # flat
    outside = np.ones(before.shape, bool)
    for truth in sample.boxes:
        g = truth.box.grow(3)
        outside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = False
    coverage = min(float(blanked[t.ink].mean()) for t in sample.boxes)
    return coverage, float((before == after)[outside].mean())


@needs_fonts
@pytest.mark.parametrize("name", ["ct_head", "ct_skull", "ct_spine", "nm_whole_body"])
@pytest.mark.parametrize("height, contrast", [(9, 0.6), (16, 1.0), (16, 0.6)])
@pytest.mark.parametrize("variant", ["plain", "monochrome1", "jpeg"])
def test_burned_identity_is_blanked_without_ocr_and_anatomy_kept(
    name: str, height: int, contrast: float, variant: str
) -> None:
    sample = burn(
        anatomy(name),
        _identity(name, height, contrast),
        monochrome1=variant == "monochrome1",
        jpeg_quality=80 if variant == "jpeg" else None,
    )
    assert sample.ds.BurnedInAnnotation == "NO"  # the device's claim is not trusted
    result = scrub(sample.ds, POLICY, FakeOcr())
    assert result.dataset is not None, result.reason
    coverage, unchanged = _coverage_and_unchanged(sample, result.dataset, result.boxes[0])
    assert coverage >= 0.98
    assert unchanged >= 0.98
    assert result.dataset.BurnedInAnnotation == "NO"


@needs_fonts
def test_every_slice_of_a_series_is_screened_and_clean_slices_stay_byte_identical() -> None:
    base = anatomy("ct_head")
    with_text = {3, 10}  # slices 1 + 16k were the only ones read before
    for number in range(1, 13):
        specs = _identity("ct_head", 12, 0.6) if number in with_text else []
        sample = burn(base, specs, noise=0.002, seed=number)
        sample.ds.InstanceNumber = number
        ocr = FakeOcr()
        result = scrub(sample.ds, POLICY, ocr)
        assert result.dataset is not None, result.reason
        if number in with_text:
            coverage, _ = _coverage_and_unchanged(sample, result.dataset, result.boxes[0])
            assert coverage >= 0.98, number
            assert ocr.calls == [1, 1]  # OCR read its detected lines, then verified
        else:
            assert result.dataset.PixelData == sample.ds.PixelData, number
            assert ocr.calls == [] and not result.boxes
        assert result.dataset.BurnedInAnnotation == "NO"


def test_clean_ct_slices_have_no_text_lines() -> None:
    for name in ("ct_head", "ct_skull", "ct_spine", "nm_whole_body"):
        sample = burn(anatomy(name), [])
        decoded = decode(sample.ds)
        assert find_text(render_gray8(decoded.frames[0], decoded.photometric)) == [], name


@needs_fonts
def test_unreadable_text_is_blanked_and_safe_text_read_by_ocr_is_kept() -> None:
    sample = burn(
        anatomy("ct_spine"),
        [
            Burn("QUIGLEY, ROSALIND", 8, 8, 14, 1.0),
            Burn("W 400 L 40", 300, 470, 14, 1.0, identifying=False),
        ],
    )
    name_box, marker_box = (t.box for t in sample.boxes)
    # OCR misreads the name as a safe marker, and reads the window/level correctly
    ocr = FakeOcr([("L", name_box), ("W 400 L 40", marker_box)])
    result = scrub(sample.ds, POLICY, ocr)
    assert result.dataset is not None, result.reason
    after = decode(result.dataset).frames[0]
    before = decode(sample.ds).frames[0]
    n, m = name_box, marker_box
    assert int(np.ptp(after[n.top : n.bottom, n.left : n.right])) == 0  # blanked anyway
    assert np.array_equal(
        before[m.top : m.bottom, m.left : m.right], after[m.top : m.bottom, m.left : m.right]
    )
    assert result.kept[0]
    # strict: even text OCR reads as safe is blanked
    strict = scrub(sample.ds, PixelPolicy(rules=RuleSet(), text="strict", learned="off"), ocr)
    assert strict.dataset is not None and not strict.kept
    after = decode(strict.dataset).frames[0]
    assert int(np.ptp(after[m.top : m.bottom, m.left : m.right])) == 0


@needs_fonts
def test_a_page_of_text_is_quarantined_or_blanked_whole_by_policy() -> None:
    texts = [
        Text(f"Line {i} of the dose report for Quigley Rosalind", 10, 12 + 26 * i, 16)
        for i in range(16)
    ]
    drawn = mono_image(440, 560, texts=texts, light_on_dark=False, modality="CT")
    result = scrub(drawn.ds, POLICY, FakeOcr())
    assert result.quarantined and "page of text" in (result.reason or "")
    assert "Quigley" not in (result.reason or "")
    blanking = PixelPolicy(rules=RuleSet(), documents="blank", learned="off")
    blank = scrub(drawn.ds, blanking, FakeOcr())
    assert blank.dataset is not None
    frame = decode(blank.dataset).frames[0]
    assert int(np.ptp(frame)) == 0


def test_policy_values_are_checked() -> None:
    with pytest.raises(ValueError, match="text must be one of"):
        PixelPolicy(text="sometimes")
    with pytest.raises(ValueError, match="documents must be one of"):
        PixelPolicy(documents="send")


@pytest.mark.parametrize(
    "text, safe",
    [
        ("L", True), ("AP", True), ("W:400", True), ("120kVp", True), ("250 mAs", True),
        ("5.0mm", True), ("Im: 42", True), ("Se:3", True), ("QUIGLEY", False),
        ("1962", False), ("8812345670", False), ("17/03/1962", False), ("Rosalind", False),
    ],
)  # fmt: skip
def test_safe_words(text: str, safe: bool) -> None:
    assert word_is_safe(text) is safe


def test_a_safe_reading_must_explain_the_marks() -> None:
    word = [OcrWord("L", Box(0, 0, 8, 10), 90.0)]
    assert line_is_safe(word, glyphs=3)
    assert not line_is_safe(word, glyphs=9)  # a name of several letters read as "L"
    assert not line_is_safe([], glyphs=3)  # unread text is never safe
    site = frozenset({"LIVER"})
    assert line_is_safe([OcrWord("Liver", Box(0, 0, 30, 10), 90.0)], 5, site)


def _dark_frame_with_bar(bar_x: int) -> Anatomy:
    """A dark 256 x 512 CT-like frame crossed top to bottom by a thin bright bar (a catheter,
    a vessel)."""
    pixels = np.full((256, 512), 40, np.int32)
    pixels[:, bar_x : bar_x + 3] = 900
    pixels[0, 0] = 1000  # the dynamic range of a CT window
    return Anatomy("bar", pixels, "CT")


@needs_fonts
@pytest.mark.parametrize("height", [12, 24, 40])
def test_blanked_boxes_hug_the_text(height: int) -> None:
    """Only the text's ink and a couple of pixels around it are blanked: the pixels next to a
    line are kept (the line boxes used to be padded by a quarter of the text height)."""
    base = _dark_frame_with_bar(505)
    sample = burn(base, [Burn("Rosalind Quigley", 8, 100, height, 1.0)])
    result = scrub(sample.ds, POLICY, FakeOcr([]))
    assert result.dataset is not None, result.reason
    coverage, _ = _coverage_and_unchanged(sample, result.dataset, result.boxes[0])
    assert coverage >= 0.98
    allowed = sample.boxes[0].box.grow(2 + height // 8)
    for box in result.boxes[0]:
        assert box.union(allowed) == allowed, f"{box} reaches beyond {allowed}"
