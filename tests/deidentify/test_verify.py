from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from deidentify.engine import PseudonymKeys, apply
from deidentify.profile import Profile
from deidentify.verify import Finding, verify
from tests.deidentify.factories import ct_dataset, sr_referencing, with_private_tags
from tests.factories.dicom import make_ct_study

BASIC = Profile.basic()
SECRET_VALUES = ("Quixote", "Dulcinea", "MRN-48213377", "ACC2611040091", "19580214")


def _no_values(findings: list[Finding]) -> None:
    for finding in findings:
        text = repr(finding)
        for value in SECRET_VALUES:
            assert value not in text


def test_clean_output_passes(tmp_path: Path, keys: PseudonymKeys) -> None:
    study = make_ct_study(tmp_path, instances=2)
    for path in study.files:
        ds = dcmread(path)
        assert verify(ds, apply(ds, BASIC, keys).dataset, BASIC) == []
    sr = sr_referencing(study)
    assert verify(sr, apply(sr, BASIC, keys).dataset, BASIC) == []


def test_options_output_passes(keys: PseudonymKeys) -> None:
    profile = Profile.from_names(
        [
            "retain-safe-private",
            "retain-long-modified-dates",
            "retain-patient-characteristics",
            "clean-descriptors",
            "retain-institution-identity",
            "retain-device-identity",
        ]
    )
    ds = with_private_tags(ct_dataset())
    assert verify(ds, apply(ds, profile, keys).dataset, profile) == []


def test_planted_name_in_image_comments(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    out = apply(ds, BASIC, keys).dataset
    out.ImageComments = "Dulcinea Quixote follow-up"
    findings = verify(ds, out, BASIC)
    codes = {(f.code, f.keyword) for f in findings}
    assert ("identifying-value-present", "ImageComments") in codes
    assert ("removed-attribute-present", "ImageComments") in codes
    _no_values(findings)


def test_planted_id_in_private_tag_inside_sequence(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    out = apply(ds, BASIC, keys).dataset
    item = out.DeidentificationMethodCodeSequence[0]
    item.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "x MRN-48213377 y")
    findings = verify(ds, out, BASIC)
    leaks = [f for f in findings if f.code == "identifying-value-present"]
    assert leaks and leaks[0].path.startswith("DeidentificationMethodCodeSequence[0].")
    assert leaks[0].tag == "(0009,1001)"
    assert any(f.code == "removed-attribute-present" and f.tag == "(0009,1001)" for f in findings)
    _no_values(findings)


def test_binary_leak_and_name_forms(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    out = apply(ds, BASIC, keys).dataset
    out.add_new(0x00189914, "UT", "report: QUIXOTE, DULCINEA")  # unlisted text attribute
    out.add_new(0x00420011, "OB", b"%PDF Dulcinea Quixote %%EOF ")  # Encapsulated Document
    findings = verify(ds, out, BASIC)
    tags = {f.tag for f in findings if f.code == "identifying-value-present"}
    assert {"(0018,9914)", "(0042,0011)"} <= tags
    _no_values(findings)


def test_uid_not_remapped_and_identity_mark(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    out = apply(ds, BASIC, keys).dataset
    out.SeriesInstanceUID = ds.SeriesInstanceUID
    del out.PatientIdentityRemoved
    codes = {f.code for f in verify(ds, out, BASIC)}
    assert codes == {"uid-not-remapped", "identity-not-marked"}
    retain = Profile.from_names(["retain-uids"])
    assert verify(ds, apply(ds, retain, keys).dataset, retain) == []


def test_retained_institution_is_not_a_leak(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    profile = Profile.from_names(["retain-institution-identity"])
    out = apply(ds, profile, keys).dataset
    assert out.InstitutionName == "Rural Clinic A"
    assert verify(ds, out, profile) == []
    assert any(f.keyword == "InstitutionName" for f in verify(ds, out, BASIC))


def test_unchanged_input_fails(keys: PseudonymKeys) -> None:
    ds: Dataset = ct_dataset()
    findings = verify(ds, ds, BASIC)
    codes = {f.code for f in findings}
    assert {
        "removed-attribute-present",
        "identifying-value-present",
        "uid-not-remapped",
        "identity-not-marked",
    } <= codes
    _no_values(findings)


def test_a_patient_named_like_the_profile_words_is_not_a_false_alarm() -> None:
    """'Patient' and 'Basic' are in the markers the engine writes; they are not leaks."""
    from deidentify.engine import PseudonymKeys, apply
    from deidentify.profile import Profile
    from deidentify.verify import verify
    from tests.factories.dicom import FakePatient, ct_slice

    ds = ct_slice(
        FakePatient(name="Basic^Patient^Option", patient_id="PID-0042"),
        study_uid="1.2.3.4",
        series_uid="1.2.3.5",
        sop_uid="1.2.3.6",
        accession="A1",
        index=0,
    )
    profile = Profile.from_names(["retain-patient-characteristics"])
    out = apply(ds, profile, PseudonymKeys(b"k" * 32)).dataset
    assert verify(ds, out, profile) == []
    # ...but the same name anywhere else is still found
    out.ImageComments = "Basic"
    found = {(f.code, f.keyword) for f in verify(ds, out, profile)}
    assert ("identifying-value-present", "ImageComments") in found
