"""Extra synthetic datasets for de-identification tests (never real data)."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComprehensiveSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from tests.factories.dicom import FakePatient, SyntheticStudy, ct_slice

SECRET = b"0123456789abcdef0123456789abcdef-test-secret"
OTHER_SECRET = b"fedcba9876543210fedcba9876543210-other-secret"


def ct_dataset(patient: FakePatient | None = None, **kwargs: object) -> Dataset:
    """One CT slice in memory (no files)."""
    patient = patient or FakePatient()
    study_uid = str(kwargs.pop("study_uid", generate_uid()))
    return ct_slice(
        patient,
        study_uid=study_uid,
        series_uid=str(kwargs.pop("series_uid", generate_uid())),
        sop_uid=str(kwargs.pop("sop_uid", generate_uid())),
        accession=str(kwargs.pop("accession", "ACC2611040091")),
        index=int(kwargs.pop("index", 0)),  # type: ignore[call-overload]
        study_date=str(kwargs.pop("study_date", "20261104")),
    )


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def sr_referencing(study: SyntheticStudy, patient: FakePatient | None = None) -> Dataset:
    """A Comprehensive SR in the same study whose evidence and content reference a CT image."""
    patient = patient or study.patient
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = ComprehensiveSRStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20261104"
    ds.StudyTime = "101530"
    ds.ContentDate = "20261105"
    ds.ContentTime = "090000"
    ds.AccessionNumber = study.accession_number
    ds.Modality = "SR"
    ds.Manufacturer = "Synthetic Imaging Co"
    ds.ReferringPhysicianName = "Sancho^Panza"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "4711"
    ds.SeriesNumber = "99"
    ds.InstanceNumber = "1"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()

    ref_sop = Dataset()
    ref_sop.ReferencedSOPClassUID = CTImageStorage
    ref_sop.ReferencedSOPInstanceUID = study.sop_instance_uids[1]
    series = Dataset()
    series.SeriesInstanceUID = study.series_instance_uid
    series.ReferencedSOPSequence = Sequence([ref_sop])
    evidence = Dataset()
    evidence.StudyInstanceUID = study.study_instance_uid
    evidence.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    ds.ContinuityOfContent = "SEPARATE"
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    family, given = patient.name.split("^")[:2]
    text.TextValue = f"Patient {given} {family} ({patient.patient_id}) seen; call {patient.phone}"
    image = Dataset()
    image.RelationshipType = "CONTAINS"
    image.ValueType = "IMAGE"
    image_ref = Dataset()
    image_ref.ReferencedSOPClassUID = CTImageStorage
    image_ref.ReferencedSOPInstanceUID = study.sop_instance_uids[1]
    image.ReferencedSOPSequence = Sequence([image_ref])
    ds.ContentSequence = Sequence([text, image])
    return ds


SAFE_CREATOR = "SIEMENS MR HEADER"  # TCIA: (0019,"SIEMENS MR HEADER",0c) B Value -> k
UNSAFE_CREATOR = "SIEMENS CSA REPORT"  # TCIA: (0029,"SIEMENS CSA REPORT",08) -> d


def with_private_tags(ds: Dataset, leak: str = "") -> Dataset:
    """Add a TCIA-safe private element, an unsafe one and a private element holding `leak`."""
    ds.private_block(0x0019, SAFE_CREATOR, create=True).add_new(0x0C, "IS", "1000")
    ds.private_block(0x0029, UNSAFE_CREATOR, create=True).add_new(0x08, "CS", "REPORT")
    if leak:
        ds.private_block(0x0033, "ACME LEAKY 1.0", create=True).add_new(0x01, "LO", leak)
    return ds
