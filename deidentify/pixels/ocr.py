"""What the pixel scrubber needs from an OCR engine, as a Protocol (no engine here).

The scrubber core takes an `OcrBackend` as a parameter, so it stays pure and testable with a
fake; the tesseract implementation lives in `tesseract.py` (the only module of `deidentify`
that runs a program).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Gray8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, order=True)
class Box:
    """A rectangle in frame pixels: columns [left, left+width), rows [top, top+height)."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def clip(self, columns: int, rows: int) -> Box | None:
        left, top = max(self.left, 0), max(self.top, 0)
        right, bottom = min(self.right, columns), min(self.bottom, rows)
        if right <= left or bottom <= top:
            return None
        return Box(left, top, right - left, bottom - top)

    def grow(self, margin: int) -> Box:
        return Box(
            self.left - margin, self.top - margin, self.width + 2 * margin, self.height + 2 * margin
        )

    def scaled(self, factor: float) -> Box:
        """Map a box found on an image resized by `factor` back to frame coordinates."""
        if factor == 1:
            return self
        left, top = int(self.left / factor), int(self.top / factor)
        right = int(np.ceil(self.right / factor))
        bottom = int(np.ceil(self.bottom / factor))
        return Box(left, top, right - left, bottom - top)

    def overlap(self, other: Box) -> int:
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        return max(w, 0) * max(h, 0)

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        left, top = min(self.left, other.left), min(self.top, other.top)
        right, bottom = max(self.right, other.right), max(self.bottom, other.bottom)
        return Box(left, top, right - left, bottom - top)


def merge_until_stable(boxes: Sequence[Box], joins: Callable[[Box, Box], bool]) -> list[Box]:
    """Replace any two boxes that `joins` by their union, until no two join (input order kept
    for the boxes that stay apart)."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in merged:
            for i, other in enumerate(out):
                if joins(box, other):
                    out[i] = box.union(other)
                    changed = True
                    break
            else:
                out.append(box)
        merged = out
    return merged


@dataclass(frozen=True)
class OcrWord:
    """One recognised word. `line` groups words of the same text line (block, paragraph, line).

    `reading` tells apart several readings of the same pixels (a backend may read a crop at
    two scales): words of different readings are never joined into one line."""

    text: str
    box: Box
    confidence: float
    line: tuple[int, int, int] = (0, 0, 0)
    reading: int = 0


class OcrUnavailable(RuntimeError):
    """The OCR engine cannot run (not installed, failed to start); the message says why."""


@runtime_checkable
class OcrBackend(Protocol):
    """Reads words from 8-bit grayscale images (dark text on a light background reads best)."""

    name: str

    def is_available(self) -> bool:
        """True when `read` can run."""
        ...

    def unavailable_reason(self) -> str:
        """Why `is_available()` is False, naming the missing dependency and how to install it."""
        ...

    def read(self, images: Sequence[Gray8]) -> list[list[OcrWord]]:
        """Words per image, boxes in that image's pixel coordinates. Raises `OcrUnavailable`."""
        ...
