"""`verify_output`: the check of a de-identified dataset without its original (the hub's
second check of what reaches a research collection)."""

from __future__ import annotations

from pydicom.uid import generate_uid

from deidentify import Profile, PseudonymKeys, apply
from deidentify.verify import verify_output
from tests.factories.dicom import FakePatient, ct_slice


def _slice() -> object:
    return ct_slice(
        FakePatient(), study_uid=generate_uid(), series_uid=generate_uid(),
        sop_uid=generate_uid(), accession="ACC-1", index=0,
    )  # fmt: skip


def test_clean_output_passes_and_the_original_fails() -> None:
    original = _slice()
    profile = Profile.basic()
    clean = apply(original, profile, PseudonymKeys(b"k" * 32)).dataset  # type: ignore[arg-type]
    assert verify_output(clean, profile) == []
    findings = verify_output(original, profile)  # type: ignore[arg-type]
    codes = {f.code for f in findings}
    assert codes == {"removed-attribute-present", "identity-not-marked"}
    assert "OtherPatientIDs" in {f.keyword for f in findings}
    assert all(FakePatient().patient_id not in f.message for f in findings)  # names, no values


def test_a_private_tag_left_in_is_found() -> None:
    profile = Profile.basic()
    clean = apply(_slice(), profile, PseudonymKeys(b"k" * 32)).dataset  # type: ignore[arg-type]
    block = clean.private_block(0x0011, "SOME VENDOR", create=True)
    block.add_new(0x01, "LO", "anything")
    assert "removed-attribute-present" in {f.code for f in verify_output(clean, profile)}
