"""Before/after previews for a human reviewing quarantine: PNG bytes, no I/O, no Pillow.

The caller writes the bytes where its quarantine lives; previews of the input show the
burned-in identity they are about, so they stay at the clinic with the quarantined instance.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from deidentify.pixels.ocr import Box

RED = (255, 0, 0)


@dataclass(frozen=True)
class Preview:
    frame: int
    before_png: bytes  # input frame, blanked boxes outlined
    after_png: bytes  # output frame, anything the second pass still read outlined


def outline(
    image: npt.NDArray[np.uint8],
    boxes: Iterable[Box],
    color: tuple[int, int, int] = RED,
    thickness: int = 2,
) -> npt.NDArray[np.uint8]:
    """A copy of an RGB image with rectangles drawn on it."""
    out = image.copy()
    rows, columns = out.shape[:2]
    for box in boxes:
        b = box.clip(columns, rows)
        if b is None:
            continue
        t = min(thickness, b.height, b.width)
        out[b.top : b.top + t, b.left : b.right] = color
        out[b.bottom - t : b.bottom, b.left : b.right] = color
        out[b.top : b.bottom, b.left : b.left + t] = color
        out[b.top : b.bottom, b.right - t : b.right] = color
    return out


def encode_png(image: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of an 8-bit grayscale (H, W) or RGB (H, W, 3) image."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("encode_png takes uint8 (H, W) or (H, W, 3)")
    rows, columns = image.shape[:2]
    color_type = 0 if image.ndim == 2 else 2
    raw = np.ascontiguousarray(image).reshape(rows, -1)
    filtered = np.hstack([np.zeros((rows, 1), np.uint8), raw]).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", columns, rows, 8, color_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(filtered, 6)),
            chunk(b"IEND", b""),
        )
    )
