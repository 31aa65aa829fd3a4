"""What sharing rules match on, read from the study's own headers at the site.

For each instance the agent reads a handful of header attributes (never Pixel Data): SOP Class,
Modality, Body Part Examined, Station Name, Study Description and Patient's Age (or, without
it, the age from Patient's Birth Date at the Study Date). Facts are kept per study and grow as
instances arrive; only instances not read before are opened. The calling AE titles come from
the receive path. The full facts stay at the site; the manifest carries
`StudyFacts.without_identity()` only.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from wire.facts import StudyFacts

log = structlog.get_logger("hexchange.agent.facts")

_TAGS = [
    "SOPClassUID",
    "Modality",
    "BodyPartExamined",
    "StationName",
    "StudyDescription",
    "PatientAge",
    "PatientBirthDate",
    "StudyDate",
]
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,16}$")
MAX_STUDIES = 2048


def age_in_years(age: str | None, birth: str | None, study: str | None) -> int | None:
    """DICOM AS ("045Y", "006M") or, failing that, birth date to study date, in whole years."""
    if age:
        match = _AGE.match(age.strip())
        if match:
            value, unit = int(match.group(1)), match.group(2)
            return {"Y": value, "M": value // 12, "W": value // 52, "D": value // 365}[unit]
    try:
        born = dt.datetime.strptime((birth or "").strip()[:8], "%Y%m%d").date()
        seen = dt.datetime.strptime((study or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return years if 0 <= years <= 150 else None


@dataclass
class _Accumulated:
    seen: set[str] = field(default_factory=set)
    modalities: set[str] = field(default_factory=set)
    sop_classes: set[str] = field(default_factory=set)
    body_parts: set[str] = field(default_factory=set)
    stations: set[str] = field(default_factory=set)
    calling_aes: set[str] = field(default_factory=set)
    description: str | None = None
    age: int | None = None

    def add(self, path: Path) -> None:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, ValueError) as exc:
            log.warning("header unreadable for policy facts", error=type(exc).__name__)
            return
        uid = str(ds.get("SOPClassUID", "") or "")
        if uid and len(uid) <= 64:
            self.sop_classes.add(uid)
        for attr, bucket in (("Modality", self.modalities), ("BodyPartExamined", self.body_parts)):
            value = str(ds.get(attr, "") or "").strip().upper()
            if _CS.match(value):
                bucket.add(value)
        station = str(ds.get("StationName", "") or "").strip()
        if _PRINTABLE.match(station):
            self.stations.add(station)
        if self.description is None and ds.get("StudyDescription"):
            self.description = str(ds.StudyDescription)[:256]
        if self.age is None:
            self.age = age_in_years(
                str(ds.get("PatientAge", "") or ""),
                str(ds.get("PatientBirthDate", "") or ""),
                str(ds.get("StudyDate", "") or ""),
            )

    def facts(self) -> StudyFacts:
        return StudyFacts(
            modalities=sorted(self.modalities)[:64],
            sop_classes=sorted(self.sop_classes)[:64],
            body_parts=sorted(self.body_parts)[:64],
            calling_aes=sorted(self.calling_aes)[:64],
            station_names=sorted(self.stations)[:64],
            patient_age_years=self.age,
            study_description=self.description,
        )


class StudyFactsCache:
    """Facts per study, read incrementally; bounded to the most recent studies."""

    def __init__(self) -> None:
        self._studies: OrderedDict[str, _Accumulated] = OrderedDict()
        self._lock = threading.Lock()

    def facts(
        self,
        study_uid: str,
        instances: Iterable[tuple[str, Path]],
        calling_aes: Iterable[str] = (),
    ) -> StudyFacts:
        """`instances`: (SOP Instance UID, spool path) of the study, as known now."""
        with self._lock:
            acc = self._studies.pop(study_uid, None) or _Accumulated()
            self._studies[study_uid] = acc
            while len(self._studies) > MAX_STUDIES:
                self._studies.popitem(last=False)
            for sop_uid, path in instances:
                if sop_uid not in acc.seen:
                    acc.add(path)
                    acc.seen.add(sop_uid)
            acc.calling_aes.update(ae.strip() for ae in calling_aes if _PRINTABLE.match(ae.strip()))
            return acc.facts()
