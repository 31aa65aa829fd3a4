"""Turn a frame into the image tesseract reads best: 8-bit, dark text on a light background.

Burned-in text is light on dark (ultrasound, X-ray labels) or dark on light (documents, dose
screens), sometimes both in one frame. `local` polarity inverts each pixel whose neighbourhood
(a 33 x 33 window) is dark, so text of either polarity becomes dark on light, including a light
label box inside a dark image. `global` inverts the whole frame when its median is dark
(cheaper, misses mixed polarity). Measured on the deid-data ultrasound banners, `local` read
every banner word `global` read, and a distance-from-mean transform read far fewer.
"""

from __future__ import annotations

import numpy as np

from deidentify.pixels.frames import Frames, render_gray8
from deidentify.pixels.ocr import Gray8
from deidentify.pixels.regions import RADIUS, box_mean

_DARK = 128


def ocr_image(frame: Frames, photometric: str, *, upscale: int = 1, mode: str = "local") -> Gray8:
    gray = render_gray8(frame, photometric)
    if mode == "global":
        out = 255 - gray if np.median(gray) < _DARK else gray
    else:
        dark = box_mean(gray, RADIUS) < _DARK
        out = np.where(dark, 255 - gray, gray).astype(np.uint8)
    if upscale > 1:
        out = np.repeat(np.repeat(out, upscale, axis=0), upscale, axis=1)
    return np.ascontiguousarray(out, dtype=np.uint8)
