"""Find text-like marks in a frame without reading them (no OCR): a fast screen for every frame.

Burned-in text is thin strokes of either polarity that stand out from their surroundings,
glyphs of similar height set side by side on a line. The detector (OpenCV, 7-10 ms of CPU
per 512 x 512 slice):

1. renders the frame to 8 bits over its full range (MONOCHROME1 inverted);
2. takes the white and the black top-hat (the frame minus its morphological opening, its
   closing minus the frame) with a `kernel`-wide square: strokes narrower than the kernel
   remain, whatever the background under them (anatomy included), smooth tissue and wide
   edges do not;
3. thresholds each at `min_contrast` grey levels (15 % of the dynamic range is ~38 levels)
   and labels connected components; a glyph is a component `min_height`..`max_height` high,
   not a solid block (a blanked box or a ruler), not a long thin curve (a cortex, a vessel);
   a small component much longer than high with letter stems across it (a word whose
   letters touch: anti-aliasing, JPEG) is cut into letters (`_letters`);
4. groups glyphs into lines per height band (a morphological closing that bridges letter and
   word gaps) and keeps a line of at least `min_glyphs` glyphs (more inside the body: the
   convex hull of the bright anatomy, dark organs included); lines are found horizontally
   and, for rotated text, vertically; a group that anatomy marks joined (its glyphs off one
   line) is retried with its largest subset of similar height on one line (`_consensus`); a
   line most of whose glyphs lie on a stronger line (of the other direction, or of much
   larger glyphs) is dropped (`_drop_owned`: letters of stacked lines read down as a column,
   descenders of a large line read as a line);
5. follows each line along its direction over strokes that stay inside its band (a last
   letter fused with anatomy, a comma) or over faint marks of its polarity that do (letters
   at its ends whose contrast fell below the glyph threshold where the anatomy under the
   text changes; also from a top-hat about half the glyph height wide, of either polarity,
   where an anatomy edge the frame's top-hat joins with a letter drops out; never into the
   glyphs of a line across it, and widened across only by glyphs in its own rows) and takes as its
   `parts` the ink next to its strokes (top-hat >= `faint`: anti-aliased edges), so that only
   the text is blanked (`TextLine.ink_boxes`: the parts joined into words), not a padded box
   around it. A slanted line is blanked as a fine staircase of boxes along its fitted centre
   line (`TextLine.band`).

The result is a list of line boxes (frame pixels) with their ink. False marks (an aligned run
of bright vessels) are tolerated: the scrubber blanks a detected line unless OCR reads it as
known-safe text, so a false mark costs a blanked strip, a missed line would be a leak.
`document_like` tells a page of text (a scanned document, a screenshot) from annotations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from deidentify.pixels.frames import Frames, render_gray8
from deidentify.pixels.ocr import Box, Gray8, merge_until_stable
from deidentify.pixels.opencv import cv2


@dataclass(frozen=True)
class DetectParams:
    """Tuning of `find_text`; the defaults are the measured ones (bench/pixel_bench.py)."""

    kernel: int = 13  # top-hat square: strokes up to ~kernel-2 px wide
    min_frame: int = 48  # smaller frames (icons, dose grids) are not screened
    min_height: int = 5  # glyph height range, px (7-40 px text; 'e' of 7 px text is 5)
    max_height: int = 60
    min_area: int = 6
    min_contrast: int = 18  # grey levels of 255 a stroke stands out by, at least
    texture_radius: int = 15
    texture_factor: float = 3.0  # and by this many times the clutter around it: the mean
    clutter_cap: int = 40  # top-hat, capped here so that dense strong text is not clutter
    min_fill: float = 0.1  # glyph ink / glyph box: below, a thin curve
    max_fill: float = 0.9  # above, a solid block
    min_glyphs: int = 3
    word_max_height: int = 12  # a component up to this high and at least `word_ratio` x as
    word_ratio: float = 5.0  # long, with `word_stems` stems per 3 x its height along it, is a
    word_stems: float = 2.0  # word whose letters touch: cut into letters (`_letters`)
    gap: float = 1.1  # letters/words closer than gap x band height join one line
    bands: tuple[tuple[int, int], ...] = ((5, 12), (9, 20), (15, 34), (26, 60))
    off_line: float = 0.3  # glyph centres may stray from the fitted line by this x height
    min_inliers: float = 0.6  # share of a group's glyphs that must sit on its line
    consensus_low: float = 0.8  # a group that fails that is retried with its glyphs of this
    consensus_high: float = 1.25  # to this x the height of two of them, on their line (0.7-1.4
    # brings back a false MR abdomen line)
    max_slope: float = 0.7  # about 35 degrees; steeper lines are read in the other direction
    body_window: int = 15  # anatomy: the smoothed frame above its Otsu threshold
    body_extra: int = 1  # inside it, a line needs this many more glyphs
    body_hull: float = 0.02  # and the convex hull of its parts holding this share of the frame
    # (0: not; the dark organs, fat and bowel between them)
    vertical_extra: int = 2  # a vertical line this many (a column of anatomy marks: MR)
    body_strict: float = 0.67  # and sits this much straighter
    absorb_rounds: int = 3  # rounds of taking in same-row glyphs at either end of a line
    absorb_across: float = 0.15  # that widen it across by at most this x its height per side
    faint: int = 18  # grey levels: ink this strong next to a line's strokes is blanked with it
    faint_share: float = 0.35  # or this share of the line's own stroke contrast, if lower
    faint_floor: int = 8  # but never below this (noise, JPEG ringing)
    faint_reach: float = 8.0  # along the line, by at most this x its thickness per end (4.0
    body_reach: float = 8.0  # before faint marks) and over the anatomy (1.0: -2 % recall)
    band_strokes: float = 0.2  # a column of a line's band with this x its thickness of
    # stroke pixels (and none beside the band) continues it
    mark_height: float = 0.5  # faint marks (the line's polarity, below the glyph threshold)
    # continue a line when they lie inside its band and are at least this x its glyph height,
    word_gap: float = 2.0  # up to this x its thickness away (a word gap; strokes: `gap`)
    line_scale: float = 0.5  # and from top-hats (both polarities) this x the glyph height wide
    owned: float = 0.5  # a line this share of whose glyphs lie on a stronger line is dropped,
    own_band: float = 0.75  # on: within this x its glyph height of its centre line, and
    own_size: float = 0.6  # of another direction or of glyphs less than this x its height
    pad: int = 1
    extend: float = 0.25  # added around every line box, along it
    extend_faint: float = 0.5  # along a low-contrast line (its level below `faint`), ink or not
    extend_across: float = 0.0  # and across it (0.125 blanked ~1 % of the frame more over
    # 40 px lines, and removed no box more: the glyphs' rows hold the text's ink)
    part_pad: int = 1  # ink components inside a line box are blanked grown by this
    rows_share: float = 0.1  # and cut across to its glyphs' rows (this quantile of their tops
    rows_margin: float = 0.35  # to that of their bottoms) +- this x its glyph height (0.25:
    # -3 boxes of 709; 0.5: +0.07 point unchanged; 0.35: +0.17 point, same recall)


DEFAULT_DETECT = DetectParams()
ROTATED = 0.08  # |slope| of a line's glyph centres from which it is blanked as a slanted band
BAND_END = 0.75  # and from this x its glyph height before its first glyph to after its last
CONSENSUS_PAIRS = 8  # `_consensus` fits lines through glyphs at most this many apart
BAND = 0.7  # a slanted line's band: its centre line +- this x its glyph height
BAND_REACH = 2 * BAND_END  # how far the blanked band reaches past them (main's band reached
# BAND_END twice: it was drawn again from the union of its own boxes; 1.0: -6 boxes of 709)
BAND_TRIM = 2  # px of margin kept around the ink when a band box is cut to it (`_trim_band`)
BAND_STEP = 0.1  # blanked as boxes this x its glyph height wide along it (0.5: a coarse
# staircase that blanked 0.15 x its height more on either side of a 20 deg line; 0.2 -> 0.1:
# +0.04 point unchanged on the corpus, same recall)


@dataclass(frozen=True)
class TextLine:
    box: Box
    glyphs: int  # components grouped into it (about its number of letters)
    vertical: bool = False
    parts: tuple[Box, ...] = ()  # the ink inside `box` (components, grown)
    size: int = 0  # median glyph height (across the line), 0: the box's thickness
    slope: float = 0.0  # its glyph centres: across = slope * along + offset (frame pixels;
    offset: float = 0.0  # along = column, across = row; for a vertical line the other way)
    members: tuple[tuple[int, int, int, int], ...] = ()  # its glyphs (along, across, length,
    # height: x, y, w, h of the frame, transposed for a vertical line), as `_lines` found them

    @property
    def thickness(self) -> int:
        """The text's height: the glyphs' (a rotated line's box is much thicker)."""
        across = self.box.width if self.vertical else self.box.height
        return min(2 * self.size, across) if self.size else across

    @property
    def rotated(self) -> bool:
        return abs(self.slope) >= ROTATED

    def band(self, reach: float = BAND_END) -> list[Box]:
        """A rotated line as boxes along it (`BAND_STEP` glyph heights wide each: a fine
        staircase) that cover its band: the fitted centre line +- `BAND` glyph heights, from
        `reach` glyph heights before its first glyph to as far after its last. Everything
        in the band is blanked (letters the grouping missed included); the anatomy beside a
        slanted line is kept, its bounding box is not blanked. `find_text` first lengthens the
        line over faint letters at its ends (`_reach_slanted`)."""
        b, size = self.box, max(self.size, 4)
        first, last = (b.top, b.bottom) if self.vertical else (b.left, b.right)
        half, step = BAND * size + 2, max(2, int(BAND_STEP * size))
        boxes = []
        end = int(reach * size)
        for start in range(first - end, last + end, step):
            ends = (self.slope * start + self.offset, self.slope * (start + step) + self.offset)
            low, high = int(min(ends) - half), int(max(ends) + half) + 1
            if self.vertical:
                boxes.append(Box(low, start, high - low, step))
            else:
                boxes.append(Box(start, low, step, high - low))
        return boxes

    @property
    def ink_boxes(self) -> list[Box]:
        """What to blank: the line's ink (`parts`) joined into words (pieces at most half the
        line's thickness apart along it), else the line box; a slanted line's band (`parts`:
        as `find_text` cut it at its ends)."""
        if self.rotated:
            return list(self.parts) if self.parts else self.band()
        if not self.parts:
            return [self.box]
        thickness = self.thickness
        along = sorted(self.parts, key=lambda p: p.top if self.vertical else p.left)
        words = [along[0]]
        for part in along[1:]:
            last = words[-1]
            gap = part.top - last.bottom if self.vertical else part.left - last.right
            if 2 * gap <= thickness:
                words[-1] = last.union(part)
            else:
                words.append(part)
        return words


def frame_gray8(frame: Frames, photometric: str) -> Gray8:
    return render_gray8(frame, photometric)


def find_text(gray: Gray8, params: DetectParams = DEFAULT_DETECT) -> list[TextLine]:
    """Text-like lines of an 8-bit frame (display polarity), boxes padded by `params.pad`."""
    if gray.ndim != 2 or min(gray.shape) < params.min_frame:
        return []
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (params.kernel, params.kernel))
    window = (2 * params.texture_radius + 1,) * 2
    found: list[npt.NDArray[np.int32]] = []
    hats: list[Gray8] = []
    labelled: list[npt.NDArray[np.int32]] = []
    for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        hat = cv2.morphologyEx(gray, op, kernel)
        hats.append(np.asarray(hat, np.uint8))
        if int(hat.max()) < params.min_contrast:
            labelled.append(np.zeros(gray.shape, np.int32))  # no strokes; aligned with `hats`
            continue
        # texture (MR fat, trabecular bone, noise) raises the bar locally, so glyphs drawn
        # over it do not fuse with it into one large component
        local = cv2.blur(cv2.min(hat, params.clutter_cap), window)
        bar = cv2.max(cv2.convertScaleAbs(local, alpha=params.texture_factor), params.min_contrast)
        mask = np.asarray(cv2.compare(hat, bar, cv2.CMP_GE), np.uint8)
        boxes, labels = _glyphs(mask, params)
        found.append(boxes)
        labelled.append(labels)
    glyphs = np.concatenate(found) if found else np.zeros((0, 4), np.int32)
    rows, columns = gray.shape
    body = _body(gray, params)
    lines = _lines(glyphs, body, params, vertical=False)
    lines += _lines(glyphs[:, [1, 0, 3, 2]], np.ascontiguousarray(body.T), params, vertical=True)
    out: list[TextLine] = []
    ink = _Ink(gray, hats, labelled, params.faint, params.kernel)
    merged = _merge(_drop_owned(lines, params))
    # the glyphs of the lines across a line (of the other direction) are theirs: not taken in
    # at its ends, and its ends are not followed into them
    across: dict[bool, tuple[set[tuple[int, ...]], npt.NDArray[np.int32]]] = {}
    for vertical in (False, True):
        others = set().union(*(_claimed(ln) for ln in merged if ln.vertical != vertical))
        keep = [tuple(g) not in others for g in glyphs.tolist()] if others else []
        across[vertical] = (others, glyphs[keep] if others else glyphs)
    for line in merged:
        others, free = across[line.vertical]
        members = line.members
        if line.rotated:
            ink.level = _line_level(ink, line.box, params)
            line = _reach_slanted(line, ink, params)
            clipped_band = (b.clip(columns, rows) for b in line.band(BAND_REACH))
            band = [c for c in clipped_band if c is not None]
            band = _trim_band(line, band, ink, params)  # blanked as these (`ink_boxes`)
            if band:
                box = band[0]
                for piece in band[1:]:
                    box = box.union(piece)
                out.append(replace(line, box=box, parts=tuple(band)))
            continue
        if line.vertical:  # absorbed in the transposed frame, where it runs along a row
            t = _absorb(
                TextLine(_transpose(line.box), line.glyphs, size=line.size),
                free[:, [1, 0, 3, 2]],
                params,
            )
            line = TextLine(_transpose(t.box), line.glyphs, True, size=line.size)
        else:
            line = _absorb(line, free, params)
        ink.level = _line_level(ink, line.box, params)
        walls = [Box(*g) for g in others] if others else []
        followed = _follow(line, ink, body, params, walls)
        faint = ink.level < params.faint  # low-contrast text: its end letters fade out
        clipped = _extend(followed, params, faint).clip(columns, rows)
        if clipped is not None:
            parts = _parts(ink, clipped, followed.box, line.box, params.part_pad)
            if faint and parts:  # its ends blanked out to the extended box, ink or not
                parts += _ends(clipped, followed.box, line.vertical)
            parts = _across(parts, members, line.vertical, max(line.size, 4), params)
            out.append(
                TextLine(clipped, line.glyphs, line.vertical, parts, line.size, members=members)
            )
    return out


def _across(
    parts: tuple[Box, ...],
    members: tuple[tuple[int, int, int, int], ...],
    vertical: bool,
    size: int,
    params: DetectParams,
) -> tuple[Box, ...]:
    """A line's ink cut across to the rows of its glyphs (from the `rows_share` quantile of
    their tops to that of their bottoms, +- `rows_margin` x its glyph height): faint ink joined
    to a letter reaches into the anatomy above and below it, and so may glyphs of anatomy the
    line took in (a 24 px line blanked 41 rows high over MR)."""
    if not members:
        return parts
    tops = [across for _, across, _, _ in members]
    bottoms = [across + height for _, across, _, height in members]
    margin = params.rows_margin * size
    low = int(np.quantile(tops, params.rows_share) - margin)
    high = int(np.ceil(np.quantile(bottoms, 1 - params.rows_share) + margin))
    out = []
    for p in parts:
        start, stop = (p.left, p.right) if vertical else (p.top, p.bottom)
        start, stop = max(start, low), min(stop, high)
        if stop <= start:
            continue
        if vertical:
            out.append(Box(start, p.top, stop - start, p.height))
        else:
            out.append(Box(p.left, start, p.width, stop - start))
    return tuple(out)


def glyph_centres(line: TextLine) -> list[tuple[float, float]]:
    """The centres (column, row) of the glyphs `line` was found from."""
    out = []
    for x, y, w, h in line.members:
        along, across = x + w / 2.0, y + h / 2.0
        out.append((across, along) if line.vertical else (along, across))
    return out


def _ends(box: Box, inner: Box, vertical: bool) -> tuple[Box, ...]:
    """The stretches of `box` beyond `inner` at either end along the line."""
    if vertical:
        pieces = (
            Box(box.left, box.top, box.width, inner.top - box.top),
            Box(box.left, inner.bottom, box.width, box.bottom - inner.bottom),
        )
    else:
        pieces = (
            Box(box.left, box.top, inner.left - box.left, box.height),
            Box(inner.right, box.top, box.right - inner.right, box.height),
        )
    return tuple(p for p in pieces if p.area > 0)


def _claimed(line: TextLine) -> set[tuple[int, ...]]:
    """The glyphs of `line` as (x, y, w, h) of the frame."""
    if line.vertical:
        return {(y, x, h, w) for x, y, w, h in line.members}
    return set(line.members)


def _parts(
    ink: _Ink,
    box: Box,
    followed: Box,
    core: Box,
    pad: int,
) -> tuple[Box, ...]:
    """Boxes of the ink inside `box` (grown by `pad`, kept inside `box`): faint ink next to
    the strokes (`labelled`: the components of the glyph threshold; anti-aliased edges
    included) or in the stretches the line was `_follow`ed over.
    Blanking these instead of the whole line box leaves the anatomy between and around the
    letters unchanged."""
    window = (slice(box.top, box.bottom), slice(box.left, box.right))
    strokes = np.where(ink.strokes(window), 255, 0).astype(np.uint8)
    seed = np.asarray(cv2.dilate(strokes, np.ones((5, 5), np.uint8)), dtype=np.uint8)
    followed_zone = np.zeros(seed.shape, np.uint8)
    _fill(followed_zone, followed, box, 255)
    _fill(followed_zone, core, box, 0)
    seed |= followed_zone
    crop = np.where(ink.faint(window), seed, 0).astype(np.uint8)
    n, _, stats, _ = _components(crop)
    parts = []
    for x, y, w, h in stats[1:n, :4].tolist():
        left, top = max(x - pad, 0), max(y - pad, 0)
        right, bottom = min(x + w + pad, box.width), min(y + h + pad, box.height)
        parts.append(Box(box.left + left, box.top + top, right - left, bottom - top))
    return tuple(parts)


class _Ink:
    """The frame's ink, computed only where asked (windows around lines): strokes (the
    components of the glyph threshold) and faint ink (top-hat >= `faint`, either polarity)."""

    def __init__(
        self,
        gray: Gray8,
        hats: list[Gray8],
        labelled: list[npt.NDArray[np.int32]],
        faint: int,
        kernel: int,
    ):
        self.gray, self.hats, self.labelled, self.level = gray, hats, labelled, faint
        self.kernel = kernel  # the frame's top-hat square
        self.polarity = 0  # the hat the line's strokes are in (0 light text, 1 dark)

    def line(
        self, window: tuple[slice, slice], width: int = 0, polarity: int | None = None
    ) -> npt.NDArray[np.bool_]:
        """The line's own polarity at its level (in a top-hat `width` wide: `hat`)."""
        return np.asarray(self.hat(window, width, polarity) >= self.level)

    def hat(
        self, window: tuple[slice, slice], width: int = 0, polarity: int | None = None
    ) -> Gray8:
        """The top-hat of the line's polarity (or `polarity`) over `window`, with a square
        `width` wide (odd, at least 3) when that is narrower than the frame's: anatomy
        narrower than the frame's square but wider than the text's letters (an edge whose
        brightness changes under small text) drops out of it, so the letters stand apart."""
        polarity = self.polarity if polarity is None else polarity
        hat = self.hats[polarity]
        width = _hat_width(width) if width else self.kernel
        if width >= self.kernel:
            return np.asarray(hat[window], np.uint8)
        rows, columns = window
        top, left = max(rows.start - width, 0), max(columns.start - width, 0)
        bottom = min(rows.stop + width, hat.shape[0])
        right = min(columns.stop + width, hat.shape[1])
        op = cv2.MORPH_TOPHAT if polarity == 0 else cv2.MORPH_BLACKHAT
        square = cv2.getStructuringElement(cv2.MORPH_RECT, (width, width))
        local = cv2.morphologyEx(self.gray[top:bottom, left:right], op, square)
        return np.asarray(
            local[rows.start - top : rows.stop - top, columns.start - left : columns.stop - left],
            np.uint8,
        )

    def strokes(self, window: tuple[slice, slice]) -> npt.NDArray[np.bool_]:
        out = np.zeros(self.hats[0][window].shape, bool)
        for labels in self.labelled:
            out |= labels[window] > 0
        return out

    def faint(self, window: tuple[slice, slice]) -> npt.NDArray[np.bool_]:
        out = np.zeros(self.hats[0][window].shape, bool)
        for hat in self.hats:
            out |= hat[window] >= self.level
        return out


def _line_level(ink: _Ink, box: Box, params: DetectParams) -> int:
    """The grey level a line's faint ink is taken from: `faint`, or lower for faint text
    (`faint_share` of the median top-hat over the line's strokes, at least `faint_floor`):
    the anti-aliased edges and thin strokes of 15 % contrast text fall below `faint`."""
    window = (slice(box.top, box.bottom), slice(box.left, box.right))
    strongest, most = 0.0, 0
    for index, (hat, labels) in enumerate(zip(ink.hats, ink.labelled, strict=True)):
        strokes = labels[window] > 0
        count = int(np.count_nonzero(strokes))
        if count > most:
            most, ink.polarity = count, index
            strongest = float(np.median(hat[window][strokes]))
    level = int(params.faint_share * strongest)
    return min(params.faint, max(params.faint_floor, level))


def _components(
    mask: npt.NDArray[np.uint8],
) -> tuple[int, npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """`cv2.connectedComponentsWithStats` (8-connected) with the block-based algorithm (BBDT):
    the same components, about three times faster than OpenCV's default for this call."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask, 8, cv2.CV_32S, cv2.CCL_BBDT
    )
    return (
        int(n),
        np.asarray(labels, np.int32),
        np.asarray(stats, np.int32),
        np.asarray(centroids, np.float64),
    )


def _transpose(box: Box) -> Box:
    return Box(box.top, box.left, box.height, box.width)


def _fill(canvas: npt.NDArray[np.uint8], area: Box, origin: Box, value: int) -> None:
    """Set `area` (frame pixels) of `canvas` (which covers `origin`) to `value`."""
    top, left = max(area.top - origin.top, 0), max(area.left - origin.left, 0)
    canvas[top : area.bottom - origin.top, left : area.right - origin.left] = value


def _body(gray: Gray8, params: DetectParams) -> npt.NDArray[np.uint8]:
    """Where the anatomy is (1) and where the background is (0): the frame smoothed over a
    `body_window` square, above Otsu's threshold of it."""
    smooth = cv2.blur(gray, (params.body_window, params.body_window))
    _, body = cv2.threshold(smooth, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if params.body_hull:  # dark organs, fat and bowel inside the body are anatomy too
        contours, _ = cv2.findContours(body, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        large = [c for c in contours if cv2.contourArea(c) >= params.body_hull * body.size]
        if large:
            hull = cv2.convexHull(np.concatenate(large))
            cv2.fillConvexPoly(body, hull, 1)
    return np.asarray(body, dtype=np.uint8)


def _glyphs(
    mask: npt.NDArray[np.uint8], params: DetectParams
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Boxes (x, y, w, h) of the components of `mask` shaped like glyphs (or touching ones),
    and the component labels of `mask`."""
    _, labels, stats, _ = _components(mask)
    stats = stats[1:]
    width = stats[:, cv2.CC_STAT_WIDTH]
    height = stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA]
    size = np.maximum(width, height)
    small = np.minimum(width, height)
    fill = area / np.maximum(width * height, 1)
    ok = (
        (size >= params.min_height)
        & (small <= params.max_height)
        & (size <= params.max_height * 12)
        & (area >= params.min_area)
        & (fill >= params.min_fill)
        & (fill <= params.max_fill)
    )
    boxes = np.ascontiguousarray(stats[ok, :4], dtype=np.int32)
    labels = np.asarray(labels, np.int32)
    wide = (
        ok
        & (small > params.min_height)  # letters, not a thin curve
        & (small <= params.word_max_height)
        & (size >= params.word_ratio * small)
    )
    if not wide.any():
        return boxes, labels
    words = [_letters(labels, int(k) + 1, stats[k, :4], params) for k in np.flatnonzero(wide)]
    pieces = [w for w in words if w is not None]
    if not pieces:
        return boxes, labels
    whole = stats[ok & ~wide, :4]
    kept = [
        stats[k, :4][None, :] for k, w in zip(np.flatnonzero(wide), words, strict=True) if w is None
    ]
    joined = np.concatenate([whole, *kept, *pieces]).astype(np.int32)
    return np.ascontiguousarray(joined), labels


def _letters(
    labels: npt.NDArray[np.int32], label: int, box: npt.NDArray[np.int32], params: DetectParams
) -> npt.NDArray[np.int32] | None:
    """A component much longer than high whose letters touch (small anti-aliased or JPEG
    text: a word as one component) cut into letter boxes along its length, or None when it is
    not such a word: text has narrow stems across its height (`word_stems` of them per
    `word_ratio` lengths), a band of anatomy is one run along it."""
    x, y, w, h = (int(v) for v in box)
    piece = labels[y : y + h, x : x + w] == label
    along, across = (w, h) if w >= h else (h, w)
    profile = piece.sum(axis=0 if w >= h else 1)
    stems = np.flatnonzero(np.diff(np.r_[0, (profile >= 0.7 * across).astype(np.int8)]) == 1)
    tall = int(np.count_nonzero(profile >= 0.7 * across))
    if stems.size < max(params.min_glyphs, params.word_stems * along / (3 * across)):
        return None
    if tall > 0.5 * along:  # stems wider than letters: a solid band
        return None
    n = max(params.min_glyphs, round(along / (0.75 * across)))
    cuts = np.linspace(0, along, n + 1).astype(np.int32)
    out = np.zeros((n, 4), np.int32)
    if w >= h:
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = x + cuts[:-1], y, np.diff(cuts), h
    else:
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = x, y + cuts[:-1], w, np.diff(cuts)
    return out


def _lines(
    glyphs: npt.NDArray[np.int32],
    body: npt.NDArray[np.uint8],
    params: DetectParams,
    *,
    vertical: bool,
) -> list[TextLine]:
    """Glyph boxes joined along rows (along columns of the transposed frame: vertical text).

    Per band of glyph heights (bands overlap, so a line of mixed capitals and small letters
    is whole in one of them), each glyph is drawn at half resolution as its box stretched
    right by `gap` times its height: glyphs of one line (overlapping rows, letter or word
    gaps apart) touch, and one labelling gives the lines."""
    found: list[TextLine] = []
    shape = body.shape
    half = (shape[0] // 2 + 1, shape[1] // 2 + 1)
    need = params.min_glyphs + (params.vertical_extra if vertical else 0)
    for low, high in params.bands:
        g = glyphs[(glyphs[:, 3] >= low) & (glyphs[:, 3] <= high)]
        if g.shape[0] < need - 1:
            continue
        canvas = np.zeros(half, np.uint8)
        for x, y, w, h in (g // 2).tolist():
            trim = h // 8
            reach = int(params.gap * h)
            cv2.rectangle(canvas, (x, y + trim), (x + w + reach, y + h - trim), 255, -1)
        n, labels = cv2.connectedComponentsWithAlgorithm(canvas, 4, cv2.CV_32S, cv2.CCL_SAUF)
        if n <= 1:
            continue
        line = labels[(g[:, 1] + g[:, 3] // 2) // 2, g[:, 0] // 2]
        # the groups of `need` glyphs or more, in label order (most labels hold one glyph)
        groups = [g[line == label] for label in np.flatnonzero(np.bincount(line) >= need)]
        while groups:
            members = groups.pop()
            x, y = members[:, 0], members[:, 1]
            inside = float(body[y + members[:, 3] // 2, x + members[:, 2] // 2].mean()) > 0.5
            fit = _aligned(members, params, strict=inside)
            if fit is None:
                # two lines close above each other (joined through a mark between them)
                rows = [m for m in _rows(members) if len(m) >= need]
                if not rows:  # one row that marks joined: retried with its best-aligned glyphs
                    best = _consensus(members, params, need + (params.body_extra if inside else 0))
                    rows = [best] if best is not None and len(best) < len(members) else []
                groups += rows
                continue
            aligned, slope, offset = fit
            distinct = len({(x // 3, y // 3) for x, y in aligned[:, :2].tolist()})
            if distinct < need + (params.body_extra if inside else 0):
                continue  # one glyph seen in both polarities (or twice) counts once
            left, top = int(aligned[:, 0].min()), int(aligned[:, 1].min())
            right = int((aligned[:, 0] + aligned[:, 2]).max())
            bottom = int((aligned[:, 1] + aligned[:, 3]).max())
            w, h = right - left, bottom - top
            box = Box(top, left, h, w) if vertical else Box(left, top, w, h)
            size = int(np.median(aligned[:, 3]))
            members_ = tuple(tuple(m) for m in aligned[:, :4].tolist())
            found.append(
                TextLine(
                    box,
                    distinct,
                    vertical,
                    size=size,
                    slope=slope,
                    offset=offset,
                    members=members_,
                )
            )
    return found


def _consensus(
    members: npt.NDArray[np.int32], params: DetectParams, need: int
) -> npt.NDArray[np.int32] | None:
    """The largest subset of a group's glyphs of similar height whose centres lie on one
    straight line through two of them (a consensus fit): the text of a group that anatomy
    marks joined (they spoil its least-squares fit), or None (fewer than `need` of them)."""
    n = members.shape[0]
    if n <= need:  # a subset of `need` or more glyphs, smaller than the group
        return None
    members = members[np.argsort(members[:, 0], kind="stable")]  # along the line
    cx = members[:, 0] + members[:, 2] / 2.0
    cy = members[:, 1] + members[:, 3] / 2.0
    h = members[:, 3].astype(np.float64)
    i, j = _pairs(n)  # the line through each pair of glyphs
    size = (h[i] + h[j]) / 2.0
    dx, dy = cx[j] - cx[i], cy[j] - cy[i]
    valid = (np.abs(dx) >= size) & (np.abs(dy) <= params.max_slope * np.abs(dx))
    slope = dy / np.where(valid, dx, 1.0)
    across = np.abs(cy - cy[i][:, None] - slope[:, None] * (cx - cx[i][:, None])) / size[:, None]
    ratio = h / size[:, None]
    inliers = (
        valid[:, None]
        & (across <= params.off_line)
        & (ratio >= params.consensus_low)
        & (ratio <= params.consensus_high)
    )
    count = inliers.sum(axis=1)
    # the most glyphs; of as many, the ones closest to their line
    best = np.lexsort(((across * inliers).sum(axis=1), -count))[0]
    return members[inliers[best]] if count[best] >= need else None


@functools.cache
def _pairs(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Every pair of `n` glyphs (first, second), up to `CONSENSUS_PAIRS` x n of them."""
    i, j = np.triu_indices(n, 1)
    near = j - i <= CONSENSUS_PAIRS  # of a large group (noisy anatomy): glyphs near in order
    return i[near], j[near]


def _rows(members: npt.NDArray[np.int32]) -> list[npt.NDArray[np.int32]]:
    """A group's glyphs cut into rows where their centres are more than half a glyph height
    apart across the line (one piece: the group holds a single row)."""
    centre = members[:, 1] + members[:, 3] / 2.0
    order = np.argsort(centre, kind="stable")
    height = float(np.median(members[:, 3]))
    cuts = np.flatnonzero(np.diff(centre[order]) > 0.5 * height) + 1
    return list(np.split(members[order], cuts)) if cuts.size else []


def _aligned(
    members: npt.NDArray[np.int32], params: DetectParams, *, strict: bool = False
) -> tuple[npt.NDArray[np.int32], float, float] | None:
    """The glyphs of a group that sit on one straight line (text, rotated or not), or None.

    Glyph centres are fitted by a line (least squares), glyphs off it by more than
    `params.off_line` of the median glyph height dropped and the fit repeated; text keeps
    most of its glyphs on the line (descenders and small letters move a centre by about a
    quarter of the height), a cluster of anatomy marks does not."""
    kept = members
    slope = offset = 0.0
    off_line = params.off_line * (params.body_strict if strict else 1.0)
    for _ in range(3):
        cx = kept[:, 0] + kept[:, 2] / 2.0
        cy = kept[:, 1] + kept[:, 3] / 2.0
        height = float(np.median(kept[:, 3]))
        if np.ptp(cx) < height:
            return None
        mx, my = float(cx.mean()), float(cy.mean())
        slope = float(((cx - mx) * (cy - my)).sum() / ((cx - mx) ** 2).sum())
        offset = my - slope * mx
        if abs(slope) > params.max_slope:
            return None
        off = np.abs(cy - (slope * cx + offset)) <= off_line * height
        similar = (kept[:, 3] >= 0.5 * height) & (kept[:, 3] <= 2.0 * height)
        inliers = off & similar
        if inliers.all():
            break
        if inliers.sum() < params.min_glyphs or inliers.mean() < params.min_inliers:
            return None
        kept = kept[inliers]
    return kept, slope, offset


def _absorb(line: TextLine, glyphs: npt.NDArray[np.int32], params: DetectParams) -> TextLine:
    """The line grown by the glyphs of its row lying a letter gap from either end: pieces of
    the same text the grouping left out (a number before a date, the last letters of a name
    after a wider gap)."""
    box = line.box
    if glyphs.shape[0] == 0:
        return line
    x, y, w, h = glyphs[:, 0], glyphs[:, 1], glyphs[:, 2], glyphs[:, 3]
    centre = y + h // 2
    similar = (h >= box.height // 2) & (h <= box.height + box.height // 4)
    tol = max(2, int(params.absorb_across * box.height))
    for _ in range(params.absorb_rounds):
        reach = int(params.gap * box.height)
        near = (
            similar
            & (centre >= box.top)
            & (centre < box.bottom)
            & (x + w >= box.left - reach)
            & (x <= box.right + reach)
        )
        if not near.any():
            break
        left = min(box.left, int(x[near].min()))
        right = max(box.right, int((x[near] + w[near]).max()))
        # across, only glyphs that stay within the line's own rows (a letter fused with
        # anatomy lengthens the line, it does not widen it over the anatomy)
        level = near & (y >= line.box.top - tol) & (y + h <= line.box.bottom + tol)
        top = min(box.top, int(y[level].min())) if level.any() else box.top
        bottom = max(box.bottom, int((y[level] + h[level]).max())) if level.any() else box.bottom
        grown = Box(left, top, right - left, bottom - top)
        if grown == box:
            break
        box = grown
    return TextLine(box, line.glyphs, line.vertical, size=line.size)


def _follow(
    line: TextLine,
    ink: _Ink,
    body: npt.NDArray[np.uint8],
    params: DetectParams,
    others: Sequence[Box] = (),
) -> TextLine:
    """The line grown along its direction over strokes (any shape) that cross its band and
    stay inside it, while the gaps stay below a letter gap: a last letter fused with an
    anatomy mark, a comma, the end of a line the grouping cut. Faint marks count too: the
    components of the line's own polarity at its faint level (`_line_level`) that stay within
    the band (+- a third of its thickness) and are at least `mark_height` x the glyph height
    (low-contrast letters at the ends of a line that the glyph threshold missed), also after
    a gap of up to `word_gap` x its thickness (the next word). It stops before the glyphs of
    `others` (the other lines' glyphs, frame boxes) that reach into its band."""
    b = line.box
    thickness = line.thickness
    centre = body[b.top + b.height // 2, b.left + b.width // 2]
    factor = params.body_reach if centre else params.faint_reach
    limit = int(factor * min(thickness, params.max_height))
    margin = max(2, thickness // 3)
    if line.vertical:
        start, stop, low, high = b.top, b.bottom, b.left, b.right
    else:
        start, stop, low, high = b.left, b.right, b.top, b.bottom
    first, outer = max(start - limit, 0), max(low - margin, 0)
    across, along = slice(outer, high + margin), slice(first, stop + limit)
    window = (along, across) if line.vertical else (across, along)
    strip = ink.strokes(window)
    strip = strip.T if line.vertical else strip  # rows across the line, columns along it
    core = strip[low - outer : high - outer]
    inside = np.count_nonzero(core, axis=0)
    outside = np.count_nonzero(strip, axis=0) - inside
    # a stroke across the band that stays inside it: not a noise speck, not anatomy
    band = (inside >= max(2, int(params.band_strokes * thickness))) & (outside == 0)
    tall = params.mark_height * (line.size or thickness)
    marks = np.zeros(strip.shape, bool)
    for width, polarity in _hats(params.line_scale * (line.size or thickness), ink):
        faint = ink.line(window, width, polarity)
        marks |= _contained(faint.T if line.vertical else faint, tall)
    letters = np.count_nonzero(marks[low - outer : high - outer], axis=0) >= max(2, thickness // 5)
    band |= letters
    start, stop = start - first, stop - first
    ahead, behind = band.shape[0], 0  # another line's glyph in the band: this one ends there
    for g in others:
        g_low, g_high, g_start, g_stop = (
            (g.left, g.right, g.top, g.bottom)
            if line.vertical
            else (g.top, g.bottom, g.left, g.right)
        )
        if g_high > low and g_low < high:
            if g_start - first >= stop:
                ahead = min(ahead, g_start - first)
            elif g_stop - first <= start:
                behind = max(behind, g_stop - first)
    reach = max(int(params.gap * thickness), 2)
    far = int(params.word_gap * thickness)
    after = _run(band[stop:ahead], reach, letters[stop:ahead], far)
    before = _run(band[behind:start][::-1], reach, letters[behind:start][::-1], far)
    start, stop = first + start - before, first + stop + after
    if line.vertical:
        box = Box(b.left, start, b.width, stop - start)
    else:
        box = Box(start, b.top, stop - start, b.height)
    return TextLine(box, line.glyphs, line.vertical, size=line.size)


def _reach_slanted(line: TextLine, ink: _Ink, params: DetectParams) -> TextLine:
    """A slanted line lengthened along its fitted centre line over the faint marks of its
    polarity that lie within its band (`BAND` glyph heights of the centre line, whole) and are
    at least `mark_height` glyph heights across, with gaps below `word_gap`: the letters at
    its ends the glyph threshold missed (its band reaches `BAND_END` glyphs past them)."""
    b, size = line.box, max(line.size, 4)
    if line.glyphs <= params.min_glyphs:
        return line
    first, last = (b.top, b.bottom) if line.vertical else (b.left, b.right)
    rows, columns = ink.gray.shape
    span, depth = (rows, columns) if line.vertical else (columns, rows)  # along, across
    end = int(BAND_END * size)
    limit = int(params.faint_reach * size)
    half = BAND * size + 2
    lo, hi = max(first - end - limit, 0), min(last + end + limit, span)
    if hi - lo < 2:
        return line
    along = np.arange(lo, hi)
    centre = line.slope * along + line.offset
    top = int(max(centre.min() - half - size, 0))
    bottom = int(min(centre.max() + half + size + 1, depth))
    if bottom - top < 2:
        return line
    across = np.arange(top, bottom, dtype=np.float64)[:, None] - centre[None, :]
    profile = np.zeros(hi - lo, bool)
    window = (slice(top, bottom), slice(lo, hi))  # rows across the line, columns along
    for width, polarity in _hats(params.line_scale * size, ink):
        if line.vertical:  # the window in the frame, then rows across the line
            hat = ink.hat(window[::-1], width, polarity).T
        else:
            hat = ink.hat(window, width, polarity)
        inside = _within(hat >= ink.level, across, half, params.mark_height * size)
        profile |= np.count_nonzero(inside, axis=0) >= max(2, size // 5)
    reach = max(int(params.word_gap * size), 2)
    after = _run(profile[max(last - lo, 0) :], reach)
    before = _run(profile[: max(first - lo, 0)][::-1], reach)
    behind, ahead = max(before - end, 0), max(after - end, 0)
    if not behind and not ahead:
        return line
    if line.vertical:
        box = Box(b.left, b.top - behind, b.width, b.height + behind + ahead)
    else:
        box = Box(b.left - behind, b.top, b.width + behind + ahead, b.height)
    return replace(line, box=box)


def _trim_band(line: TextLine, band: list[Box], ink: _Ink, params: DetectParams) -> list[Box]:
    """A slanted line's band without its boxes before the first and after the last that hold
    ink (the marks of `_hats` at the line's level, or strokes, within `BAND_TRIM` px): the
    band reaches `BAND_REACH` glyph heights past its end glyphs for letters the grouping
    missed, and where none is there it would blank anatomy. Boxes between inked ones stay
    (a letter fading out over brighter anatomy leaves a gap in the marks)."""
    if not band:
        return band
    whole = band[0]
    for piece in band[1:]:
        whole = whole.union(piece)
    window = (slice(whole.top, whole.bottom), slice(whole.left, whole.right))
    marks = np.asarray(ink.strokes(window), np.uint8)
    for width, polarity in _hats(params.line_scale * max(line.size, 4), ink):
        marks |= np.asarray(ink.hat(window, width, polarity) >= ink.level, np.uint8)
    near = cv2.dilate(marks, np.ones((2 * BAND_TRIM + 1,) * 2, np.uint8))
    inked = []
    for i, b in enumerate(band):
        rows = slice(b.top - whole.top, b.bottom - whole.top)
        if near[rows, b.left - whole.left : b.right - whole.left].any():
            inked.append(i)
    return band[inked[0] : inked[-1] + 1] if inked else band


def _hats(width: float, ink: _Ink) -> list[tuple[int, int]]:
    """The top-hats a line's faint marks are taken from, as (width, polarity): the frame's
    (width 0) of the line's polarity and, when narrower than the frame's square, one `width`
    wide (`_Ink.hat`) of both polarities: where the anatomy under the text turns brighter
    than the text, its letters turn dark, and in the narrow top-hat they stand apart."""
    hats = [(0, ink.polarity)]
    if _hat_width(int(width)) < ink.kernel:
        hats += [(int(width), ink.polarity), (int(width), 1 - ink.polarity)]
    return hats


def _hat_width(width: int) -> int:
    """A narrow top-hat's square: `width` made odd, at least 3."""
    return max(3, width | 1)


def _within(
    ink: npt.NDArray[np.bool_], across: npt.NDArray[np.float64], half: float, tall: float
) -> npt.NDArray[np.bool_]:
    """The components of `ink` (rows across a slanted line, columns along it) whose pixels
    all lie within `half` of its centre line (`across`: each pixel's offset from it) and that
    span at least `tall` across it."""
    n, found, stats, _ = _components(np.ascontiguousarray(ink, dtype=np.uint8))
    labels = np.asarray(found, dtype=np.int32)
    high = np.full(n, -np.inf)
    low = np.full(n, np.inf)
    on = labels > 0
    if on.any():  # each component's extent across the line (sorted by label: reduceat)
        order = np.argsort(labels[on], kind="stable")
        which, offset = labels[on][order], across[on][order]
        starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
        high[which[starts]] = np.maximum.reduceat(offset, starts)
        low[which[starts]] = np.minimum.reduceat(offset, starts)
    keep = (high <= half) & (low >= -half) & (high - low >= tall)
    return _kept(keep, stats, labels)


def _contained(ink: npt.NDArray[np.bool_], tall: float) -> npt.NDArray[np.bool_]:
    """The components of `ink` (rows across a line, columns along it) that touch neither its
    first nor its last row (they stay inside the band and its margins: not anatomy crossing
    it) and are at least `tall` rows high (not noise specks)."""
    marks = np.ascontiguousarray(ink, dtype=np.uint8)
    _, labels, stats, _ = _components(marks)
    top, height = stats[:, cv2.CC_STAT_TOP], stats[:, cv2.CC_STAT_HEIGHT]
    keep = (top > 0) & (top + height < marks.shape[0]) & (height >= tall)
    return _kept(keep, stats, labels)


def _kept(
    keep: npt.NDArray[np.bool_], stats: npt.NDArray[np.int32], labels: npt.NDArray[np.int32]
) -> npt.NDArray[np.bool_]:
    """The pixels of the components `keep` selects that are more than a speck (area >= 2);
    never the background (label 0)."""
    keep = keep & (stats[:, cv2.CC_STAT_AREA] >= 2)
    keep[0] = False
    return np.asarray(keep[labels], dtype=np.bool_)


def _run(
    profile: npt.NDArray[np.bool_],
    reach: int,
    letters: npt.NDArray[np.bool_] | None = None,
    far: int = 0,
) -> int:
    """How far ink continues from the start of `profile` with no gap longer than `reach`
    (or than `far` when the ink after the gap is in `letters`)."""
    end = 0
    for position in np.flatnonzero(profile).tolist():
        gap = position - end
        if gap > reach and not (letters is not None and gap <= far and letters[position]):
            break
        end = position + 1
    return end


def _extend(line: TextLine, params: DetectParams, faint: bool = False) -> Box:
    """The line's box grown by `pad` and, along the line, by `extend` x its thickness (a
    glyph at either end that the grouping left out), across it by half that."""
    b = line.box
    thickness = line.thickness
    along = params.pad + int((params.extend_faint if faint else params.extend) * thickness)
    across = params.pad + int(params.extend_across * thickness)
    dx, dy = (across, along) if line.vertical else (along, across)
    return Box(b.left - dx, b.top - dy, b.width + 2 * dx, b.height + 2 * dy)


def _merge(lines: list[TextLine]) -> list[TextLine]:
    """Drop lines inside another (found in two bands or both directions), then join lines of
    one row a word gap apart (the words of a line). Overlapping lines of different rows stay
    apart (a union of unions would grow over the frame)."""
    lines = _drop_stacks(lines)
    ordered = sorted(lines, key=lambda ln: -ln.box.area)
    kept: list[TextLine] = []
    for line in ordered:
        if not any(k.box.overlap(line.box) == line.box.area for k in kept):
            kept.append(line)
    horizontal = [ln for ln in kept if not ln.vertical and not ln.rotated]
    vertical = [ln for ln in kept if ln.vertical or ln.rotated]
    joined = merge_until_stable([ln.box for ln in horizontal], _same_row)
    out = vertical + [
        TextLine(
            box,
            sum(ln.glyphs for ln in horizontal if box.overlap(ln.box)),
            False,
            size=max(ln.size for ln in horizontal if box.overlap(ln.box)),
            members=tuple(m for ln in horizontal if box.overlap(ln.box) for m in ln.members),
        )
        for box in joined
    ]
    return sorted(out, key=lambda ln: (ln.box.top, ln.box.left))


def _drop_owned(lines: list[TextLine], params: DetectParams) -> list[TextLine]:
    """Lines most of whose glyphs belong to a stronger line (more glyphs), taken in that
    order: a column of anatomy marks and letters of stacked text lines read down across them,
    the descenders of a large line read as a line of their own, a slanted run through pieces
    of large letters. Each costs a blanked strip over the anatomy, and the text it passes
    through is blanked by its own line."""
    ranked = sorted(lines, key=lambda ln: (-ln.glyphs, -ln.size, -ln.box.area))
    kept: list[TextLine] = []
    for line in ranked:
        # the same text found twice (two height bands, two pieces) is `_merge`'s
        stronger = [
            k
            for k in kept
            if k.vertical != line.vertical
            or k.rotated != line.rotated
            or line.size < params.own_size * k.size
        ]
        owned = sum(1 for m in line.members if any(_holds(k, line, m, params) for k in stronger))
        if not line.members or owned < params.owned * len(line.members):
            kept.append(line)
    return [ln for ln in lines if any(ln is k for k in kept)]


def _holds(
    line: TextLine, other: TextLine, member: tuple[int, int, int, int], params: DetectParams
) -> bool:
    """Whether a glyph of `other` lies on `line`: within its glyph span along it and
    `own_band` x its glyph height of its fitted centre line across it, or up to one glyph
    height from it while touching its glyphs' box (a descender under a large line)."""
    x, y, w, h = member
    if other.vertical != line.vertical:
        x, y, w, h = y, x, h, w  # into `line`'s frame: along, across
    b = line.box
    first, last, low, high = (
        (b.top, b.bottom, b.left, b.right) if line.vertical else (b.left, b.right, b.top, b.bottom)
    )
    along, across = x + w / 2.0, y + h / 2.0
    if not first <= along <= last:
        return False
    off = abs(across - (line.slope * along + line.offset)) / max(line.size, 4)
    touches = not line.rotated and y < high and y + h > low
    return off <= params.own_band or (touches and off <= 1.0)


def _drop_stacks(lines: list[TextLine]) -> list[TextLine]:
    """Lines of one direction that hold two or more lines of the other direction (mostly
    inside them) are the letters of those lines stacked across them (rows of 40 px text
    read as columns), not text: dropped, so the lines they hold are kept and blanked tight."""

    def holds(line: TextLine) -> bool:
        inside = [
            other
            for other in lines
            if other.vertical != line.vertical and 2 * line.box.overlap(other.box) >= other.box.area
        ]
        return len(inside) >= 2

    return [line for line in lines if not holds(line)]


def _same_row(a: Box, b: Box) -> bool:
    rows = min(a.bottom, b.bottom) - max(a.top, b.top)
    small, large = min(a.height, b.height), max(a.height, b.height)
    gap = max(a.left, b.left) - min(a.right, b.right)
    return rows >= small // 2 and large <= 2 * small and gap <= large


def document_like(lines: list[TextLine], rows: int, columns: int) -> bool:
    """A page of text (scanned document, screenshot, dose report) rather than annotations:
    lines at 8 or more heights, covering a fifth of the frame or more."""
    centres = {(ln.box.top + ln.box.height // 2) // 8 for ln in lines if not ln.vertical}
    if len(centres) < 8:
        return False
    return bool(mask_of(lines, rows, columns).mean() >= 0.2)


def mask_of(lines: list[TextLine], rows: int, columns: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((rows, columns), bool)
    for line in lines:
        b = line.box
        mask[b.top : b.bottom, b.left : b.right] = True
    return mask
