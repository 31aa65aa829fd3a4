"""Synthetic DICOM made in code: fake patients, real structure, never real data.

`make_ct_study` writes a multi-instance CT study whose header carries realistic identifying
attributes (name, ID, birth date, accession, institution, referring physician, dates), so
that de-identification and "no PHI leaves" checks have something to find.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)


@dataclass(frozen=True)
class FakePatient:
    name: str = "Quixote^Dulcinea^Maria"
    patient_id: str = "MRN-48213377"
    birth_date: str = "19580214"
    sex: str = "F"
    age: str = "067Y"
    address: str = "12 Windmill Lane, La Mancha"
    phone: str = "+1-555-0148-227"


@dataclass
class SyntheticStudy:
    patient: FakePatient
    study_instance_uid: str
    series_instance_uid: str
    accession_number: str
    sop_instance_uids: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def identifying_strings(self) -> list[str]:
        """Values that must never appear in plaintext outside the clinic."""
        family, given = self.patient.name.split("^")[:2]
        return [self.patient.name, family, given, self.patient.patient_id, self.accession_number]


def ct_slice(
    patient: FakePatient,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    accession: str,
    index: int,
    rows: int = 64,
    columns: int = 64,
    study_date: str = "20261104",
) -> Dataset:
    """One CT image instance with a deterministic, index-dependent pixel pattern."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = "101530"
    ds.SeriesTime = "101545"
    ds.AcquisitionTime = f"1016{index % 60:02d}"
    ds.ContentTime = f"1016{index % 60:02d}"
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.Manufacturer = "Synthetic Imaging Co"
    ds.InstitutionName = "Rural Clinic A"
    ds.InstitutionAddress = "1 Main Road, Smallville"
    ds.ReferringPhysicianName = "Sancho^Panza"
    ds.StationName = "CTSTATION01"
    ds.StudyDescription = "CT CHEST WITH CONTRAST"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.OperatorsName = "Rocinante^Tech"
    ds.ManufacturerModelName = "SynthCT 64"
    ds.DeviceSerialNumber = "SN-0042-77"
    ds.SoftwareVersions = "1.0"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = patient.age
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.OtherPatientIDs = "ALT-99120"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "5.0"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "4711"
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(index + 1)
    ds.FrameOfReferenceUID = generate_uid(
        prefix=None, entropy_srcs=[study_uid, "frame-of-reference"]
    )
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = ["-160.0", "-160.0", f"{-100.0 + 5.0 * index:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = f"{-100.0 + 5.0 * index:.1f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = generate_uid(prefix=None, entropy_srcs=[study_uid, "mpps"])
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([ref])
    yy, xx = np.mgrid[0:rows, 0:columns]
    pixels = ((xx * 13 + yy * 7 + index * 101) % 4096).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    return ds


def make_ct_study(
    out_dir: Path,
    *,
    instances: int = 3,
    patient: FakePatient | None = None,
    accession: str = "ACC2611040091",
    rows: int = 64,
    columns: int = 64,
    uid_prefix: str | None = None,
) -> SyntheticStudy:
    """Write a synthetic CT study (one series) into `out_dir`, one file per instance."""
    patient = patient or FakePatient()
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(prefix=uid_prefix)
    series_uid = generate_uid(prefix=uid_prefix)
    study = SyntheticStudy(patient, study_uid, series_uid, accession)
    for index in range(instances):
        sop_uid = generate_uid(prefix=uid_prefix)
        ds = ct_slice(
            patient,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            accession=accession,
            index=index,
            rows=rows,
            columns=columns,
        )
        path = out_dir / f"ct-{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        study.sop_instance_uids.append(sop_uid)
        study.files.append(path)
    return study


def today_da() -> str:
    return dt.date.today().strftime("%Y%m%d")


def pixel_bytes(paths: Sequence[Path]) -> dict[str, bytes]:
    """SOP Instance UID -> PixelData bytes, for byte-identical comparisons."""
    from pydicom import dcmread

    out: dict[str, bytes] = {}
    for path in paths:
        ds = dcmread(path)
        out[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
    return out


def random_ct_study(
    out_dir: Path,
    study_bytes: float,
    *,
    patient: FakePatient,
    accession: str,
    seed: int,
    size: int = 512,
    study_date: str = "20261104",
) -> tuple[str, list[Path]]:
    """A CT series of `size` x `size` 16-bit slices with random 12-bit pixels (nothing
    compresses), enough slices for about `study_bytes` of pixel data; (study UID, files)."""
    import math

    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = max(1, math.ceil(study_bytes / (size * size * 2)))
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for index in range(count):
        ds = ct_slice(
            patient,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=generate_uid(),
            accession=accession,
            index=index,
            rows=size,
            columns=size,
            study_date=study_date,
        )
        ds.PixelData = rng.integers(0, 4096, size=(size, size), dtype=np.uint16).tobytes()
        path = out_dir / f"ct-{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return study_uid, files
