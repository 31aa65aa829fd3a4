"""What the detector blanks besides the text: large stacked lines, slanted lines, MR anatomy.

Issue 10's second target is the pixels outside text left unchanged. Real anatomy (pydicom's
bundled slices) or a flat frame, invented text burned in (`tests/factories/burned_text.py`);
OCR reads nothing, so what is blanked is what the detector found.
"""

from __future__ import annotations

import numpy as np
import pytest

from deidentify.pixels import PixelPolicy, RuleSet, netdetect, scrub
from deidentify.pixels.frames import decode, render_gray8
from deidentify.pixels.textdetect import find_text
from tests.deidentify.pixels.classical import blanked as _blanked
from tests.deidentify.pixels.classical import dark as _dark
from tests.deidentify.pixels.classical import needs_fonts
from tests.factories.burned_text import Burn, Sample, anatomy, burn


def _outside(sample: Sample, grow: int = 3) -> np.ndarray:
    """Pixels outside every text's box grown by `grow` (the bench's 'outside text')."""
    outside = np.ones((int(sample.ds.Rows), int(sample.ds.Columns)), bool)
    for truth in sample.boxes:
        g = truth.box.grow(grow)
        outside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = False
    return outside


STACKED = [
    Burn("F 62Y Quigley R", 8, 41, 40, 0.3, "DejaVuSans-Bold.ttf", inverted=True),
    Burn("8812345670", 83, 135, 40, 0.3, "LiberationMono-Regular.ttf", antialias=False),
    Burn("2024-06-11 14:32", 9, 186, 40, 0.3, "LiberationSerif-Regular.ttf", inverted=True),
]


@needs_fonts
@pytest.mark.parametrize("name", ["mr_abdomen", "ct_head"])
def test_letters_of_stacked_large_lines_are_not_read_down_as_a_column(name: str) -> None:
    """Three 40 px lines stacked: their letters line up in columns too (a 'vertical line'
    through one letter of each). Those glyphs belong to the horizontal lines, which blank
    them; no vertical line is found for them (its band was blanked through the anatomy above
    and below the text)."""
    sample = burn(anatomy(name), STACKED)
    decoded = decode(sample.ds)
    lines = find_text(render_gray8(decoded.frames[0], decoded.photometric))
    assert not [ln for ln in lines if ln.vertical], [ln.box for ln in lines if ln.vertical]
    blanked = _blanked(sample)
    for truth in sample.boxes:
        assert blanked[truth.ink].mean() >= 0.98, truth.spec.text


@needs_fonts
def test_stacked_large_lines_blank_little_beside_them() -> None:
    """The same three lines over a CT head: the columns, the descenders read as a line of
    their own and slanted runs through the large letters are dropped, so at most 6 % of the
    pixels outside the text are blanked (9.3 % before)."""
    sample = burn(anatomy("ct_head"), STACKED)
    blanked = _blanked(sample)
    outside = _outside(sample)
    assert blanked[outside].mean() <= 0.06, f"{blanked[outside].mean():.3f} of the rest blanked"


@needs_fonts
def test_a_large_line_over_anatomy_is_not_widened_over_it() -> None:
    """A 40 px ID over MR anatomy whose marks line up with its letters: the line is blanked
    over its own rows (a letter fused with anatomy lengthens it, it does not widen it), not
    a band 1.7 x the text's height (as it was: 68 rows for 40 px text)."""
    sample = burn(
        anatomy("mr_abdomen"),
        [Burn("ID: 8812345670", 19, 82, 40, 0.6, "LiberationSerif-Regular.ttf")],
    )
    blanked = _blanked(sample)
    truth = sample.boxes[0]
    assert blanked[truth.ink].mean() >= 0.98
    rows = np.flatnonzero(blanked[:, truth.box.left : truth.box.right].any(axis=1))
    assert rows.min() >= truth.box.top - 8 and rows.max() < truth.box.bottom + 8, (
        rows.min(),
        rows.max(),
        truth.box,
    )


@needs_fonts
@pytest.mark.parametrize("angle", [20.0, -12.0])
def test_a_slanted_line_is_blanked_close_to_its_rotated_box(angle: float) -> None:
    """A slanted 24 px name is blanked as a band that follows the text: little beyond its
    bounding box (the band's ends and staircase), and under 60 % of that box (the corners
    above and below the slant are kept)."""
    sample = burn(_dark(), [Burn("QUIGLEY, ROSALIND", 40, 60, 24, 1.0, angle=angle)])
    blanked = _blanked(sample)
    truth = sample.boxes[0]
    assert blanked[truth.ink].mean() >= 0.98
    box = truth.box.grow(2)
    inside = int(blanked[box.top : box.bottom, box.left : box.right].sum())
    assert inside <= 0.6 * box.area, f"{inside} of {box.area} pixels of the bounding box"
    assert blanked.sum() - inside <= 0.12 * box.area, f"{blanked.sum() - inside} beyond it"


@needs_fonts
def test_a_small_word_whose_letters_touch_is_found() -> None:
    """7 px digits whose letters touch (anti-aliasing and JPEG join them into one or two
    components, each much longer than high): cut into letters, they make a line and are
    blanked (the detector needed three separate glyphs and saw two)."""
    sample = burn(
        anatomy("nm_whole_body"),
        [Burn("8812345670", 161, 78, 7, 0.6, "DejaVuSans.ttf")],
        jpeg_quality=70,
        monochrome1=True,
        seed=35,
    )
    blanked = _blanked(sample)
    assert blanked[sample.boxes[0].ink].mean() >= 0.98


@pytest.mark.parametrize("name", ["mr_abdomen", "mr_brain", "ct_head"])
def test_clean_slices_have_no_text_lines(name: str) -> None:
    """Runs of dark marks inside the MR abdomen (bowel, fat between organs: below the body's
    threshold, so not counted as anatomy before) are not text: the body is the convex hull of
    its parts, where a line needs one glyph more."""
    sample = burn(anatomy(name), [])
    decoded = decode(sample.ds)
    assert find_text(render_gray8(decoded.frames[0], decoded.photometric)) == []


@needs_fonts
@pytest.mark.skipif(not netdetect.is_available(), reason=f"{netdetect.unavailable_reason()}")
def test_no_column_is_blanked_along_the_ends_of_stacked_blanked_lines() -> None:
    """Three short lines over an MR brain, their ends roughly one above the other; with the
    learned stage they are blanked, and the screen after scrubbing reads the blanked boxes'
    ends as a column of marks. That column is the blanks' edges, not text left over: it is
    not blanked (it was, through the whole frame: 23 % of the pixels outside the text)."""
    texts = [
        Burn("Acc 77340012", 141, 190, 9, 0.6, "LiberationSerif-Regular.ttf"),
        Burn("Acc 77340012", 126, 116, 9, 0.6, "FreeSans.ttf"),
        Burn("Marlow Creek Infirmary", 66, 15, 9, 0.6, "LiberationSerif-Regular.ttf"),
    ]
    sample = burn(anatomy("mr_brain"), texts, seed=82)
    policy = PixelPolicy(rules=RuleSet(), ocr_enabled=False, learned="auto")
    result = scrub(sample.ds, policy, None)
    assert result.dataset is not None, result.reason
    blanked = np.zeros((int(sample.ds.Rows), int(sample.ds.Columns)), bool)
    for box in result.boxes.get(0, []):
        blanked[box.top : box.bottom, box.left : box.right] = True
    outside = _outside(sample)
    assert blanked[outside].mean() <= 0.05, f"{blanked[outside].mean():.3f} of the rest blanked"


@needs_fonts
def test_the_fading_end_letter_of_a_faint_line_is_blanked_whole() -> None:
    """Vertical 15 % contrast text over NM anatomy whose first letter fades out (its lower
    rows are not faint ink next to a stroke, so its part stopped short: 94 % of the ink was
    blanked). A low-contrast line is blanked out to its ends (half its height past where it
    was followed), ink or not: the letter is blanked whole, and what is blanked stays
    within the text's own box."""
    sample = burn(
        anatomy("nm_whole_body"),
        [Burn("ID: 8812345670", 74, 71, 16, 0.15, "FreeSerif.ttf", 90.0, antialias=False)],
        jpeg_quality=70,
        seed=155,
    )
    blanked = _blanked(sample)
    truth = sample.boxes[0]
    assert blanked[truth.ink].mean() >= 0.98
    assert blanked.sum() <= truth.box.grow(2).area


@needs_fonts
@pytest.mark.parametrize(
    ("name", "angle"), [("mr_brain", 20.0), ("mr_brain", -12.0), ("ct_head", -12.0)]
)  # ct_head at 20 deg: the skull's edge in the band's reach is ink too (37 px before the text)
def test_a_slanted_band_ends_at_the_text(name: str, angle: float) -> None:
    """A slanted 24 px date over anatomy: its band is blanked no further along the line than
    the text's own ink (+ a few px), not 1.5 glyph heights past its last letter into the
    anatomy (as it was: the band was drawn again from the union of its own boxes)."""
    base = anatomy(name)
    columns = base.pixels.shape[1]
    left = columns // 6
    sample = burn(base, [Burn("17-MAR-1962", left, base.pixels.shape[0] // 3, 24, 1.0,
                              angle=angle)])  # fmt: skip
    blanked = _blanked(sample)
    truth = sample.boxes[0]
    assert blanked[truth.ink].mean() >= 0.98
    ink_columns = np.flatnonzero(truth.ink.any(axis=0))
    blanked_columns = np.flatnonzero(blanked.any(axis=0))
    assert blanked_columns.min() >= ink_columns.min() - 10, (blanked_columns.min(), ink_columns)
    assert blanked_columns.max() <= ink_columns.max() + 10, (blanked_columns.max(), ink_columns)


MR_LINES = [
    Burn("Rosalind Quigley", 68, 22, 24, 1.0, "FreeSerif.ttf"),
    Burn("QUIGLEY, ROSALIND", 19, 155, 24, 1.0, "FreeMono.ttf"),
    Burn("Acc 77340012", 232, 97, 24, 1.0, "DejaVuSans-ExtraLight.ttf"),
]


@needs_fonts
def test_lines_over_mr_are_blanked_within_their_glyphs_rows() -> None:
    """24 px lines over an MR abdomen (noisy, MONOCHROME1) whose anatomy marks the lines take
    in: the names are blanked over the rows of its letters (+- a third of their height), not a
    strip 41-44 rows high (as it was: faint ink joined to letters, and anatomy glyphs in the
    line, widened it)."""
    sample = burn(anatomy("mr_abdomen"), MR_LINES, noise=0.01, monochrome1=True, seed=231)
    blanked = _blanked(sample)
    for truth in sample.boxes:
        assert blanked[truth.ink].mean() >= 0.98
        if truth.spec.text.startswith("Acc"):
            continue  # still a strip below it (rows +9..+20), from a mark in the MR bowel
        box = truth.box
        strip = blanked[:, box.left : box.right]
        above = int(strip[box.top - 20 : box.top - 9].sum())
        below = int(strip[box.bottom + 9 : box.bottom + 20].sum())
        assert above == below == 0, (truth.spec.text, above, below)
