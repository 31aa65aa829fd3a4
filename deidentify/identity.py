"""The identifying values a study's own headers carry, collected once for every instance.

`StudyIdentity` holds raw values only, by kind (person names, IDs, dates, addresses, phone
numbers, other text): every PN attribute at any depth of every instance given (patient, family,
staff: referring, reading and performing physicians, operators, observers, content-item person
names), the patient's IDs, accession numbers, address and telephone numbers, and the patient's
and study's dates. It holds no matching code: the engine (`clean.Scrubber`) and the verifier
(`verify`) each derive the written forms they search for in their own way.

A caller that sees the whole study before sending it (the node agent) collects it once:

    identity = StudyIdentity.collect(headers)       # every instance's dataset (no pixels needed)
    identity = StudyIdentity.from_files(paths)      # the same, reading the study's files
    result = apply(ds, profile, keys, identity=identity)
    findings = verify(ds, result.dataset, profile, identity=identity)

Without it, each instance's own headers are used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from deidentify.vrs import element_vr

# Text attributes (non-PN) whose values identify the patient, a visit or a carer.
ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "MedicalRecordLocator",
        "IssuerOfPatientID",
        "StudyID",
        "AdmissionID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "RequestedProcedureID",
        "PerformedProcedureStepID",
        "ScheduledProcedureStepID",
        "DeviceSerialNumber",
    }
)
ADDRESS_KEYWORDS = frozenset(
    {"PatientAddress", "InstitutionAddress", "RegionOfResidence", "ResponsiblePerson"}
)
PHONE_KEYWORDS = frozenset({"PatientTelephoneNumbers", "PersonTelephoneNumbers"})
DATE_KEYWORDS = frozenset(
    {
        "PatientBirthDate",
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "InstanceCreationDate",
        "PerformedProcedureStepStartDate",
        "AdmittingDate",
    }
)
OTHER_KEYWORDS = frozenset(
    {
        "InstitutionName",
        "InstitutionalDepartmentName",
        "StationName",
        "CountryOfResidence",
    }
)
_MAX_DEPTH = 16


@dataclass(frozen=True)
class StudyIdentity:
    """Raw identifying values of a study, by kind; hashable (used as a cache key)."""

    names: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()  # DICOM DA (YYYYMMDD)
    addresses: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    other: frozenset[str] = frozenset()
    # keyword -> values, for keeping a value the profile retains out of the search
    by_keyword: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def collect(cls, datasets: Iterable[Dataset]) -> StudyIdentity:
        """The identity of every dataset given (any depth of every sequence)."""
        return cls.from_values(v for ds in datasets for v in _text_values(ds, 0))

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> StudyIdentity:
        """The identity of every readable DICOM file given (headers only, Pixel Data is not
        read); unreadable files are skipped: de-identifying them fails on its own, with the
        reason."""
        datasets: list[Dataset] = []
        for path in paths:
            try:
                datasets.append(dcmread(path, stop_before_pixels=True))
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
                continue
        return cls.collect(datasets)

    @classmethod
    def from_values(cls, values: Iterable[tuple[str, str, str]]) -> StudyIdentity:
        """The identity of (keyword, VR, value) triples (other attributes are ignored)."""
        found: dict[str, set[str]] = {k: set() for k in _KINDS}
        pairs: set[tuple[str, str]] = set()
        for keyword, vr, value in values:
            kind = kind_of(keyword, vr)
            if kind is not None:
                if kind == "dates":
                    value = value[:8]
                found[kind].add(value)
                pairs.add((keyword, value))
        return cls(**{k: frozenset(v) for k, v in found.items()}, by_keyword=frozenset(pairs))

    def merge(self, other: StudyIdentity) -> StudyIdentity:
        return StudyIdentity(
            names=self.names | other.names,
            ids=self.ids | other.ids,
            dates=self.dates | other.dates,
            addresses=self.addresses | other.addresses,
            phones=self.phones | other.phones,
            other=self.other | other.other,
            by_keyword=self.by_keyword | other.by_keyword,
        )

    def without(self, keywords: Iterable[str]) -> StudyIdentity:
        """This identity without the values only `keywords` carry (attributes a profile keeps,
        e.g. Institution Name under Retain Institution Identity)."""
        drop = frozenset(keywords)
        if not drop:
            return self
        kept = {value for keyword, value in self.by_keyword if keyword not in drop}
        removed = {value for keyword, value in self.by_keyword if keyword in drop} - kept
        if not removed:
            return self
        return StudyIdentity(
            names=self.names - removed,
            ids=self.ids - removed,
            dates=self.dates - removed,
            addresses=self.addresses - removed,
            phones=self.phones - removed,
            other=self.other - removed,
            by_keyword=frozenset(p for p in self.by_keyword if p[0] not in drop),
        )


_KINDS = ("names", "ids", "dates", "addresses", "phones", "other")


def kind_of(keyword: str, vr: str) -> str | None:
    """The kind of identifying value an attribute holds (a `StudyIdentity` field), or None."""
    if vr == "PN":
        return "names"
    if keyword in ID_KEYWORDS:
        return "ids"
    if keyword in DATE_KEYWORDS and vr in ("DA", "DT"):
        return "dates"
    if keyword in ADDRESS_KEYWORDS:
        return "addresses"
    if keyword in PHONE_KEYWORDS:
        return "phones"
    if keyword in OTHER_KEYWORDS:
        return "other"
    return None


_WANTED_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "DA", "DT", "CS"})


def _text_values(ds: Dataset, depth: int) -> Iterator[tuple[str, str, str]]:
    """(keyword, VR, value) of the identity-bearing elements at every depth."""
    if depth > _MAX_DEPTH:
        return
    for tag in list(ds.keys()):
        if (tag >> 16) % 2:
            continue  # private: no dictionary keyword to know what it holds
        vr = element_vr(ds.get_item(tag, keep_deferred=True))
        if vr == "SQ":
            for item in ds[tag].value or []:
                yield from _text_values(item, depth + 1)
            continue
        if vr not in _WANTED_VRS:
            continue
        keyword = keyword_for_tag(tag) or ""
        if vr != "PN" and kind_of(keyword, vr) is None:
            continue
        value = ds[tag].value
        items: Iterable[object] = value if isinstance(value, MultiValue | list | tuple) else [value]
        for item in items:
            text = str(item if item is not None else "").strip()
            if text:
                yield keyword, vr, text
