"""Which attributes belong to the study and series levels of QIDO-RS answers (PS3.18 Table
10.6.1-5 and the Patient/Study/Series modules), and DICOM JSON without bulk data."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from hub.collections import dicom_json, raw_json
from hub.collections.sequences import SEQUENCES

STUDY_KEYWORDS = (
    "SpecificCharacterSet",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "StudyInstanceUID",
    "StudyID",
    "LongitudinalTemporalInformationModified",
    "ProcedureCodeSequence",
)
SERIES_KEYWORDS = (
    "SpecificCharacterSet",
    "Modality",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "Laterality",
    "ProtocolName",
    "SeriesInstanceUID",
    "SeriesNumber",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "RequestAttributesSequence",
)

_INDEXED = (*STUDY_KEYWORDS, *SERIES_KEYWORDS, *SEQUENCES)

BULK_THRESHOLD = 1024
BULK_MARK = "hexchange-bulk:"


def _bulk_mark(tag: int) -> str:
    return f"{BULK_MARK}{tag:08X}"


def json_without_bulk(ds: Dataset) -> dict[str, Any]:
    """The dataset as DICOM JSON (pydicom's `to_json_dict`, computed from the raw elements by
    `raw_json`); values of binary VRs longer than 1 KiB (pixel data) become BulkDataURI
    placeholders that the DICOMweb adapter turns into URLs."""
    return raw_json.dataset_json(ds, BULK_THRESHOLD, _bulk_mark)


@dataclass(frozen=True)
class InstanceJson:
    """An instance's DICOM JSON as the index needs it, made once (`store.read_and_check`) and
    kept until its batch is indexed: the whole as text (the instance row), and as a dict only
    the elements the study and series rows and the sequence index read. (Hundreds of whole
    dicts kept per batch made Python's garbage collector scan them again and again.)"""

    text: str
    indexed: dict[str, Any]


def instance_json(ds: Dataset) -> InstanceJson:
    attributes = json_without_bulk(ds)
    indexed = {tag: attributes[tag] for tag in _tags(_INDEXED) if tag in attributes}
    return InstanceJson(dicom_json.dumps(attributes).decode(), indexed)


def subset(attributes: dict[str, Any], keywords: tuple[str, ...]) -> str:
    """The elements of `keywords` (in that order) of an instance's DICOM JSON, as JSON text:
    what a data set of just those elements gives."""
    part = {tag: attributes[tag] for tag in _tags(keywords) if tag in attributes}
    return dicom_json.dumps(part).decode()


@functools.cache
def _tags(keywords: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{Tag(keyword):08X}" for keyword in keywords)
