"""Which OCR words identify the patient: the instance's own header values, and PHI patterns.

OCR misreads (0/O, 1/I/l, 5/S, 8/B), truncates ("PATIENTFI...") and splits or joins words,
so matching works on alphanumeric tokens folded to a common alphabet, allows one edit in long
tokens and accepts a truncated prefix. Patterns: dates (numeric and with month names), times,
phone numbers, MRN-like digit runs (6+ digits) and the words after a label such as "Name:",
"ID", "DOB". A `Hit` names its kind and its box, never the text it matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deidentify.pixels.ocr import Box, OcrWord

_FOLD = str.maketrans(
    {
        "O": "0",
        "Q": "0",
        "D": "0",
        "I": "1",
        "L": "1",
        "|": "1",
        "!": "1",
        "Z": "2",
        "S": "5",
        "B": "8",
        "G": "6",
    }
)
_DIGIT_FOLD = str.maketrans("OoIl|", "00111")
_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_MIN_TOKEN = 2
_MIN_FUZZY = 5
_MIN_DIGIT_TOKEN = 5
_MIN_PREFIX = 4

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC"
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})(?!\d)"),
    re.compile(r"(?<!\d)\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}(?!\d)"),
    re.compile(
        rf"(?<![A-Z])\d{{1,2}}[\s/.\-]*(?:{_MONTHS})[A-Z]*[\s/.\-,]*(?:\d{{4}}|\d{{2}})(?!\d)"
    ),
    re.compile(rf"(?<![A-Z])(?:{_MONTHS})[A-Z]*[\s/.\-]*\d{{1,2}}[\s,/.\-]+\d{{4}}(?!\d)"),
    re.compile(r"(?<!\d)(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)"),
)
_TIME = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AP]M)?(?![\d:])")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[ \-./]?\(?\d{2,5}\)?){2,5}(?![\w.])")
_WORDY = re.compile(r"[A-Za-z]{2,}")
_O_NEAR_DIGIT = re.compile(r"O(?=\d)|(?<=\d)O")
_MRN = re.compile(r"\d{6,}")
_NUMBERISH = re.compile(
    r"(?=.*\d)[\[(]?[0-9OoIl|]{1,4}(?:[:./\-][0-9OoIl|]{1,4})*[.,;:)\]]?|[AaPp]\.?[Mm]\.?"
)
_LABELS = frozenset({
    "NAME", "PATIENT", "PAT", "PT", "PATIENTNAME", "PATNAME", "ID", "PID", "PATIENTID", "PATID",
    "MRN", "DOB", "BIRTH", "BIRTHDATE", "BORN", "ACC", "ACCESSION", "SSN", "NHS", "NHI",
})  # fmt: skip
_LABEL_FOLLOW = 3  # words after a label on the same line


@dataclass(frozen=True)
class Hit:
    """A word (or run of words) to blank. `kind` names why, never the text."""

    box: Box
    kind: str  # identifying-value, date, time, date-part, phone, mrn-like, after-label


def _fold(text: str) -> str:
    return _NON_ALNUM.sub("", text.upper()).translate(_FOLD)


def _tokens(text: str) -> list[str]:
    return [t for t in _NON_ALNUM.split(text.upper()) if t]


@dataclass(frozen=True)
class Needles:
    """The instance's identifying values as folded tokens and folded whole values."""

    tokens: frozenset[str]
    wholes: frozenset[str]

    @classmethod
    def from_values(cls, values: Iterable[str]) -> Needles:
        tokens: set[str] = set()
        wholes: set[str] = set()
        for value in values:
            whole = _fold(value)
            if len(whole) >= _MIN_TOKEN + 1:
                wholes.add(whole)
            for token in _tokens(value):
                # words of names and places; digit pieces only when long (dates' "14" is not)
                wordy = any(c.isalpha() for c in token)
                if (wordy and len(token) >= _MIN_TOKEN) or len(token) >= _MIN_DIGIT_TOKEN:
                    tokens.add(token.translate(_FOLD))
        return cls(frozenset(tokens), frozenset(wholes))

    def __bool__(self) -> bool:
        return bool(self.tokens or self.wholes)

    def matches(self, text: str) -> bool:
        folded = _fold(text)
        if len(folded) < _MIN_TOKEN:
            return False
        if folded in self.wholes or folded in self.tokens:
            return True
        if len(folded) >= _MIN_FUZZY and any(folded in w for w in self.wholes if len(w) >= 6):
            return True  # a piece of a longer value (an ID split by OCR)
        truncated = text.rstrip().endswith(("...", "\u2026", ".."))
        for raw in _tokens(text):
            token = raw.translate(_FOLD)
            if len(token) < _MIN_TOKEN:
                continue
            if token in self.tokens or token in self.wholes:
                return True
            if len(token) >= _MIN_FUZZY and any(
                abs(len(n) - len(token)) <= 1 and _within_one_edit(token, n) for n in self.tokens
            ):
                return True
            if (
                (truncated or len(token) >= _MIN_FUZZY)
                and len(token) >= _MIN_PREFIX
                and any(len(n) > len(token) and n.startswith(token) for n in self.tokens)
            ):
                return True
        return False


def _within_one_edit(a: str, b: str) -> bool:
    if a == b:
        return True
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _digits_folded(text: str) -> str:
    """Read O/o as 0 and I/l/| as 1 inside mostly-numeric words (OCR confuses them)."""
    digits = sum(c.isdigit() for c in text)
    if digits * 2 < len(text.strip(":.,;")) or _WORDY.search(text):
        return text
    return text.translate(_DIGIT_FOLD)


def pattern_kind(text: str) -> str | None:
    """The PHI pattern a piece of text matches, if any."""
    t = _digits_folded(text).upper()
    if any(p.search(t) for p in _DATE_PATTERNS):
        return "date"
    if _TIME.search(t):
        return "time"
    if _MRN.search(_O_NEAR_DIGIT.sub("0", t)):
        return "mrn-like"
    match = _PHONE.search(t)
    if match and sum(c.isdigit() for c in match.group(0)) >= 7:
        return "phone"
    return None


def _lines(words: Sequence[OcrWord]) -> list[list[OcrWord]]:
    """Words grouped by line, left to right; tesseract's line ids, merged by geometry."""
    groups: dict[tuple[int, int, int], list[OcrWord]] = {}
    for word in words:
        groups.setdefault(word.line, []).append(word)
    lines = [sorted(g, key=lambda w: w.box.left) for g in groups.values()]
    # psm 11 may split one visual line into several blocks: merge lines that share a baseline
    lines.sort(key=lambda ln: (ln[0].box.top, ln[0].box.left))
    merged: list[list[OcrWord]] = []
    for line in lines:
        for target in merged:
            a, b = target[0].box, line[0].box
            if (
                abs(a.top - b.top) <= max(a.height, b.height) // 2
                and abs(a.bottom - b.bottom) <= max(a.height, b.height) // 2
            ):
                target.extend(line)
                target.sort(key=lambda w: w.box.left)
                break
        else:
            merged.append(list(line))
    return merged


def _union(words: Sequence[OcrWord]) -> Box:
    left = min(w.box.left for w in words)
    top = min(w.box.top for w in words)
    right = max(w.box.right for w in words)
    bottom = max(w.box.bottom for w in words)
    return Box(left, top, right - left, bottom - top)


def _has_alnum(word: OcrWord) -> bool:
    """Punctuation alone ("[", "|", "-") identifies nobody: the edge of a blanked box reads so."""
    return any(c.isalnum() for c in word.text)


def _gap_ok(a: OcrWord, b: OcrWord, factor: float) -> bool:
    height = max(a.box.height, b.box.height, 1)
    return max(a.box.left, b.box.left) - min(a.box.right, b.box.right) <= factor * height


def find_hits(
    words: Sequence[OcrWord], needles: Needles, *, patterns: bool = True, verify: bool = False
) -> list[Hit]:
    """Every word or short run of words that matches an identifying value or a PHI pattern.

    `verify` (the second pass over scrubbed pixels): a single character after a label does not
    count; the edge of a blanked box next to a label reads as one ("DOB |", "ID 1").
    """
    hits: list[Hit] = []
    follower_min = 2 if verify else 1
    readings: dict[int, list[OcrWord]] = {}
    for word in words:
        if _has_alnum(word):
            readings.setdefault(word.reading, []).append(word)
    lines = [line for reading in readings.values() for line in _lines(reading)]
    for line in lines:
        when: set[int] = set()  # words of the line that are a date or a time
        for i, word in enumerate(line):
            kind = pattern_kind(word.text) if patterns else None
            if kind in ("date", "time"):
                when.add(i)
            if needles and needles.matches(word.text):
                hits.append(Hit(word.box, "identifying-value"))
                continue
            if not patterns:
                continue
            if kind:
                hits.append(Hit(word.box, kind))
            if _NON_ALNUM.sub("", word.text.upper()) in _LABELS:
                follow = line[i + 1 : i + 1 + _LABEL_FOLLOW]
                gap = max(word.box.height, 1) * 3
                previous = word
                for nxt in follow:
                    if nxt.box.left - previous.box.right > gap:
                        break
                    if sum(c.isalnum() for c in nxt.text) >= follower_min:
                        hits.append(Hit(nxt.box, "after-label"))
                    previous = nxt
        if needles:  # values OCR split across words: "DOE" "JOHN" for "DOE^JOHN", "12 345 678"
            for size in (2, 3):
                for i in range(len(line) - size + 1):
                    run = line[i : i + size]
                    if any(needles.matches(w.text) for w in run):
                        continue
                    if needles.matches("".join(w.text for w in run)):
                        hits.append(Hit(_union(run), "identifying-value"))
        if patterns:  # "14 APR 2020", "8:48:26 AM", "4/14/2020 8:48"
            for size in (2, 3):
                for i in range(len(line) - size + 1):
                    run = line[i : i + size]
                    joined = " ".join(w.text for w in run)
                    if any(pattern_kind(w.text) for w in run):
                        continue
                    kind = pattern_kind(joined)
                    if kind in ("date", "time"):
                        hits.append(Hit(_union(run), kind))
                        when.update(range(i, i + size))
            hits.extend(_date_neighbours(line, when))
    return hits


def _date_neighbours(line: Sequence[OcrWord], when: set[int]) -> list[Hit]:
    """Numbers right next to a date or time belong to it: "2024-06-11 14 32" when OCR lost the
    colon of "14:32", "17 03 1962" around a recognised piece, "AM"/"PM" after a time."""
    found: list[Hit] = []
    taken = set(when)
    for start in sorted(when):
        for step in (-1, 1):
            i = start
            while 0 <= i + step < len(line) and (i + step) not in taken:
                word, nxt = line[i], line[i + step]
                if not (_NUMBERISH.fullmatch(nxt.text) and _gap_ok(word, nxt, 1.5)):
                    break
                taken.add(i + step)
                found.append(Hit(nxt.box, "date-part"))
                i += step
    return found
