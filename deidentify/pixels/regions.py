"""Where a frame could hold text: the parts OCR must read (the rest is flat, it cannot).

Tesseract's cost grows with the pixels it binarises and the blobs it tries to recognise, but
burned-in text is usually a few lines in corners. So OCR reads crops instead of the frame:

* ink: a pixel differs from the mean of its 33 x 33 neighbourhood by at least `contrast`
  grey levels (of the frame rendered to 8 bits, full range). Anything tesseract could read as a
  character has such pixels; smooth gradients and mild noise do not.
* cells: the frame is cut into `cell` x `cell` tiles; a tile holding at least one ink pixel is
  active. Active tiles are joined horizontally across gaps of up to `join_x` tiles and
  vertically across `join_y` tiles (letters into words into lines), and connected groups become
  rectangles, grown by `pad` pixels of context and merged while they overlap.
* too much: when the rectangles cover more than `max_fraction` of the frame (a speckled
  ultrasound sector, a textured radiograph), cropping saves nothing and the frame is read
  whole; `crop_regions` then returns one rectangle, the frame.

The rule is deliberately inclusive (a lone ink pixel makes a crop): leaving a crop out means
never reading it. Only frames with no ink at all (flat or blank) yield no rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from deidentify.pixels.ocr import Box, Gray8, merge_until_stable

RADIUS = 16  # a 33 x 33 neighbourhood


@dataclass(frozen=True)
class RegionParams:
    contrast: int = 20
    min_ink: int = 2  # ink pixels that make a cell active (one is noise)
    cell: int = 8
    join_x: int = 3
    join_y: int = 1
    pad: int = 12
    max_fraction: float = 0.7
    merge_gap: int = 8


DEFAULT_REGIONS = RegionParams()


def box_mean(image: npt.NDArray[np.generic], radius: int) -> npt.NDArray[np.float32]:
    """Mean over a (2r+1)^2 window (edges replicated), via a summed-area table."""
    padded = np.pad(image, ((radius + 1, radius), (radius + 1, radius)), mode="edge")
    exact: type[np.generic] = np.float64
    if image.dtype == np.uint8:  # integer sums are exact; int32 is faster while it cannot overflow
        exact = np.int32 if padded.size * 255 < 2**31 else np.int64
    sat = padded.cumsum(axis=0, dtype=exact).cumsum(axis=1, dtype=exact)
    k = 2 * radius + 1
    rows, columns = image.shape
    total = (
        sat[k : k + rows, k : k + columns]
        - sat[0:rows, k : k + columns]
        - sat[k : k + rows, 0:columns]
        + sat[0:rows, 0:columns]
    )
    mean: npt.NDArray[np.float32] = total.astype(np.float32) * np.float32(1.0 / (k * k))
    return mean


def ink_mask(gray: Gray8, contrast: int, radius: int = RADIUS) -> npt.NDArray[np.bool_]:
    """Pixels that differ from the mean of their neighbourhood by at least `contrast` levels."""
    mean = box_mean(gray, radius)
    ink: npt.NDArray[np.bool_] = np.abs(gray.astype(np.float32) - mean) >= contrast
    return ink


def _dilate(grid: npt.NDArray[np.bool_], dx: int, dy: int) -> npt.NDArray[np.bool_]:
    out = grid.copy()
    for shift in range(1, dx + 1):
        out[:, shift:] |= grid[:, :-shift]
        out[:, :-shift] |= grid[:, shift:]
    if dy:
        horizontal = out.copy()
        for shift in range(1, dy + 1):
            out[shift:, :] |= horizontal[:-shift, :]
            out[:-shift, :] |= horizontal[shift:, :]
    return out


def _components(grid: npt.NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (row0, col0, row1, col1 inclusive) of 4-connected groups of True cells."""
    rows, columns = grid.shape
    seen = np.zeros_like(grid)
    boxes = []
    for r0, c0 in zip(*np.nonzero(grid), strict=True):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        stack = [(int(r0), int(c0))]
        top, left, bottom, right = int(r0), int(c0), int(r0), int(c0)
        while stack:
            r, c = stack.pop()
            top, bottom = min(top, r), max(bottom, r)
            left, right = min(left, c), max(right, c)
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < rows and 0 <= nc < columns and grid[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        boxes.append((top, left, bottom, right))
    return boxes


def _merge_overlapping(boxes: list[Box], gap: int) -> list[Box]:
    """Join rectangles that overlap or lie within `gap` pixels (fewer, larger pages)."""
    merged = merge_until_stable(boxes, lambda box, other: box.grow(gap).overlap(other) > 0)
    return sorted(merged, key=lambda b: (b.top, b.left))


def crop_regions(gray: Gray8, params: RegionParams = DEFAULT_REGIONS) -> list[Box]:
    """Rectangles that together hold every ink pixel of `gray` (or the whole frame)."""
    rows, columns = gray.shape
    whole = [Box(0, 0, columns, rows)]
    ink = ink_mask(gray, params.contrast)
    if not ink.any():
        return []
    cell = params.cell
    grid_rows, grid_columns = -(-rows // cell), -(-columns // cell)
    padded = np.zeros((grid_rows * cell, grid_columns * cell), dtype=bool)
    padded[:rows, :columns] = ink
    counts = padded.reshape(grid_rows, cell, grid_columns, cell).sum(axis=(1, 3))
    cells = counts >= params.min_ink
    grid = _dilate(cells, params.join_x, params.join_y)
    if grid.mean() > params.max_fraction:
        return whole
    boxes = []
    for top, left, bottom, right in _components(grid):
        # the tight extent of the ink cells inside the group (dilation widened it)
        sub = cells[top : bottom + 1, left : right + 1]
        used_rows, used_columns = np.nonzero(sub.any(axis=1))[0], np.nonzero(sub.any(axis=0))[0]
        top, bottom = top + int(used_rows[0]), top + int(used_rows[-1])
        left, right = left + int(used_columns[0]), left + int(used_columns[-1])
        box = Box(left * cell, top * cell, (right - left + 1) * cell, (bottom - top + 1) * cell)
        clipped = box.grow(params.pad).clip(columns, rows)
        if clipped is not None:
            boxes.append(clipped)
    boxes = _merge_overlapping(boxes, params.merge_gap)
    if sum(b.area for b in boxes) > params.max_fraction * rows * columns:
        return whole
    return boxes
