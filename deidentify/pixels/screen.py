"""The text screen inside the scrubber: detect on every frame, decide per line, screen again.

    found = screen(decoded, params)                  # {frame: [TextLine, ...]}, frames with text
    view = ocr_view(image, lines, margin)            # OCR reads only the detected lines
    blank, kept = decide(lines, words, hits, policy) # boxes to blank, boxes kept as safe text
    left = rescreen(decoded, frames, params, kept)   # text-like lines still there
    regions = learned(decoded, frames, net)          # the learned detector's, {frame: [...]}
    boxes = learned_boxes(regions[i], kept, blanked, columns, rows, net.covered)  # to blank

No I/O but `learned`'s (the network runs in a worker process, `networker.py`): numpy and
OpenCV; the OCR words come in from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

import numpy as np

from deidentify.pixels.allow import line_is_safe, words_in
from deidentify.pixels.detect import Hit
from deidentify.pixels.frames import Decoded, render_gray8
from deidentify.pixels.netdetect import NetParams, TextRegion, mask_of
from deidentify.pixels.networker import find_regions
from deidentify.pixels.ocr import Box, Gray8, OcrWord
from deidentify.pixels.policy import PixelPolicy
from deidentify.pixels.textdetect import DetectParams, TextLine, find_text, glyph_centres

_Found = TypeVar("_Found")


def screen(
    decoded: Decoded, params: DetectParams, frames: Iterable[int] | None = None
) -> dict[int, list[TextLine]]:
    """Text-like lines per frame (frames without any are left out)."""
    indices = range(decoded.count) if frames is None else frames
    return _per_frame(decoded, indices, lambda gray: find_text(gray, params))


def learned(
    decoded: Decoded, frames: Iterable[int], params: NetParams
) -> dict[int, list[TextRegion]]:
    """The learned detector's text regions per frame (frames without any are left out); the
    caller checks `netdetect.is_available()` first."""
    return _per_frame(decoded, sorted(set(frames)), lambda gray: find_regions(gray, params))


def _per_frame(
    decoded: Decoded, indices: Iterable[int], find: Callable[[Gray8], list[_Found]]
) -> dict[int, list[_Found]]:
    """What `find` finds on each of the frames, rendered to 8 bits in display polarity (frames
    where it finds nothing are left out)."""
    found: dict[int, list[_Found]] = {}
    for index in indices:
        hits = find(render_gray8(decoded.frames[index], decoded.photometric))
        if hits:
            found[index] = hits
    return found


def learned_boxes(
    regions: Sequence[TextRegion],
    kept: Sequence[Box],
    blanked: Sequence[Box],
    columns: int,
    rows: int,
    covered: float,
) -> list[Box]:
    """What to blank for the learned regions of one frame: each region's polygon as boxes,
    except a region at least half inside lines OCR read as safe text (`decide`'s kept boxes:
    the learned detector finds those lines too), or at least `covered` inside what is
    already blanked by its core (the network's region before `unclip`): the classical lines'
    tight ink has that text, and the region would add only its margin."""
    done = np.zeros((rows, columns), bool)
    for b in blanked:
        done[max(b.top, 0) : b.bottom, max(b.left, 0) : b.right] = True
    out: list[Box] = []
    for region in regions:
        pieces = region.boxes(columns, rows)
        area = sum(p.area for p in pieces)
        if not area or (kept and 2 * sum(p.overlap(k) for p in pieces for k in kept) >= area):
            continue
        core = mask_of([replace(region, polygon=region.core)], rows, columns)
        if core.any() and float(done[core].mean()) >= covered:
            continue
        out.extend(pieces)
    return out


def _along_edges(line: TextLine, grown: Sequence[Box]) -> bool:
    """Whether most of `line`'s glyphs lie within `grown` (blanked boxes grown by a kernel)
    at two or more of them that run across it (blanked lines of the other direction)."""
    if line.rotated:
        return False
    across = [
        g for g in grown if (g.width >= 2 * g.height if line.vertical else g.height >= 2 * g.width)
    ]
    centres = glyph_centres(line)
    touched: set[int] = set()
    near = 0
    for column, row in centres:
        hits = [
            i
            for i, g in enumerate(across)
            if g.left <= column < g.right and g.top <= row < g.bottom
        ]
        near += bool(hits)
        touched.update(hits)
    return bool(centres) and 2 * near >= len(centres) and len(touched) >= 2


def ocr_view(image: Gray8, lines: Sequence[TextLine], margin: int) -> Gray8:
    """`image` (dark text on light) with everything outside the lines made white: OCR then
    reads only the lines (its region finder skips flat white)."""
    keep = np.zeros(image.shape, bool)
    for line in lines:
        b = line.box.grow(margin)
        keep[max(b.top, 0) : b.bottom, max(b.left, 0) : b.right] = True
    return np.where(keep, image, np.uint8(255)).astype(np.uint8)


def decide(
    lines: Sequence[TextLine],
    words: Sequence[OcrWord] | None,
    hits: Sequence[Hit],
    policy: PixelPolicy,
) -> tuple[list[Box], list[Box]]:
    """(boxes to blank, boxes kept). `words` None: OCR did not read this frame (unavailable),
    so nothing can be shown safe. A line with an OCR hit in it is never kept."""
    blank: list[Box] = []
    kept: list[Box] = []
    if policy.text == "ocr":
        return blank, kept
    for line in lines:
        safe = (
            policy.text == "blank"
            and words is not None
            and not any(h.box.overlap(line.box) for h in hits)
            and line_is_safe(words_in(words, line.box), line.glyphs, policy.allowed_words)
        )
        if safe:
            kept.append(line.box)
        else:
            blank.extend(line.ink_boxes)  # the line's words, tight
    return blank, kept


def rescreen(
    decoded: Decoded,
    frames: Iterable[int],
    params: DetectParams,
    kept: dict[int, list[Box]],
    blanked: dict[int, list[Box]],
) -> dict[int, list[Box]]:
    """Lines the detector still finds on `frames` of the scrubbed pixels, except kept ones and
    the edges of blanked boxes: a line mostly within a kernel of a blanked box is the sliver
    of background between the box and the frame edge or another box (a real line left over
    would reach beyond); so is a line whose glyphs lie mostly at the edges of two or more
    blanked boxes (a column read down along the ends of stacked blanked lines)."""
    left: dict[int, list[Box]] = {}
    reach = params.kernel
    for index, lines in screen(decoded, params, sorted(set(frames))).items():
        safe = kept.get(index, [])
        edges = np.zeros((decoded.rows, decoded.columns), bool)
        for b in blanked.get(index, []):  # a slanted line is blanked as many small boxes
            e = b.grow(reach)
            edges[max(e.top, 0) : e.bottom, max(e.left, 0) : e.right] = True
        grown = [b.grow(reach) for b in blanked.get(index, [])]
        boxes = [
            word
            for ln in lines
            if not any(ln.box.overlap(k) for k in safe)
            and not 2 * edges[ln.box.top : ln.box.bottom, ln.box.left : ln.box.right].sum()
            >= ln.box.area
            and not _along_edges(ln, grown)
            for word in ln.ink_boxes
        ]
        if boxes:
            left[index] = boxes
    return left
