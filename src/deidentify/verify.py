"""Verify a de-identified dataset against its original, independently of `engine.apply`.

`verify` re-derives what must not survive from the original and the profile (the same
Table E.1-1 policy, but none of apply's code paths) and inspects the output:

* ``removed-attribute-present``: an attribute the profile removes (X) is present, at any depth,
  including private attributes that are not TCIA-safe under Retain Safe Private and curves.
* ``identifying-value-present``: an identifying value of the original (patient name in every PN
  form, IDs, accession, birth date, address, telephone, other IDs and names, institution and
  physician/operator names, device names - unless an option retains that attribute) occurs in
  the bytes of any element of the output, inside sequences too; pixel data is not scanned.
* ``uid-not-remapped``: an instance UID of the original occurs in the output (unless
  Retain UIDs).
* ``identity-not-marked``: Patient Identity Removed is not YES.

Findings name the attribute (tag, keyword) and its location (path) - never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deidentify.profile import (
    Action,
    Option,
    Profile,
    is_non_instance_uid_keyword,
    is_private_creator_tag,
    is_private_tag,
)

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_MIN_NEEDLE = 3

# keyword -> is it a person name (all PN forms are searched)
_IDENTIFYING: dict[str, bool] = {
    "PatientName": True,
    "OtherPatientNames": True,
    "PatientBirthName": True,
    "PatientMotherBirthName": True,
    "ResponsiblePerson": True,
    "ReferringPhysicianName": True,
    "PerformingPhysicianName": True,
    "NameOfPhysiciansReadingStudy": True,
    "PhysiciansOfRecord": True,
    "RequestingPhysician": True,
    "OperatorsName": True,
    "PatientID": False,
    "OtherPatientIDs": False,
    "AccessionNumber": False,
    "PatientBirthDate": False,
    "PatientAddress": False,
    "PatientTelephoneNumbers": False,
    "MedicalRecordLocator": False,
    "InstitutionName": False,
    "InstitutionAddress": False,
    "InstitutionalDepartmentName": False,
    "StationName": False,
    "DeviceSerialNumber": False,
}


@dataclass(frozen=True)
class Finding:
    code: str
    tag: str  # "(gggg,eeee)"
    keyword: str
    path: str  # e.g. "ContentSequence[0].TextValue"
    message: str


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _walk(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, DataElement, dict[int, str]]]:
    """(path, element, private creators of its dataset) for every element at every depth."""
    creators: dict[int, str] = {}
    for elem in ds:
        if is_private_creator_tag(int(elem.tag)):
            value = elem.value.decode("latin-1") if isinstance(elem.value, bytes) else elem.value
            creators[(int(elem.tag) >> 16 << 8) | (int(elem.tag) & 0xFF)] = str(value).strip()
    for elem in ds:
        name = elem.keyword or _tag_text(int(elem.tag))
        path = f"{prefix}{name}"
        yield path, elem, creators
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _walk(item, f"{path}[{i}].")


def _all_elements(ds: Dataset) -> Iterator[tuple[str, DataElement, dict[int, str]]]:
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, "file_meta.")
    yield from _walk(ds)


def _text_values(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v).strip() for v in items if str(v).strip()]


def _name_forms(value: str) -> set[str]:
    forms: set[str] = set()
    for group in value.split("="):
        parts = [p.strip() for p in group.split("^") if p.strip()]
        if not parts:
            continue
        forms.add(group.strip())
        forms.update(parts)
        if len(parts) >= 2:
            family, given = parts[0], parts[1]
            forms |= {f"{given} {family}", f"{family} {given}", f"{family}, {given}"}
            forms.add(" ".join(parts[1:] + parts[:1]))
    return forms


def _needles(original: Dataset, profile: Profile) -> dict[str, set[str]]:
    """keyword -> identifying values of the original that must not appear in the output."""
    found: dict[str, set[str]] = {}
    for path, elem, _ in _walk(original):
        keyword = elem.keyword
        if keyword not in _IDENTIFYING or elem.VR == "SQ":
            continue
        if profile.action_for(int(elem.tag), vr=elem.VR) is Action.K:
            continue  # retained by an option (e.g. institution identity)
        del path
        values: set[str] = set()
        for text in _text_values(elem):
            values |= _name_forms(text) if _IDENTIFYING[keyword] else {text}
        values = {v for v in values if len(v) >= _MIN_NEEDLE}
        if values:
            found.setdefault(keyword, set()).update(values)
    return found


def _element_bytes(elem: DataElement) -> bytes:
    value = elem.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return "\\".join(_text_values(elem)).encode("utf-8", "replace")


def _instance_uids(ds: Dataset) -> set[str]:
    uids: set[str] = set()
    for _, elem, _ in _all_elements(ds):
        if elem.VR != "UI" or is_non_instance_uid_keyword(elem.keyword or ""):
            continue
        if int(elem.tag) >> 16 == 0x0002 and elem.keyword != "MediaStorageSOPInstanceUID":
            continue
        uids.update(u for u in _text_values(elem) if not u.startswith("1.2.840.10008."))
    return uids


def verify(original: Dataset, output: Dataset, profile: Profile) -> list[Finding]:
    """Check `output` (the de-identified `original`) against `profile`; [] when clean."""
    findings: list[Finding] = []
    sop_class = str(original.get("SOPClassUID", "") or "") or None

    needles = _needles(original, profile)
    patterns = {
        keyword: re.compile(
            rb"(?<![0-9A-Za-z])(?:"
            + b"|".join(re.escape(v.encode("utf-8")) for v in sorted(values, key=len, reverse=True))
            + rb")(?![0-9A-Za-z])",
            re.IGNORECASE,
        )
        for keyword, values in needles.items()
    }
    old_uids = set() if profile.has(Option.RETAIN_UIDS) else _instance_uids(original)

    for path, elem, creators in _all_elements(output):
        tag = int(elem.tag)
        keyword = elem.keyword or keyword_for_tag(tag) or ""
        if tag & 0xFFFF and not is_private_creator_tag(tag):
            creator = (
                creators.get((tag >> 16 << 8) | ((tag >> 8) & 0xFF))
                if is_private_tag(tag)
                else None
            )
            action = profile.action_for(
                tag, vr=elem.VR, private_creator=creator, sop_class_uid=sop_class
            )
            if action is Action.X:
                findings.append(
                    Finding(
                        "removed-attribute-present",
                        _tag_text(tag),
                        keyword,
                        path,
                        f"{keyword or _tag_text(tag)} is removed by the profile but present",
                    )
                )
        if tag in _PIXEL_TAGS or elem.VR == "SQ":
            continue
        data = _element_bytes(elem)
        for source, pattern in patterns.items():
            if pattern.search(data):
                findings.append(
                    Finding(
                        "identifying-value-present",
                        _tag_text(tag),
                        keyword,
                        path,
                        f"{keyword or _tag_text(tag)} contains the original {source}",
                    )
                )
        if elem.VR == "UI" and old_uids and old_uids.intersection(_text_values(elem)):
            findings.append(
                Finding(
                    "uid-not-remapped",
                    _tag_text(tag),
                    keyword,
                    path,
                    f"{keyword or _tag_text(tag)} still holds a UID of the original",
                )
            )

    if str(output.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append(
            Finding(
                "identity-not-marked",
                "(0012,0062)",
                "PatientIdentityRemoved",
                "PatientIdentityRemoved",
                "PatientIdentityRemoved is not YES",
            )
        )
    return findings
