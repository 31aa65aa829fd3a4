"""Cleaning text: the study's identifying values and PHI-like patterns become ``***``.

`Scrubber.scrub_identity` runs on every kept text value; `Scrubber.scrub` (free text: Clean
Descriptors, Clean Structured Content, text inside sequences whose basic action is D such as
Content Sequence) also replaces every date, phone number, e-mail address, URL with an
identifier, street address and MRN-like number. The forms searched are in `textforms`.

`identifying_values`, `person_name_forms` and `date_forms` (literal forms of one instance's
values) are what the pixel scrubber's OCR matching uses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deidentify.identity import StudyIdentity
from deidentify.textforms import (
    ADDRESS,
    EMAIL,
    URL,
    Candidate,
    DateHit,
    Fragment,
    compile_alternation,
    date_candidate,
    find_dates,
    id_patterns,
    name_patterns,
    phone_patterns,
    phone_spans,
    text_patterns,
    url_has_identifier,
)

REDACTED = "***"

# Attributes whose values identify the patient, their family or their carers.
_PN_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "ResponsiblePerson",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "PhysiciansOfRecord",
    "RequestingPhysician",
)
_TEXT_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
    "StudyID",
    "MedicalRecordLocator",
    "RegionOfResidence",
    "CountryOfResidence",
)
_DATE_KEYWORDS = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")

_PHONE = re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[ \-./]?\(?\d{2,5}\)?){2,5}(?![\w.])")
_MRN = re.compile(r"(?<!\w)[A-Za-z]{0,4}[-#]?\d{6,}(?!\w)")
_PHONE_MIN_DIGITS = 7

# Coded entries are vocabulary, not free text: never cleaned.
CODE_KEYWORDS = frozenset(
    {
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ContextIdentifier",
        "ContextGroupVersion",
        "MappingResource",
        "MappingResourceName",
        "TemplateIdentifier",
        "ValueType",
        "RelationshipType",
        "ContinuityOfContent",
    }
)


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    return REDACTED if digits >= _PHONE_MIN_DIGITS else match.group(0)


MIN_NEEDLE = 3


def person_name_forms(value: str) -> list[str]:
    """Every common written form of a DICOM PN value: full, components, "Given Family", ..."""
    forms: list[str] = []
    for group in value.split("="):  # alphabetic, ideographic, phonetic
        if not group:
            continue
        parts = [p.strip() for p in group.split("^")]
        family = parts[0] if parts else ""
        given = parts[1] if len(parts) > 1 else ""
        middle = parts[2] if len(parts) > 2 else ""
        forms.append(group)
        forms.extend(p for p in parts if p)
        if family and given:
            forms += [f"{given} {family}", f"{family}, {given}", f"{family} {given}"]
            forms.append(f"{family}^{given}")
            if middle:
                forms += [f"{given} {middle} {family}", f"{family}, {given} {middle}"]
    return forms


def date_forms(value: str) -> list[str]:
    """A DA value in common written formats."""
    v = value.strip()
    if len(v) != 8 or not v.isdigit():
        return [v] if v else []
    y, m, d = v[:4], v[4:6], v[6:8]
    return [v, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{y}/{m}/{d}"]


def _values(ds: Dataset, keyword: str) -> Iterator[str]:
    if keyword not in ds:
        return
    value = ds.data_element(keyword)
    if value is None or value.value is None:
        return
    raw = value.value
    items: Iterable[object] = raw if isinstance(raw, MultiValue | list | tuple) else [raw]
    for item in items:
        text = str(item).strip()
        if text:
            yield text


def identifying_values(ds: Dataset, *, include_dates: bool = True) -> list[str]:
    """The instance's own identifying values (top level and Other Patient IDs Sequence)."""
    found: set[str] = set()
    for keyword in _PN_KEYWORDS:
        for value in _values(ds, keyword):
            found.update(person_name_forms(value))
    for keyword in _TEXT_KEYWORDS:
        found.update(_values(ds, keyword))
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        found.update(_values(item, "PatientID"))
    if include_dates:
        for keyword in _DATE_KEYWORDS:
            for value in _values(ds, keyword):
                found.update(date_forms(value))
    return sorted((v for v in found if len(v) >= MIN_NEEDLE), key=lambda v: (-len(v), v))


@dataclass(frozen=True)
class Scrubber:
    """Replaces identifying values and PHI-like patterns in text.

    Two depths:

    * `scrub_identity` (every kept text attribute, code meanings and manufacturer included):
      the study's identifying values in every written form (`textforms`) and the study's dates
      written in any form, and nothing else - vocabulary and numbers stay as they are;
    * `scrub` (free text under Clean Descriptors / Structured Content, text in D sequences):
      the above, every date, e-mail address, URL with an identifier, street address, phone
      number and MRN/accession-like number.
    """

    pattern: re.Pattern[str] | None
    dates: frozenset[Candidate] = frozenset()
    # the identifying dates' years (4 digits, or 2 after a separator): dates are looked for
    # only in text that holds one
    years: re.Pattern[str] | None = None

    @classmethod
    def for_values(cls, values: Iterable[str]) -> Scrubber:
        needles = sorted({v for v in values if len(v) >= MIN_NEEDLE}, key=lambda v: (-len(v), v))
        if not needles:
            return cls(None)
        alternation = "|".join(re.escape(n) for n in needles)
        return cls(re.compile(rf"(?<![0-9A-Za-z])(?:{alternation})(?![0-9A-Za-z])", re.IGNORECASE))

    @classmethod
    def for_identity(cls, identity: StudyIdentity) -> Scrubber:
        """The scrubber for a study's identity (memoised: every instance of a study shares it)."""
        return _scrubber_for(identity)

    def has_identity(self, text: str) -> bool:
        """Would `scrub_identity` change `text`?"""
        if self.pattern is not None and self.pattern.search(text):
            return True
        if self.years is None or not self.years.search(text):
            return False
        return any(self._identifying(h) for h in find_dates(text))

    def scrub_identity(self, text: str) -> str:
        if self.pattern is not None:
            text = self.pattern.sub(REDACTED, text)
        if self.years is not None and self.years.search(text):
            hits = [(h.start, h.end) for h in find_dates(text) if self._identifying(h)]
            text = _replace(text, hits)
        return text

    def scrub(self, text: str) -> str:
        text = self.scrub_identity(text)
        text = _replace(text, [(h.start, h.end) for h in find_dates(text)])
        text = EMAIL.sub(REDACTED, text)
        text = URL.sub(lambda m: REDACTED if url_has_identifier(m.group(0)) else m.group(0), text)
        text = ADDRESS.sub(REDACTED, text)
        text = _replace(text, phone_spans(text))
        text = _PHONE.sub(_phone, text)
        return _MRN.sub(REDACTED, text)

    def _identifying(self, hit: DateHit) -> bool:
        for y, m, d in hit.candidates:
            if d is None:
                if any(y == y2 and m == m2 for y2, m2, _ in self.dates):
                    return True
            elif (y, m, d) in self.dates:
                return True
        return False


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    out: list[str] = []
    at = 0
    for start, end in sorted(spans):
        if start < at:
            continue
        out += [text[at:start], REDACTED]
        at = end
    out.append(text[at:])
    return "".join(out)


def nothing_useful(text: str) -> bool:
    """True when a cleaned value holds nothing but tokens, punctuation and spaces."""
    return not any(c.isalnum() for c in text.replace(REDACTED, ""))


@functools.lru_cache(maxsize=64)
def _scrubber_for(identity: StudyIdentity) -> Scrubber:
    fragments: set[Fragment] = set()
    for name in identity.names:
        fragments |= name_patterns(name)
    for value in identity.ids:
        fragments |= id_patterns(value)
    for value in identity.phones:
        fragments |= phone_patterns(value)
    for value in identity.addresses | identity.other:
        fragments |= text_patterns(value)
    dates = frozenset(c for c in (date_candidate(d) for d in identity.dates) if c is not None)
    years = {str(y) for y, _, _ in dates} | {f"[-/.' ]{y % 100:02d}" for y, _, _ in dates}
    year_pattern = re.compile(rf"(?:{'|'.join(sorted(years))})(?!\d)") if dates else None
    return Scrubber(compile_alternation(fragments), dates, year_pattern)
