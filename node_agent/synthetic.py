"""A synthetic study to try the agent with (`hexchange-agent synth-study`): a fake patient,
generated UIDs, a pixel pattern; no real person's data. Installed with the package, so the
tutorial and a site's first test need nothing from the repository's tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}


@dataclass(frozen=True)
class SyntheticStudyFiles:
    study_uid: str
    files: list[Path]


def write_synthetic_study(
    out_dir: Path,
    *,
    instances: int = 5,
    modality: str = "CT",
    rows: int = 256,
    columns: int = 256,
) -> SyntheticStudyFiles:
    """Write one series of `instances` images (16-bit, `rows` x `columns`) into `out_dir`."""
    if modality not in _CLASSES:
        raise ValueError(f"modality must be one of {', '.join(sorted(_CLASSES))}")
    if instances < 1 or rows < 1 or columns < 1:
        raise ValueError("instances, rows and columns must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    files = []
    yy, xx = np.mgrid[0:rows, 0:columns]
    for index in range(instances):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _CLASSES[modality]
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = _CLASSES[modality]
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.PatientName = "SYNTHETIC^PATIENT"
        ds.PatientID = "SYNTH-0001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = "SYNTH0001"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.StudyDescription = "SYNTHETIC TEST STUDY"
        ds.SeriesNumber = "1"
        ds.InstanceNumber = str(index + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = ["0", "0", f"{5.0 * index:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.7", "0.7"]
        ds.SliceThickness = "5.0"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        pixels = ((xx * 13 + yy * 7 + index * 101) % 4096).astype(np.uint16)
        ds.PixelData = pixels.tobytes()
        path = out_dir / f"{index + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return SyntheticStudyFiles(study_uid, files)
