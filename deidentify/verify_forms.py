"""The verifier's own written forms of identifying values (never used by the engine).

The engine (`textforms`) finds dates by parsing any date-like text and names through flexible
patterns; the verifier works the other way round: from each original value it generates the
strings and patterns that would betray it, and searches the output's bytes for them. So a miss in
one is not a miss in the other.

* names: every PN group, component and word; given-family, family-given and "family, given"
  orders; hyphen, apostrophe and space variants of compound names; dotted initials; accented
  letters folded to ASCII and to German transliteration;
* IDs: a bytes pattern allowing one separator (space - _ . / # :) between any two characters,
  plus long digit runs alone;
* phone numbers: the last 7+ digits with any separators;
* dates: for each (year, month, day), day-month-year, month-day-year and year-month-day with
  numbers or CLDR month names (Babel's `format_date` in seven languages) and any separators,
  and month-year with names.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from dataclasses import dataclass

from babel.dates import format_date

_LOCALES = ("en", "de", "fr", "es", "it", "nl", "pt")
_SEPARATORS = ("-", " ", "", "'", "\u2019", "+")
_COMPOUND = re.compile("[-'\u2019 ]")
_BOUND_B = rb"(?<![0-9A-Za-z])"
_BOUND_E = rb"(?![0-9A-Za-z])"


def _folded(text: str) -> set[str]:
    plain = "".join(
        c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
    )
    german = (
        text.replace("ä", "ae")
        .replace("ö", "oe")
        .replace("ü", "ue")
        .replace("ß", "ss")
        .replace("Ä", "Ae")
        .replace("Ö", "Oe")
        .replace("Ü", "Ue")
    )
    return {text, plain, german}


def _compound_variants(part: str) -> set[str]:
    words = [w for w in _COMPOUND.split(part) if w]
    variants = {part, *words}
    if len(words) > 1:
        variants |= {sep.join(words) for sep in _SEPARATORS}
    return variants


@functools.lru_cache(maxsize=4096)
def name_forms(value: str) -> frozenset[str]:
    """Literal forms of one PN value (see the module docstring)."""
    forms: set[str] = set()
    for group in value.split("="):
        components = [c.strip() for c in group.split("^")]
        parts = [c for c in components if c]
        if not parts:
            continue
        forms.add(group.strip())
        for part in parts:
            forms |= _compound_variants(part)
        if len(components) > 1 and components[0] and components[1]:
            family, given = components[0], components[1]
            others = [c for c in components[1:3] if c]
            for fam in _compound_variants(family):
                forms |= {f"{given} {fam}", f"{fam} {given}", f"{fam}, {given}", f"{fam},{given}"}
                forms.add(" ".join([*others, fam]))
            initials = [w[0] for w in [*others, family] if w]
            forms |= {".".join(initials) + ".", ". ".join(initials) + "."}
    out: set[str] = set()
    for form in forms:
        out |= _folded(form)
    return frozenset(out)


@functools.lru_cache(maxsize=1024)
def text_forms(value: str) -> frozenset[str]:
    """An address or other value: whole, each comma/caret/line part of 6+ characters, with
    spaces, "+" (URLs) or nothing between words."""
    parts = {value.strip()} | {p.strip() for p in re.split(r"[,^\r\n;]+", value)}
    forms: set[str] = set()
    for part in (p for p in parts if len(p) >= 6):
        words = part.split()
        forms |= {part, " ".join(words), "+".join(words), "".join(words)}
    return frozenset(forms)


def id_pattern(value: str) -> bytes | None:
    """A bytes pattern for an ID with optional separators; None when too short or not ASCII."""
    core = [c for c in value if c.isalnum()]
    if len(core) < 3 or not all(c.isascii() for c in core):
        return None
    body = rb"[ +\-_./#:]?".join(re.escape(c.encode("ascii")) for c in core)
    runs = [r.encode() for r in re.findall(r"\d{5,}", value)]
    alternatives = [_BOUND_B + body + _BOUND_E, *(rb"(?<!\d)" + r + rb"(?!\d)" for r in runs)]
    return b"|".join(alternatives)


def phone_pattern(value: str) -> bytes | None:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return None
    tail = digits[-7:]
    head = digits[:-7]
    body = rb"[ \-./()]*".join(d.encode() for d in tail)
    prefix = b"".join(rb"(?:" + d.encode() + rb"[ \-./()]*)?" for d in head)
    return rb"(?<!\d)\+?" + prefix + body + rb"(?!\d)"


@functools.cache
def _month_names(month: int) -> tuple[str, ...]:
    day = dt.date(2000, month, 1)
    names: set[str] = set()
    for locale in _LOCALES:
        for pattern in ("MMMM", "MMM", "LLLL", "LLL"):
            name = format_date(day, pattern, locale=locale).lower().rstrip(".")
            names |= _folded(name)
    return tuple(sorted((n for n in names if len(n) >= 3), key=len, reverse=True))


def date_pattern(value: str, codec: str) -> bytes | None:
    """A bytes pattern for a DA value written in any of the forms above, in `codec`."""
    v = value.strip()[:8]
    if len(v) != 8 or not v.isdigit():
        return None
    y, m, d = int(v[:4]), int(v[4:6]), int(v[6:8])
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    names = []
    for name in _month_names(m):
        try:
            names.append(re.escape(name.encode(codec)))
        except (UnicodeEncodeError, LookupError):
            continue
    month_name = rb"(?:" + b"|".join(names) + rb")\.?" if names else rb"(?!)"
    month_num = rb"0?" + str(m).encode()
    day = rb"0?" + str(d).encode() + rb"(?:st|nd|rd|th|er|e|\.)?"
    year4 = str(y).encode()
    year = rb"(?:" + year4 + rb"|" + year4[2:] + rb")"
    sep = rb"[ +\-/.,]*(?:de[ +]|of[ +])?[ +\-/.,]*"
    num_sep = rb"[\-/. ]"
    month = rb"(?:" + month_name + rb"|" + month_num + rb")"
    alternatives = [
        rb"(?<![0-9])" + day + sep + month_name + sep + year + rb"(?![0-9])",
        month_name + sep + day + sep + rb"[ ,+]*" + year4 + rb"(?![0-9])",
        rb"(?<![0-9])" + day + num_sep + month_num + num_sep + year + rb"(?![0-9])",
        rb"(?<![0-9])"
        + month_num
        + num_sep
        + day.replace(rb"(?:st|nd|rd|th|er|e|\.)?", b"")
        + num_sep
        + year
        + rb"(?![0-9])",
        rb"(?<![0-9])"
        + year4
        + num_sep
        + month
        + num_sep
        + rb"0?"
        + str(d).encode()
        + rb"(?![0-9])",
        month_name + rb"[ ,+]*" + year4 + rb"(?![0-9])",
    ]
    return b"|".join(alternatives)


@dataclass(frozen=True)
class FlexPatterns:
    """Patterns for IDs, phones and written dates; date patterns are compiled only when an
    output text holds one of the dates' years (most outputs hold none)."""

    ids: tuple[tuple[str, re.Pattern[bytes]], ...]
    any_id: re.Pattern[bytes] | None  # any of `ids`: one search per text in the common case
    years: re.Pattern[bytes] | None
    dates: tuple[tuple[str, tuple[str, ...]], ...]  # keyword -> DA values
    codecs: tuple[str, ...]

    def any_hit(self, data: bytes) -> bool:
        """Could `hits` find anything in `data` (an ID, or a year of one of the dates)?"""
        return any(p is not None and p.search(data) for p in (self.any_id, self.years))

    def hits(self, data: bytes) -> list[str]:
        found: list[str] = []
        if self.any_id is not None and self.any_id.search(data):
            found = [keyword for keyword, pattern in self.ids if pattern.search(data)]
        if self.years is not None and self.years.search(data):
            found += [
                keyword
                for keyword, values in self.dates
                if _date_patterns(values, self.codecs).search(data)
            ]
        return found


@functools.lru_cache(maxsize=256)
def flex_patterns(
    flex: tuple[tuple[str, tuple[tuple[str, str], ...]], ...], codecs: tuple[str, ...]
) -> FlexPatterns:
    ids: list[tuple[str, re.Pattern[bytes]]] = []
    dates: list[tuple[str, tuple[str, ...]]] = []
    years: set[bytes] = set()
    for keyword, values in flex:
        alternatives: set[bytes] = set()
        das: list[str] = []
        for kind, text in values:
            found = id_pattern(text) if kind == "id" else None
            found = phone_pattern(text) if kind == "phone" else found
            if found:
                alternatives.add(found)
            if kind == "date" and text[:8].isdigit() and len(text) >= 8:
                das.append(text[:8])
                years |= {re.escape(text[:4].encode()), rb"[-/.' ]" + text[2:4].encode()}
        if alternatives:
            body = b"|".join(b"(?:" + a + b")" for a in sorted(alternatives))
            ids.append((keyword, re.compile(body, re.IGNORECASE)))
        if das:
            dates.append((keyword, tuple(sorted(das))))
    year_pattern = (
        re.compile(rb"(?:" + b"|".join(sorted(years)) + rb")(?![0-9])") if years else None
    )
    any_id = (
        re.compile(b"|".join(b"(?:" + p.pattern + b")" for _, p in ids), re.IGNORECASE)
        if ids
        else None
    )
    return FlexPatterns(tuple(ids), any_id, year_pattern, tuple(dates), codecs)


@functools.lru_cache(maxsize=256)
def _date_patterns(values: tuple[str, ...], codecs: tuple[str, ...]) -> re.Pattern[bytes]:
    alternatives = {p for v in values for c in codecs if (p := date_pattern(v, c))}
    return re.compile(
        b"|".join(b"(?:" + a + b")" for a in sorted(alternatives)) or rb"(?!)", re.IGNORECASE
    )
