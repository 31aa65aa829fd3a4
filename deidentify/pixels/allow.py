"""Text that may stay burned in: orientation and laterality markers, technique, slice numbers.

A detected text line is kept only when OCR read it, every word it read is safe, and what it
read accounts for the marks found (a name misread as "L" leaves six glyphs unexplained: the
line is blanked). Safe words: single orientation letters (L R A P H F S I), view and position
words (AP PA LAT AXIAL ...), window/level and technique labels with their numbers (W 400,
L: 40, 120 kVp, 250 mAs, 5.0 mm, Se: 3, Im: 42/120), and a site's own words. Numbers are safe
only when short (at most 3 digits, or a decimal): a year, an ID or a date never is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from deidentify.pixels.ocr import Box, OcrWord

SAFE_WORDS = frozenset({
    "L", "R", "A", "P", "H", "F", "S", "I", "LT", "RT", "LEFT", "RIGHT", "ANT", "POST", "SUP",
    "INF", "AP", "PA", "LAT", "LL", "RL", "OBL", "CC", "MLO", "ML", "LM", "XCCL", "AXIAL",
    "AX", "SAG", "COR", "CORONAL", "SAGITTAL", "TRANSVERSE", "SUPINE", "PRONE", "ERECT",
    "UPRIGHT", "DECUB", "W", "WW", "WL", "C", "WC", "L:", "W:", "KV", "KVP", "MA", "MAS", "MS",
    "MM", "CM", "SE", "IM", "IMG", "SL", "SLICE", "THK", "FOV", "TR", "TE", "TI", "FA", "ET",
    "NEX", "DFOV", "ZOOM", "ROT", "TILT", "HU", "DEG", "SEC", "MGY", "CTDIVOL", "DLP",
})  # fmt: skip
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:[.,]\d{1,2})?|\.\d{1,2})%?")
_SPLIT = re.compile(r"[\s:=/()\[\],;]+")


def _pieces(text: str) -> list[str]:
    return [p for p in _SPLIT.split(text.upper()) if p]


def word_is_safe(text: str, allowed: frozenset[str] = SAFE_WORDS) -> bool:
    """Every piece of the word is a safe word or a short number (with a unit stuck on)."""
    pieces = _pieces(text)
    if not pieces:
        return True  # punctuation only
    for piece in pieces:
        if piece in allowed or _NUMBER.fullmatch(piece):
            continue
        unit = re.fullmatch(r"([-+]?\d{1,3}(?:[.,]\d{1,2})?)([A-Z]{1,6})", piece)
        if unit and unit.group(2) in allowed:
            continue
        return False
    return True


def words_in(words: Iterable[OcrWord], box: Box) -> list[OcrWord]:
    """The words whose centre lies inside `box`."""
    inside = []
    for word in words:
        cx = word.box.left + word.box.width // 2
        cy = word.box.top + word.box.height // 2
        if box.left <= cx < box.right and box.top <= cy < box.bottom:
            inside.append(word)
    return inside


def line_is_safe(
    words: Sequence[OcrWord], glyphs: int, allowed: frozenset[str] = SAFE_WORDS
) -> bool:
    """OCR read the line, every word is safe and the characters read explain the glyphs."""
    readable = [w for w in words if any(c.isalnum() for c in w.text)]
    if not readable or not all(word_is_safe(w.text, allowed) for w in readable):
        return False
    characters = sum(sum(c.isalnum() for c in w.text) for w in readable)
    return glyphs <= 3 * characters + 2  # both polarities: letters and the gaps between
