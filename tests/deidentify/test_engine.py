from __future__ import annotations

import copy
import datetime as dt
import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from deidentify.engine import DeidResult, PseudonymKeys, apply
from deidentify.profile import Option, Profile
from tests.deidentify.factories import (
    OTHER_SECRET,
    SAFE_CREATOR,
    SECRET,
    UNSAFE_CREATOR,
    ct_dataset,
    sr_referencing,
    with_private_tags,
)
from tests.factories.dicom import FakePatient, make_ct_study

BASIC = Profile.basic()


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _deid_file(path: Path, profile: Profile, keys: PseudonymKeys) -> DeidResult:
    return apply(dcmread(path), profile, keys)


def test_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PseudonymKeys(b"short")
    assert "0123" not in repr(PseudonymKeys(SECRET))


def test_basic_profile_removes_identity(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=2)
    result = _deid_file(study.files[0], BASIC, keys)
    out = result.dataset
    for keyword in (
        "PatientAddress",
        "PatientTelephoneNumbers",
        "OtherPatientIDs",
        "InstitutionAddress",
        "StudyDescription",
        "SeriesDescription",
        "PatientAge",
    ):
        assert keyword not in out, keyword
    assert out.PatientBirthDate == ""
    assert out.ReferringPhysicianName == ""
    assert "InstitutionName" not in out  # X/Z/D, Type 3 in the CT Image IOD
    assert out.PatientID != study.patient.patient_id and out.PatientID
    assert out.PatientName == out.PatientID  # documented: name = patient pseudonym
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert result.changes["X"] > 0 and result.changes["U"] > 0

    data = _bytes(out)
    patient = study.patient
    leaks = [
        *study.identifying_strings,
        patient.birth_date,
        patient.address,
        patient.phone,
        "ALT-99120",
        "Rural Clinic A",
        "Sancho",
        "Panza",
        "Rocinante",
        "CTSTATION01",
        "SN-0042-77",
        "Smallville",
        "Windmill",
    ]
    for value in leaks:
        assert value.encode() not in data, value
        assert value.upper().encode() not in data.upper(), value
    for uid in (study.study_instance_uid, study.series_instance_uid, *study.sop_instance_uids):
        assert uid.encode() not in data


def test_output_is_readable_dicom(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=1)
    out = _deid_file(study.files[0], BASIC, keys).dataset
    again = dcmread(io.BytesIO(_bytes(out)))
    assert again.SOPInstanceUID == out.SOPInstanceUID
    assert again.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_keyed_uids_deterministic_and_key_dependent(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=1)
    ds = dcmread(study.files[0])
    a = apply(ds, BASIC, keys).dataset
    b = apply(ds, BASIC, PseudonymKeys(SECRET)).dataset
    c = apply(ds, BASIC, PseudonymKeys(OTHER_SECRET)).dataset
    for keyword in (
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
    ):
        assert a[keyword].value == b[keyword].value
        assert a[keyword].value != c[keyword].value
        assert a[keyword].value != ds[keyword].value
        assert str(a[keyword].value).startswith("2.25.")
        assert len(str(a[keyword].value)) <= 64
    assert a.PatientID == b.PatientID != c.PatientID
    assert a.SOPClassUID == CTImageStorage
    assert a.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert a.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    # X/Z/D and Type 3 in the CT Image IOD: removed (nested references: see the SR test)
    assert "ReferencedPerformedProcedureStepSequence" not in a


def test_nested_references_remapped_consistently(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=3)
    cts = [apply(dcmread(f), BASIC, keys).dataset for f in study.files]
    sr = apply(sr_referencing(study), BASIC, keys).dataset
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == cts[1].StudyInstanceUID == sr.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == cts[1].SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == cts[1].SOPInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPClassUID == CTImageStorage
    image = sr.ContentSequence[1]
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == cts[1].SOPInstanceUID
    assert sr.file_meta.MediaStorageSOPInstanceUID == sr.SOPInstanceUID
    # free text inside the (D) Content Sequence is cleaned of the patient's identity
    text = str(sr.ContentSequence[0].TextValue)
    for value in ("Quixote", "Dulcinea", "MRN-48213377", "555"):
        assert value not in text
    assert "seen" in text


def test_private_tags_dropped_by_default(keys: PseudonymKeys) -> None:
    ds = with_private_tags(ct_dataset())
    out = apply(ds, BASIC, keys).dataset
    assert not any(elem.tag.is_private for elem in out)


def test_retain_safe_private_keeps_tcia_k_tag(keys: PseudonymKeys) -> None:
    ds = with_private_tags(ct_dataset(), leak="Quixote^Dulcinea")
    out = apply(ds, Profile.from_names(["retain-safe-private"]), keys).dataset
    kept = out.private_block(0x0019, SAFE_CREATOR)
    assert kept[0x0C].value == 1000
    with pytest.raises(KeyError):
        out.private_block(0x0029, UNSAFE_CREATOR)
    with pytest.raises(KeyError):
        out.private_block(0x0033, "ACME LEAKY 1.0")
    assert b"Quixote" not in _bytes(out)
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113111"}


def test_modified_dates_keep_intervals(keys: PseudonymKeys) -> None:
    profile = Profile.from_names(["retain-long-modified-dates"])
    first = apply(ct_dataset(study_date="20200110"), profile, keys).dataset
    second = apply(ct_dataset(study_date="20230301"), profile, keys).dataset
    other = apply(
        ct_dataset(FakePatient(patient_id="OTHER-1"), study_date="20200110"), profile, keys
    ).dataset

    def day(value: str) -> dt.date:
        return dt.datetime.strptime(value, "%Y%m%d").date()

    assert first.StudyDate != "20200110"
    assert (day(second.StudyDate) - day(first.StudyDate)).days == (
        dt.date(2023, 3, 1) - dt.date(2020, 1, 10)
    ).days
    assert 365 <= (dt.date(2020, 1, 10) - day(first.StudyDate)).days <= 3652
    assert first.SeriesDate == first.StudyDate == first.ContentDate == first.AcquisitionDate
    assert first.StudyTime == "101530"  # whole-day shifts keep times
    assert other.StudyDate != first.StudyDate  # per-patient offset
    assert first.PatientBirthDate == ""  # birth date is not a longitudinal date
    assert first.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {item.CodeValue for item in first.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107"}


def test_modified_dates_shift_dt_consistently(keys: PseudonymKeys) -> None:
    profile = Profile.from_names(["retain-long-modified-dates"])
    ds = ct_dataset(study_date="20200110")
    ds.AcquisitionDateTime = "20200110101600.5+0100"
    out = apply(ds, profile, keys).dataset
    assert out.AcquisitionDateTime == f"{out.AcquisitionDate}101600.5+0100"


def test_full_dates_retained(keys: PseudonymKeys) -> None:
    out = apply(
        ct_dataset(study_date="20200110"), Profile.from_names(["retain-long-full-dates"]), keys
    ).dataset
    assert out.StudyDate == "20200110"
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_dates_without_option_are_dummy_or_empty(keys: PseudonymKeys) -> None:
    out = apply(ct_dataset(study_date="20200110"), BASIC, keys).dataset
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        assert keyword not in out or out[keyword].value in ("", "19000101")
    assert "SeriesDate" not in out and "AcquisitionDate" not in out  # X/D, X/Z: Type 3 in CT
    assert out.ContentDate == ""  # Z/D: Type 2C in CT


@pytest.mark.parametrize(
    ("age", "expected"),
    [("095Y", "090Y"), ("089Y", "089Y"), ("067Y", "067Y"), ("120Y", "090Y"), ("999M", "999M")],
)
def test_age_cap_with_patient_characteristics(keys: PseudonymKeys, age: str, expected: str) -> None:
    ds = ct_dataset()
    ds.PatientAge = age
    out = apply(ds, Profile.from_names(["retain-patient-characteristics"]), keys).dataset
    assert out.PatientAge == expected
    assert out.PatientSex == "F"


def test_age_removed_by_basic(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    ds.PatientAge = "095Y"
    assert "PatientAge" not in apply(ds, BASIC, keys).dataset


def test_pixel_data_identical_and_input_unchanged(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=1)
    ds = dcmread(study.files[0])
    before = copy.deepcopy(ds)
    out = apply(ds, Profile.from_names(["retain-safe-private", "clean-descriptors"]), keys).dataset
    assert out.PixelData == ds.PixelData
    assert dcmread(io.BytesIO(_bytes(out))).PixelData == before.PixelData
    assert ds == before
    assert ds.file_meta == before.file_meta
    assert ds.PatientName == study.patient.name


def test_overlay_group_removed_whole_and_curves_removed(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    ds.add_new(0x60000010, "US", 64)
    ds.add_new(0x60000011, "US", 64)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\x00" * 512)
    ds.add_new(0x50000005, "US", 2)
    out = apply(ds, BASIC, keys).dataset
    assert not any(0x5000 <= elem.tag.group <= 0x60FF for elem in out)
    graphics = apply(ds, Profile.from_names(["clean-graphics"]), keys)
    assert not any(0x6000 <= elem.tag.group <= 0x60FF for elem in graphics.dataset)
    assert any("overlay" in note for note in graphics.notes)


def test_clean_descriptors_scrubs_identity(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    ds.StudyDescription = "CT CHEST for Dulcinea Quixote MRN-48213377"
    out = apply(ds, Profile.from_names(["clean-descriptors"]), keys)
    text = str(out.dataset.StudyDescription)
    assert "CT CHEST" in text and "Quixote" not in text and "48213377" not in text
    assert out.dataset.SeriesDescription == "AXIAL 5MM"
    assert out.changes["C"] >= 1


def test_options_codes_and_method(keys: PseudonymKeys) -> None:
    unsupported = {Option.RETAIN_LONG_FULL_DATES, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES}
    profile = Profile.from_names([o.value for o in Option if o not in unsupported])
    result = apply(ct_dataset(), profile, keys)
    codes = [item.CodeValue for item in result.dataset.DeidentificationMethodCodeSequence]
    assert codes == ["113100", *[f"1131{n:02d}" for n in range(1, 13) if n not in (2, 6)]]
    assert all(
        item.CodingSchemeDesignator == "DCM"
        for item in result.dataset.DeidentificationMethodCodeSequence
    )
    assert any("pixel" in note for note in result.notes)


def test_notes_and_changes_hold_no_values(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    ds.PatientAge = "097Y"
    result = apply(
        ds, Profile.from_names(["retain-patient-characteristics", "clean-graphics"]), keys
    )
    blob = repr(result.notes) + repr(result.changes)
    for value in ("Quixote", "MRN-48213377", "097Y", "19580214"):
        assert value not in blob


def test_structured_content_codes_untouched(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=2)
    sr = apply(
        sr_referencing(study), Profile.from_names(["clean-structured-content"]), keys
    ).dataset
    assert sr.ContentSequence[0].ConceptNameCodeSequence[0].CodeValue == "121071"
    assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert sr.ContentSequence[0].ValueType == "TEXT"


def test_scrubber_patterns() -> None:
    from deidentify.clean import Scrubber

    s = Scrubber.for_values(["Quixote"])
    assert s.scrub("mail a.b@example.org now") == "mail *** now"
    assert s.scrub("call +1 (555) 014-8227 or 5550148") == "call *** or ***"
    assert s.scrub("WINDOW 40 400 slice 1.25 kVp 120") == "WINDOW 40 400 slice 1.25 kVp 120"
    assert s.scrub("QUIXOTE's scan, MRN 00482133") == "***'s scan, MRN ***"


def test_key_file_formats_agree() -> None:
    raw = PseudonymKeys.from_key_file_bytes(SECRET + b"\n")
    hexed = PseudonymKeys.from_key_file_bytes(SECRET.hex().encode() + b"\n")
    assert raw.secret == hexed.secret == SECRET
    with pytest.raises(ValueError, match="32 bytes"):
        PseudonymKeys.from_key_file_bytes(b"  short \n")
