"""How the detector shapes what it blanks: slanted lines, lines close together, anatomy columns.

Real anatomy (pydicom's bundled slices) or a flat frame, invented text burned in
(`tests/factories/burned_text.py`); OCR reads nothing, so what is blanked is what the detector
found.
"""

from __future__ import annotations

import numpy as np
import pytest

from deidentify.pixels.frames import decode, render_gray8
from deidentify.pixels.textdetect import find_text
from tests.deidentify.pixels.classical import blanked as _blanked
from tests.deidentify.pixels.classical import dark as _dark
from tests.deidentify.pixels.classical import needs_fonts
from tests.factories.burned_text import Burn, anatomy, burn

MONO = "LiberationMono-Regular.ttf"


def _assert_blanked_whole(name: str, spec: Burn, area: float | None) -> None:
    """`spec` burned into the anatomy image `name` is blanked whole (98 % of its ink), and
    what is blanked is at most `area` x the text's box grown by 2 (None: not checked)."""
    sample = burn(anatomy(name), [spec])
    blanked = _blanked(sample)
    truth = sample.boxes[0]
    assert blanked[truth.ink].mean() >= 0.98
    if area is not None:
        assert blanked.sum() <= area * truth.box.grow(2).area


@needs_fonts
@pytest.mark.parametrize("angle", [20.0, -12.0])
@pytest.mark.parametrize("height", [12, 24])
def test_slanted_text_is_blanked_along_its_band_not_its_bounding_box(
    angle: float, height: int
) -> None:
    """A slanted name is blanked whole, as a band along the text: the background above and
    below the slant (about half the text's bounding box) stays."""
    sample = burn(_dark(), [Burn("QUIGLEY, ROSALIND", 40, 60, height, 1.0, angle=angle)])
    blanked = _blanked(sample)
    truth = sample.boxes[0]
    assert blanked[truth.ink].mean() >= 0.98
    box = truth.box.grow(2)
    inside = blanked[box.top : box.bottom, box.left : box.right].sum()
    assert inside <= 0.75 * box.area, f"{inside} of {box.area} pixels of the bounding box"
    # beyond it: the band's ends (it reaches a glyph height past the first and last glyph,
    # for letters the grouping missed), nothing else
    assert blanked.sum() - inside <= 0.3 * box.area


@needs_fonts
@pytest.mark.parametrize("name", ["ct_head", "nm_whole_body"])
def test_two_lines_close_above_each_other_are_both_blanked(name: str) -> None:
    """A name over a birth date, a few pixels apart (the usual corner block): both lines
    blanked whole, neither taken for the other's outliers."""
    base = anatomy(name)
    y = base.pixels.shape[0] - 60
    sample = burn(
        base,
        [
            Burn("QUIGLEY, ROSALIND", 12, y, 9, 1.0, "DejaVuSans.ttf"),
            Burn("DOB 17/03/1962", 12, y + 14, 9, 1.0, "DejaVuSans.ttf"),
        ],
    )
    blanked = _blanked(sample)
    for truth in sample.boxes:
        assert blanked[truth.ink].mean() >= 0.98, truth.spec.text


def test_clean_mr_slices_have_no_text_lines() -> None:
    """MR brain: curved anatomy marks stacked in a column are not read as vertical text."""
    sample = burn(anatomy("mr_brain"), [])
    decoded = decode(sample.ds)
    assert find_text(render_gray8(decoded.frames[0], decoded.photometric)) == []


def test_marks_in_one_polarity_only_are_found() -> None:
    """Glyph-like marks with no dark detail between them (the black top-hat is zero
    everywhere: a flat frame with convex-ish bright marks wider apart than the kernel) are
    still found, not an error: a frame with text of one polarity only."""
    gray = np.zeros((128, 256), np.uint8)
    for i in range(6):
        gray[40:60, 20 + 30 * i : 23 + 30 * i] = 200  # a stem
        gray[40:43, 20 + 30 * i : 32 + 30 * i] = 200  # and a bar: a letter like a "Γ"
    lines = find_text(gray)
    assert len(lines) == 1
    assert lines[0].box.left <= 20 and lines[0].box.right >= 182


@needs_fonts
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("ct_skull", Burn("17-MAR-1962", 426, 428, 7, 0.15, "DejaVuSans-Bold.ttf")),
        ("ct_skull", Burn("2024-06-11 14:32", 377, 209, 12, 0.15, "DejaVuSans-ExtraLight.ttf")),
        ("nm_whole_body", Burn("DOB 17/03/1962", 75, 354, 16, 0.15, "DejaVuSans-ExtraLight.ttf")),
        ("ct_skull", Burn("ID: 8812345670", 105, 36, 40, 0.15, "LiberationSerif-Regular.ttf")),
        # the next word, faint, a word gap (mono) away; vertical lines
        ("ct_spine", Burn("DOB 17/03/1962", 47, 220, 16, 0.3, MONO, antialias=False)),
        ("ct_head", Burn("ID: 8812345670", 377, 2, 16, 0.6, "DejaVuSans.ttf", 90.0)),
        ("ct_skull", Burn("2024-06-11 14:32", 391, 243, 16, 0.3, MONO, 90.0, antialias=False)),
    ],
)
def test_faint_letters_at_the_ends_of_a_line_are_blanked_with_it(name: str, spec: Burn) -> None:
    """Low-contrast text over anatomy whose first or last letters or words stay below the
    glyph threshold (the anatomy under them changes, so their contrast does): the line is
    followed over those faint letters (inside its band, at least half a glyph high, up to a
    word gap apart) and blanked whole, and what is blanked stays about the text's own box."""
    _assert_blanked_whole(name, spec, 1.6)


@needs_fonts
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("ct_head", Burn("Marlow Creek Infirmary", 310, 320, 7, 1.0, "FreeSerif.ttf", 20.0)),
        ("ct_skull", Burn("Rosalind Quigley", 9, 422, 9, 0.3, "FreeSans.ttf", -12.0)),
        ("mr_brain", Burn("F 62Y Quigley R", 45, 81, 12, 0.3, "NimbusMonoPS-Regular.otf", -12.0)),
        ("ct_skull", Burn("2024-06-11 14:32", 208, 158, 12, 1.0, "FreeMono.ttf", 20.0)),
    ],
)
def test_slanted_line_reaches_over_the_faint_letters_at_its_ends(name: str, spec: Burn) -> None:
    """A slanted line whose first or last letters the glyph threshold missed (over anatomy)
    is lengthened along its fitted line over the faint marks within its band: blanked whole,
    still as a band (less than the text's bounding box)."""
    _assert_blanked_whole(name, spec, 1.0)


@needs_fonts
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("ct_skull", Burn("Acc 77340012", 261, 44, 12, 0.6, "FreeMono.ttf")),
        ("ct_skull", Burn("2024-06-11 14:32", 272, 487, 9, 0.15, "FreeMono.ttf")),
        (
            "ct_head",
            Burn("Marlow Creek Infirmary", 325, 54, 7, 0.3, "DejaVuSans.ttf", -12.0, False),
        ),
    ],
)
def test_line_ends_over_anatomy_edges_are_followed(name: str, spec: Burn) -> None:
    """Letters at a line's end that touch an anatomy edge wider than the letters (the frame's
    top-hat joins them with it) are still followed: in a top-hat about half the glyph height
    wide the edge drops out and they stand apart (dark ones too, where the anatomy under the
    text turns brighter than the text). Blanked whole, within the text's box."""
    _assert_blanked_whole(name, spec, 1.0)


@needs_fonts
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        (
            "mr_abdomen",
            Burn("DOB 17/03/1962", 17, 114, 24, 1.0, "LiberationSerif-Regular.ttf", -12.0),
        ),
        ("mr_brain", Burn("8812345670", 18, 136, 24, 1.0, "DejaVuSans-Bold.ttf", 20.0)),
        ("ct_skull", Burn("ID: 8812345670", 58, 262, 40, 0.3, "DejaVuSans-ExtraLight.ttf", -12.0)),
    ],
)
def test_a_line_joined_by_anatomy_marks_is_still_found(name: str, spec: Burn) -> None:
    """Slanted text whose glyph group also took in anatomy marks of other heights (they spoil
    its line fit): its own glyphs, on one line, are still found and the text blanked whole."""
    _assert_blanked_whole(name, spec, None)
