"""Real OCR on generated images: recall of identifying boxes and untouched pixels elsewhere.

Needs the Debian package tesseract-ocr (CI installs it) and fonts-dejavu-core; the cases in
other fonts need fonts-liberation, fonts-freefont-ttf and fonts-urw-base35 (skipped without).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import RLELossless

from deidentify.pixels import PixelPolicy, RuleSet, TesseractBackend, scrub
from deidentify.pixels.frames import decode
from deidentify.pixels.tesseract import INSTALL_HINT, parse_tsv
from tests.deidentify.pixels.synth import (
    FONTS,
    banner_texts,
    corner_texts,
    font_path,
    fonts_available,
    mono_image,
    rgb_image,
)

BACKEND = TesseractBackend()
needs_tesseract = pytest.mark.skipif(
    not BACKEND.is_available() or not fonts_available(),
    reason=BACKEND.unavailable_reason() or "fonts-dejavu-core is not installed",
)
POLICY = PixelPolicy(rules=RuleSet(), learned="off")  # OCR and the classical detector


def _score(
    before: np.ndarray, after: np.ndarray, boxes: list, margin: int = 3
) -> tuple[int, int, float]:
    """(identifying boxes fully blanked, identifying boxes, fraction of pixels outside all text
    left unchanged)."""
    outside = np.ones(before.shape[:2], bool)
    removed = total = 0
    text_contrast = int(before.max()) - int(before.min())
    for box, identifying in boxes:
        # outside text: labels next to values are text too (a line is blanked whole)
        g = box.grow(margin)
        outside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = False
        if not identifying:
            continue
        total += 1
        region = after[box.top : box.bottom, box.left : box.right]
        removed += int(region.max()) - int(region.min()) < text_contrast // 4  # no ink left
    same = np.all(before == after, axis=-1) if before.ndim == 3 else before == after
    return removed, total, float(same[outside].mean())


def test_missing_binary_names_the_package() -> None:
    backend = TesseractBackend(binary="tesseract-does-not-exist")
    assert not backend.is_available()
    assert backend.unavailable_reason() == INSTALL_HINT
    assert "apt-get install tesseract-ocr" in INSTALL_HINT


def test_parse_tsv_pages_and_words() -> None:
    columns = "level page_num block_num par_num line_num word_num left top width height conf text"
    header = "\t".join(columns.split())
    rows = [
        header,
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t",
        "5\t1\t1\t1\t1\t1\t5\t6\t30\t10\t91.5\tDOE",
        "5\t2\t2\t1\t3\t1\t7\t8\t20\t10\t80\tJOHN",
        "5\t2\t2\t1\t3\t2\t7\t8\t20\t10\t80\t ",
    ]
    pages = parse_tsv("\n".join(rows), 2)
    assert [[w.text for w in p] for p in pages] == [["DOE"], ["JOHN"]]
    assert pages[1][0].line == (2, 1, 3) and pages[0][0].box.left == 5


CASES = [
    pytest.param(
        font, size, light, id=f"{font.split('.')[0]}-{size}px-{'light' if light else 'dark'}"
    )
    for font, size in zip(FONTS * 2, (13, 16, 20, 24, 14, 18, 22, 28), strict=True)
    for light in (True, False)
]


@needs_tesseract
@pytest.mark.parametrize("font, size, light_on_dark", CASES)
def test_corner_text_is_removed(font: str, size: int, light_on_dark: bool) -> None:
    texts = corner_texts(480, 640, size, font)
    drawn = mono_image(texts=texts, light_on_dark=light_on_dark, seed=size)
    result = scrub(drawn.ds, POLICY, BACKEND)
    assert result.reason is None, result.reason
    assert result.dataset is not None
    removed, total, untouched = _score(
        decode(drawn.ds).frames[0], decode(result.dataset).frames[0], drawn.boxes
    )
    assert (removed, total) == (4, 4)
    assert untouched >= 0.98


@needs_tesseract
def test_multiframe_rgb_ultrasound_every_frame() -> None:
    texts = corner_texts(360, 480, 15)
    drawn = rgb_image(360, 480, texts=texts, frames=4)
    result = scrub(drawn.ds, POLICY, BACKEND)
    assert result.dataset is not None, result.reason
    before, after = decode(drawn.ds).frames, decode(result.dataset).frames
    for i in range(4):
        removed, total, untouched = _score(before[i], after[i], drawn.boxes)
        assert (removed, total) == (4, 4) and untouched >= 0.98


@needs_tesseract
def test_compressed_16_bit_monochrome1() -> None:
    texts = corner_texts(400, 560, 18)
    drawn = mono_image(400, 560, texts=texts, bits=12, photometric="MONOCHROME1", modality="CR")
    drawn.ds.compress(RLELossless, generate_instance_uid=False)
    result = scrub(drawn.ds, POLICY, BACKEND)
    assert result.dataset is not None, result.reason
    assert result.dataset.file_meta.TransferSyntaxUID == RLELossless
    removed, total, untouched = _score(
        decode(drawn.ds).frames[0], decode(result.dataset).frames[0], drawn.boxes
    )
    assert (removed, total) == (4, 4) and untouched >= 0.98


OTHER_FONTS = [
    pytest.param(
        font, size, light, id=f"{font.split('.')[0]}-{size}px-{'light' if light else 'dark'}"
    )
    for font, size, light in [
        ("LiberationSans-Regular.ttf", 11, True),
        ("LiberationSerif-Regular.ttf", 12, False),
        ("LiberationMono-Regular.ttf", 18, True),
        ("FreeSans.ttf", 14, False),
        ("FreeSerif.ttf", 24, True),
        ("FreeMono.ttf", 32, False),
        ("NimbusSans-Regular.otf", 16, True),
        ("NimbusMonoPS-Regular.otf", 24, False),
    ]
]


@needs_tesseract
@pytest.mark.parametrize("font, size, light_on_dark", OTHER_FONTS)
def test_banner_in_other_fonts_is_removed(font: str, size: int, light_on_dark: bool) -> None:
    if font_path(font) is None:
        pytest.skip(f"{font} is not installed")
    texts = banner_texts(480, 640, size, font)
    drawn = mono_image(texts=texts, light_on_dark=light_on_dark, seed=size)
    result = scrub(drawn.ds, POLICY, BACKEND)
    assert result.dataset is not None, result.reason
    removed, total, untouched = _score(
        decode(drawn.ds).frames[0], decode(result.dataset).frames[0], drawn.boxes
    )
    assert (removed, total) == (5, 5)
    assert untouched >= 0.97


@needs_tesseract
def test_whole_frame_reading_still_works() -> None:
    """The old path (no crops, one reading) stays available and correct."""
    backend = TesseractBackend(regions=None, fit_heights=())
    texts = corner_texts(480, 640, 18)
    drawn = mono_image(texts=texts, seed=18)
    result = scrub(drawn.ds, POLICY, backend)
    assert result.dataset is not None, result.reason
    removed, total, _ = _score(
        decode(drawn.ds).frames[0], decode(result.dataset).frames[0], drawn.boxes
    )
    assert (removed, total) == (4, 4)
