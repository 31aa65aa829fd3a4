"""Which attributes belong to the study and series levels of QIDO-RS answers (PS3.18 Table
10.6.1-5 and the Patient/Study/Series modules), and DICOM JSON without bulk data."""

from __future__ import annotations

import functools
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from hub.collections import dicom_json, raw_json

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

BULK_THRESHOLD = 1024
BULK_MARK = "hexchange-bulk:"


def _bulk_mark(tag: int) -> str:
    return f"{BULK_MARK}{tag:08X}"


def json_without_bulk(ds: Dataset) -> dict[str, Any]:
    """The dataset as DICOM JSON (pydicom's `to_json_dict`, computed from the raw elements by
    `raw_json`); values of binary VRs longer than 1 KiB (pixel data) become BulkDataURI
    placeholders that the DICOMweb adapter turns into URLs."""
    return raw_json.dataset_json(ds, BULK_THRESHOLD, _bulk_mark)


def subset(attributes: dict[str, Any], keywords: tuple[str, ...]) -> str:
    """The elements of `keywords` (in that order) of an instance's DICOM JSON, as JSON text:
    what a data set of just those elements gives."""
    part = {tag: attributes[tag] for tag in _tags(keywords) if tag in attributes}
    return dicom_json.dumps(part).decode()


@functools.cache
def _tags(keywords: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{Tag(keyword):08X}" for keyword in keywords)
