"""The engine's text matchers: identifying values in the forms people write them, and PHI-like
patterns (dates in words, e-mail, URLs with identifiers, street addresses, phone numbers).

Used by `clean.Scrubber` only; the verifier (`verify`) has its own, independent forms.

* Person names (every PN group: alphabetic, ideographic, phonetic): the whole name, every
  component and every word of it (family name alone, given name alone), given-family and
  family-given orders with any separator, dotted initials ("D. M. Q."), hyphen and apostrophe
  variants ("Smith-Jones" = "Smith Jones" = "SmithJones"; "O'Brien" = "OBrien", curly
  apostrophes alike), an
  ASCII spelling of accented names ("Müller" = "Muller" = "Mueller"), any case.
* IDs: any separators between the characters ("AB-1234-X" for "AB1234X"), and a run of 5+
  digits inside an ID on its own ("48213377" of "MRN-48213377").
* Phone numbers: the digits with any separators, with or without the country code.
* Addresses and other values: the whole value and each comma- or caret-separated part, with any
  whitespace.
* Dates (`DateFinder`): numeric (2019-05-20, 20/05/2019, 5/20/19, 20.05.2019, 20190520) and
  with month names or abbreviations in English, German, French, Spanish, Italian, Dutch and
  Portuguese (CLDR month names from Babel): "20-May-2019", "May 20, 2019", "20. Mai 2019",
  "20 de mayo de 2019", "May 2019", and "2019年5月20日".
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from babel.dates import get_month_names

MIN_LATIN = 3  # shorter latin needles (initials, "Li") would hit ordinary words
MIN_CJK = 2
_LOCALES = ("en", "de", "fr", "es", "it", "nl", "pt")
_B = r"(?<![0-9A-Za-z\u00C0-\u024F])"  # word boundaries for latin text; CJK needs none
_E = r"(?![0-9A-Za-z\u00C0-\u024F])"
_NAME_SEP = r"[\s+\-'\u2019\u2018`\u00b4.]?"
_ID_SEP = r"[\s+\-_./#:]?"
_PHONE_SEP = r"[\s+\-./()]*"
_GERMAN = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}
)
_SPLIT_WORDS = re.compile(r"[\s\-'\u2019\u2018`\u00b4.,]+")


def _is_cjk(text: str) -> bool:
    return any(ord(c) >= 0x2E80 for c in text)


def _long_enough(text: str) -> bool:
    core = "".join(c for c in text if c.isalnum())
    return len(core) >= (MIN_CJK if _is_cjk(core) else MIN_LATIN)


def _ascii_forms(word: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", word)
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return {word, plain, word.translate(_GERMAN)}


def _flex(text: str) -> str:
    """A literal where every run of separators may be any separator (or none)."""
    words = [w for w in _SPLIT_WORDS.split(text) if w]
    return _NAME_SEP.join(re.escape(w) for w in words)


# A regex fragment and whether it needs latin word boundaries around it (CJK needs none, and
# digit-bounded fragments carry their own): `compile_alternation` puts the boundaries around
# all of them at once, which keeps compiling a study's pattern cheap.
Fragment = tuple[bool, str]


def _bounded(fragment: str, sample: str) -> Fragment:
    return (not _is_cjk(sample), fragment)


def name_patterns(value: str) -> set[Fragment]:
    """Regex fragments for one PN value in every form listed in the module docstring."""
    out: set[Fragment] = set()
    for group in value.split("="):
        components = [p.strip() for p in group.split("^")]
        family = components[0]
        given = components[1] if len(components) > 1 else ""
        parts = [p for p in components if p]
        if not parts:
            continue
        pieces: set[str] = set(parts)
        for part in parts:
            pieces.update(w for w in _SPLIT_WORDS.split(part) if w)
        if family and given:
            rest = " ".join(parts[1:])
            pieces |= {f"{rest} {family}", f"{family} {rest}", f"{given} {family}"}
            pieces.add(f"{family} {given}")
            letters = [w[0] for w in _SPLIT_WORDS.split(" ".join(parts[1:] + parts[:1])) if w]
            if len(letters) >= 2:
                out.add((True, r"\.?\s?".join(re.escape(c) for c in letters) + r"\."))
                out.add((True, r"\.\s?".join(re.escape(c) for c in letters) + r"\.?"))
        for piece in pieces:
            if not _long_enough(piece):
                continue
            for form in _ascii_forms(piece):
                out.add(_bounded(_flex(form), form))
    return out


def id_patterns(value: str) -> set[Fragment]:
    """An ID with any separators between its characters, and its long digit runs alone."""
    core = [c for c in value if c.isalnum()]
    if len(core) < MIN_LATIN:
        return set()
    out: set[Fragment] = {(True, _ID_SEP.join(re.escape(c) for c in core))}
    for run in re.findall(r"\d{5,}", value):
        if run != "".join(core):
            out.add((False, rf"(?<!\d){run}(?!\d)"))
    return out


def phone_patterns(value: str) -> set[Fragment]:
    digits = re.sub(r"\D", "", value)
    out: set[Fragment] = set()
    for cut in range(4):
        tail = digits[cut:]
        if len(tail) >= 7:
            out.add((False, r"(?<!\d)\+?" + _PHONE_SEP.join(tail) + r"(?!\d)"))
    return out


def text_patterns(value: str) -> set[Fragment]:
    """Addresses and other values: the whole value and each comma/caret-separated part."""
    out: set[Fragment] = set()
    parts = {value, *re.split(r"[,^\n\r;]+", value)}
    for part in parts:
        part = part.strip()
        if len(part) >= 4 and _long_enough(part):
            for form in _ascii_forms(part):
                words = [w for w in re.split(r"[\s,^]+", form) if w]
                out.add(_bounded(r"[\s,^+]*".join(re.escape(w) for w in words), form))
    return out


def compile_alternation(fragments: Iterable[Fragment]) -> re.Pattern[str] | None:
    """One case-insensitive pattern: latin-bounded fragments in one group, the rest after."""
    unique = set(fragments)
    words = sorted({f for bounded, f in unique if bounded}, key=lambda f: (-len(f), f))
    others = sorted({f for bounded, f in unique if not bounded}, key=lambda f: (-len(f), f))
    parts = [f"{_B}(?:{'|'.join(words)}){_E}"] if words else []
    parts += [f"(?:{f})" for f in others]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


# --- dates --------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c)
    )


@functools.cache
def _months() -> dict[str, int]:
    names: dict[str, int] = {}
    for locale in _LOCALES:
        for width in ("wide", "abbreviated"):
            for context in ("format", "stand-alone"):
                for number, name in get_month_names(width, context, locale).items():
                    for form in {name.lower().rstrip("."), _fold(name).rstrip(".")}:
                        if len(form) >= 3:
                            names.setdefault(form, int(number))
    names.setdefault("sept", 9)
    return names


@functools.cache
def _date_regex() -> re.Pattern[str]:
    month = "|".join(re.escape(m) for m in sorted(_months(), key=len, reverse=True))
    mon = rf"(?<![^\W\d_])(?P<{{n}}>{month})\.?(?![^\W\d_])"
    day = r"(?P<{n}>[0-3]?\d)"
    sep = r"[\s\-/.,+]*(?:de[\s+]+|of[\s+]+)?"
    ordinal = r"(?:st|nd|rd|th|er|e|\.|º)?"
    alternatives = [
        r"(?<![\d.])(?P<y1>(?:1[89]|20)\d\d)(?P<s1>[-/.])(?P<m1>[01]?\d)(?P=s1)(?P<d1>[0-3]?\d)(?![\d])",
        r"(?<![\d.])(?P<a2>[0-3]?\d)(?P<s2>[-/.])(?P<b2>[0-3]?\d)(?P=s2)(?P<y2>\d\d\d\d|\d\d)(?![\d])",
        r"(?<![\d.])(?P<y3>(?:1[89]|20)\d\d)(?P<m3>[01]\d)(?P<d3>[0-3]\d)(?![\d.])",
        rf"(?<![\d.]){day.format(n='d4')}{ordinal}{sep}{mon.format(n='m4')}{sep}"
        rf"(?P<y4>\d\d\d\d|\d\d)(?!\d)",
        rf"{mon.format(n='m5')}{sep}{day.format(n='d5')}{ordinal},?[\s+]*(?P<y5>\d\d\d\d)(?!\d)",
        rf"{mon.format(n='m6')}[\s,+]*(?P<y6>(?:1[89]|20)\d\d)(?!\d)",
        r"(?P<y7>\d{4})\s*年\s*(?P<m7>\d{1,2})\s*月\s*(?P<d7>\d{1,2})\s*日?",
    ]
    return re.compile("|".join(alternatives), re.IGNORECASE)


# A written date: every (year, month, day) it may mean (day None: month and year only).
Candidate = tuple[int, int, int | None]


@dataclass(frozen=True)
class DateHit:
    start: int
    end: int
    candidates: frozenset[Candidate]


def _years(text: str) -> list[int]:
    y = int(text)
    if len(text) == 4:
        return [y]
    return [1900 + y, 2000 + y]


def _valid(y: int, m: int, d: int | None) -> bool:
    return 1800 <= y <= 2199 and 1 <= m <= 12 and (d is None or 1 <= d <= 31)


def find_dates(text: str) -> Iterator[DateHit]:
    """Every date-like substring with the dates it may mean (invalid ones are skipped)."""
    months = _months()
    for match in _date_regex().finditer(text):
        g = match.groupdict()
        found: set[Candidate] = set()
        if g["y1"]:
            found.add((int(g["y1"]), int(g["m1"]), int(g["d1"])))
        elif g["y2"]:
            a, b = int(g["a2"]), int(g["b2"])
            for y in _years(g["y2"]):
                found |= {(y, b, a), (y, a, b)}
        elif g["y3"]:
            found.add((int(g["y3"]), int(g["m3"]), int(g["d3"])))
        elif g["y4"]:
            m = months.get(_fold(g["m4"]).rstrip("."), 0)
            found |= {(y, m, int(g["d4"])) for y in _years(g["y4"])}
        elif g["y5"]:
            found.add((int(g["y5"]), months.get(_fold(g["m5"]).rstrip("."), 0), int(g["d5"])))
        elif g["y6"]:
            found.add((int(g["y6"]), months.get(_fold(g["m6"]).rstrip("."), 0), None))
        elif g["y7"]:
            found.add((int(g["y7"]), int(g["m7"]), int(g["d7"])))
        valid = frozenset(c for c in found if _valid(*c))
        if valid:
            yield DateHit(match.start(), match.end(), valid)


def date_candidate(da: str) -> Candidate | None:
    v = da.strip()[:8]
    if len(v) != 8 or not v.isdigit():
        return None
    return int(v[:4]), int(v[4:6]), int(v[6:8])


# --- PHI-like patterns (free text only) ----------------------------------------------------------

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_URL_ID = re.compile(r"[?=&]|\d{4,}")
MRN = re.compile(r"(?<!\w)[A-Za-z]{0,4}[-#:]?\d{6,}(?!\w)")
_STREET = (
    r"street|st|road|rd|lane|ln|avenue|ave|boulevard|blvd|drive|dr|court|ct|way|place|pl|"
    r"terrace|close|crescent|square|sq|highway|hwy|parkway|pkwy|alley|row"
)
_STREET_DE = r"stra(?:ss|ß)e|str|weg|gasse|platz|allee|ring|damm|ufer|chaussee"
ADDRESS = re.compile(
    rf"(?<!\w)\d{{1,5}}[A-Za-z]?,?\s+(?:[A-Z\u00C0-\u024F][\w'\u2019.-]*\s+){{0,4}}(?:{_STREET})\b\.?"
    rf"|(?<!\w)(?:rue|avenue|boulevard|chemin|via|calle|avenida|plaza)\s+(?:[\w'\u2019.-]+\s+){{0,4}}"
    rf"?[\w'\u2019-]+(?:,?\s*\d{{1,5}})?"
    rf"|(?<!\w)[A-Z\u00C0-\u024F][\w\u00C0-\u024F-]*(?:{_STREET_DE})\.?\s+\d{{1,4}}[a-z]?\b"
    rf"|(?<!\w)P\.?\s?O\.?\s+Box\s+\d+",
    re.IGNORECASE | re.UNICODE,
)
_REGIONS = ("US", "GB", "DE", "FR")
_DIGITS7 = re.compile(r"(?:\d[^\d\n]{0,3}){7}")


def phone_spans(text: str) -> list[tuple[int, int]]:
    """Phone numbers (Google's libphonenumber rules, several regions); only looked for when the
    text holds 7+ digits close together."""
    if not _DIGITS7.search(text):
        return []
    spans: set[tuple[int, int]] = set()
    for region in _REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(
            text, region, leniency=phonenumbers.Leniency.POSSIBLE
        ):
            if sum(c.isdigit() for c in match.raw_string) >= 7:  # not "120" in "120kV"
                spans.add((match.start, match.end))
    return sorted(spans)


def url_has_identifier(url: str) -> bool:
    return _URL_ID.search(url) is not None
