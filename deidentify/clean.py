"""Clean (C) for free text: remove the instance's own identifying values and PHI-like patterns.

Used by Clean Descriptors, Clean Structured Content and for text inside sequences whose
basic action is D (e.g. Content Sequence): the text is kept, but every occurrence of a value
that identifies the patient (names in every PN form, IDs, accession, birth date and study dates
in common formats, addresses, phone numbers, the institution and physicians) and every phone
number, e-mail address or MRN-like number is replaced by ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

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

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
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
    """Replaces identifying values and PHI-like patterns in free text."""

    pattern: re.Pattern[str] | None

    @classmethod
    def for_values(cls, values: Iterable[str]) -> Scrubber:
        needles = sorted({v for v in values if len(v) >= MIN_NEEDLE}, key=lambda v: (-len(v), v))
        if not needles:
            return cls(None)
        alternation = "|".join(re.escape(n) for n in needles)
        return cls(re.compile(rf"(?<![0-9A-Za-z])(?:{alternation})(?![0-9A-Za-z])", re.IGNORECASE))

    def scrub(self, text: str) -> str:
        if self.pattern is not None:
            text = self.pattern.sub(REDACTED, text)
        text = _EMAIL.sub(REDACTED, text)
        text = _PHONE.sub(_phone, text)
        return _MRN.sub(REDACTED, text)
