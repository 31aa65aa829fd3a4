"""Identity in text is cleaned where it hides (issue 16): the adversarial corpus, written forms,
the study's other instances, patient descriptors, and the verifier's independent forms."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from deidentify import Profile, PseudonymKeys, apply, verify
from deidentify.clean import Scrubber
from deidentify.heldback import HeldBack
from deidentify.identity import StudyIdentity
from deidentify.recipe import parse_recipe
from tests.deidentify.adversarial import CHARSETS, leftovers, study
from tests.deidentify.factories import SECRET, ct_dataset

PROFILES = {
    "basic": (),
    "clean": ("clean-descriptors", "clean-structured-content", "clean-graphics"),
    "modified-dates": ("retain-long-modified-dates", "clean-descriptors"),
}


def _roundtrip(ds: Dataset) -> Dataset:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return dcmread(io.BytesIO(out.getvalue()))


@pytest.mark.parametrize("charset", sorted(CHARSETS))
@pytest.mark.parametrize("options", sorted(PROFILES))
def test_adversarial_corpus_leaves_nothing_and_writes_every_file(
    charset: str, options: str, keys: PseudonymKeys
) -> None:
    profile = Profile.from_names(PROFILES[options])
    instances = study(charset)
    identity = StudyIdentity.collect(instances)
    for ds in instances:
        result = apply(ds, profile, keys, identity=identity)
        assert verify(ds, result.dataset, profile, identity=identity) == []
        written = _roundtrip(result.dataset)  # every file is still written and readable
        assert leftovers(written, charset) == []


def test_kept_attributes_keep_their_text_when_it_holds_no_identity(keys: PseudonymKeys) -> None:
    profile = Profile.basic()
    ds = ct_dataset()
    out = apply(ds, profile, keys).dataset
    for keyword in ("Manufacturer", "ManufacturerModelName", "BodyPartExamined", "KVP"):
        assert out[keyword].value == ds[keyword].value
    instances = study("latin1")
    identity = StudyIdentity.collect(instances)
    sr = apply(instances[-2], profile, keys, identity=identity).dataset
    assert sr.Manufacturer == "*** Imaging"  # the patient's family name in a kept attribute
    assert sr.ConceptNameCodeSequence[0].CodeMeaning == "Diagnostic imaging report"


def test_study_identity_is_needed_for_names_only_other_instances_carry(
    keys: PseudonymKeys,
) -> None:
    """The reading physician's name is in instance 0 only; instance 1 mentions it in text."""
    profile = Profile.basic()
    instances = study("latin1")
    instances[0].NameOfPhysiciansReadingStudy = "Zamora-Ibarra^Lucia"
    second = instances[1]
    assert "NameOfPhysiciansReadingStudy" not in second
    second.ManufacturerModelName = "Protocol reviewed by Dr Zamora"  # kept by the profile
    alone = apply(second, profile, keys).dataset
    assert alone.ManufacturerModelName == "Protocol reviewed by Dr Zamora"
    identity = StudyIdentity.collect(instances)
    cleaned = apply(second, profile, keys, identity=identity).dataset
    assert cleaned.ManufacturerModelName == "Protocol reviewed by Dr ***"
    assert leftovers(cleaned, "latin1") == []
    # the verifier, given the same study identity, catches the output made without it
    findings = verify(second, alone, profile, identity=identity)
    assert [f.keyword for f in findings] == ["ManufacturerModelName"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr Mueller-Luedenscheidt called", "Dr *** called"),
        ("seen by OBrien and O\u2019Brien", "seen by *** and ***"),
        ("ID AB-1234-X", "ID ***"),
        ("born 14-Feb-1958", "born ***"),
        ("born February 14, 1958", "born ***"),
        ("geboren am 14. Februar 1958", "geboren am ***"),
        ("scanned 20 de mayo de 2019", "scanned ***"),
        ("initials D.M.Q. noted", "initials *** noted"),
        ("12 Windmill Lane", "***"),
        ("phone 555 0148 227", "phone ***"),
        ("CT 2020-01-01 follow-up", "CT 2020-01-01 follow-up"),  # not the study's date
        ("Lane Medical", "Lane Medical"),  # a word of the address is not the address
    ],
)
def test_identity_in_kept_text_in_written_forms(text: str, expected: str) -> None:
    identity = StudyIdentity(
        names=frozenset({"Quixote^Dulcinea^Maria", "Müller-Lüdenscheidt^Hans", "O'Brien^Pat"}),
        ids=frozenset({"AB1234X"}),
        dates=frozenset({"19580214", "20190520"}),
        addresses=frozenset({"12 Windmill Lane, La Mancha"}),
        phones=frozenset({"+1-555-0148-227"}),
    )
    assert Scrubber.for_identity(identity).scrub_identity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "visit on 3 March 2021",
        "mail jane.roe@example.org",
        "lives at 221B Baker Street",
        "Hauptstraße 12",
        "call +44 20 7946 0958",
        "https://portal.example.org/records?mrn=55512",
        "le 3 mars 2021",
    ],
)
def test_free_text_loses_phi_like_patterns(text: str) -> None:
    scrubbed = Scrubber.for_identity(StudyIdentity()).scrub(text)
    assert "***" in scrubbed
    for token in ("2021", "jane", "Baker", "Hauptstra", "7946", "55512"):
        assert token not in scrubbed


def test_free_text_keeps_clinical_words() -> None:
    text = "WINDOW 40 400 slice 1.25 kVp 120, no acute findings; see http://dicom.nema.org/"
    assert Scrubber.for_identity(StudyIdentity()).scrub(text) == text


def test_patient_descriptors_removed_by_default_even_under_clean_descriptors(
    keys: PseudonymKeys,
) -> None:
    ds = ct_dataset()
    ds.Occupation = "Lighthouse keeper"
    ds.AdditionalPatientHistory = "Retired fencing champion of the village"
    ds.PatientComments = "Mayor's cousin"
    ds.MilitaryRank = "Colonel"
    ds.BranchOfService = "Navy"
    profile = Profile.from_names(["clean-descriptors", "retain-patient-characteristics"])
    out = apply(ds, profile, keys).dataset
    for keyword in (
        "Occupation",
        "AdditionalPatientHistory",
        "PatientComments",
        "MilitaryRank",
        "BranchOfService",
    ):
        assert keyword not in out
    assert verify(ds, out, profile) == []


def test_site_recipe_keeps_a_patient_descriptor(keys: PseudonymKeys, tmp_path: Path) -> None:
    recipe = parse_recipe('[attributes]\nOccupation = "keep"\n')
    ds = ct_dataset()
    ds.Occupation = "Lighthouse keeper"
    out = apply(ds, Profile.basic(), keys, recipe).dataset
    assert out.Occupation == "Lighthouse keeper"


def test_text_with_nothing_left_is_removed_or_emptied_by_type(keys: PseudonymKeys) -> None:
    ds = ct_dataset()
    ds.ImageComments = "Quixote"  # Type 3 in the CT IOD: removed
    ds.StudyDescription = "Quixote"
    out = apply(ds, Profile.from_names(["clean-descriptors"]), keys)
    assert "ImageComments" not in out.dataset
    assert "StudyDescription" not in out.dataset  # Type 3 too
    assert any("ImageComments" in n and "removed" in n for n in out.notes)
    # notes name attributes, never values
    assert not any("Quixote" in n for n in out.notes)


def test_retrieve_url_with_the_patient_id_is_cleaned_not_quarantined(
    keys: PseudonymKeys,
) -> None:
    ds = ct_dataset()
    ds.RetrieveURL = f"https://pacs.example.org/wado?patientID={ds.PatientID}&x=1"
    ds.DocumentTitle = "Letter about Dulcinea Quixote"
    profile = Profile.basic()
    out = apply(ds, profile, keys).dataset
    assert out.RetrieveURL == "https://pacs.example.org/wado?patientID=***&x=1"
    assert out.DocumentTitle == "Letter about ***"
    assert verify(ds, out, profile) == []


def test_verifier_finds_written_forms_the_engine_would_clean(keys: PseudonymKeys) -> None:
    """An output that kept text as written (a weaker engine) fails verification."""
    for text in ("AB-1234-X", "14-Feb-1958", "14. Februar 1958", "Quixote-Sancho"):
        ds = ct_dataset()
        ds.PatientID = "AB1234X"
        ds.PatientBirthDate = "19580214"
        ds.PatientName = "Quixote-Sancho^Dulcinea"
        profile = Profile.basic()
        out = apply(ds, profile, keys).dataset
        out.Manufacturer = f"Made for {text}"  # put back what the engine removed
        findings = verify(ds, out, profile)
        assert {f.keyword for f in findings} == {"Manufacturer"}, text


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("not-dicom: no DICOM preamble/prefix or unreadable header", "unreadable"),
        ("unparseable: EOFError", "unreadable"),
        ("truncated: Pixel Data shorter than declared", "incomplete"),
        ("verification-failed", "verification-failed"),
        ("pixel-scrub: text left after scrubbing", "pixel-scrub"),
        ("document: encapsulated PDF holds identity", "document"),
        ("deidentify-failed: KeyError", "error"),
        ("something new", "error"),
    ],
)
def test_held_back_reason_classes(reason: str, expected: str) -> None:
    held = HeldBack()
    held.add(reason)
    assert held.partial and held.counts() == {expected: 1}
    assert HeldBack().counts() == {} and not HeldBack().partial


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_cleans_names_another_instance_of_the_study_carries(
    tmp_path: Path, workers: int
) -> None:
    from deidentify.cli import process_batch

    study_uid = "1.2.826.0.1.3680043.8.498.16"
    first, second = ct_dataset(study_uid=study_uid), ct_dataset(study_uid=study_uid, index=1)
    first.NameOfPhysiciansReadingStudy = "Zamora-Ibarra^Lucia"
    second.ManufacturerModelName = "Protocol reviewed by Dr Zamora"
    src = tmp_path / "in"
    src.mkdir()
    jobs = []
    for name, ds in (("a.dcm", first), ("b.dcm", second)):
        ds.save_as(src / name, enforce_file_format=True)
        jobs.append((src / name, name))
    out = tmp_path / "out"
    outcomes = process_batch(jobs, out, tmp_path / "q", [], SECRET, workers=workers)
    assert [o.quarantined for o in outcomes] == [False, False]
    written = dcmread(out / outcomes[1].output)
    assert written.ManufacturerModelName == "Protocol reviewed by Dr ***"
    # without the pre-pass the name is not known in b.dcm (one instance at a time)
    alone = process_batch(
        jobs, tmp_path / "out2", tmp_path / "q2", [], SECRET, study_identity=False
    )
    assert dcmread(tmp_path / "out2" / alone[1].output).ManufacturerModelName.endswith("Zamora")


@pytest.mark.parametrize("charset", ["latin1", "utf8"])
def test_hexchange_deid_writes_the_adversarial_study_clean(tmp_path: Path, charset: str) -> None:
    """Through the files path (fast path, fallback, study pass): every file is written and
    holds no planted value."""
    from deidentify.cli import process_batch

    src = tmp_path / "in"
    src.mkdir()
    jobs = []
    for i, ds in enumerate(study(charset)):
        ds.save_as(src / f"{i}.dcm", enforce_file_format=True)
        jobs.append((src / f"{i}.dcm", f"{i}.dcm"))
    out = tmp_path / "out"
    outcomes = process_batch(jobs, out, tmp_path / "q", list(PROFILES["clean"]), SECRET)
    assert [o.reason for o in outcomes if o.quarantined] == []
    for outcome in outcomes:
        assert leftovers(dcmread(out / outcome.output), charset) == []


@pytest.mark.parametrize(
    "text",
    [
        "CTA 0.625mm 120kV",
        "T1 SE 4.5/1.2",
        "DWI b=1000",
        "Neuro 2.0 protocol v12",
        "Dose Report 1/1",
        "MPR 3.0 x 3.0",
        "Follow-up 6 months, 2nd series",
    ],
)
def test_free_text_keeps_acquisition_descriptions(text: str) -> None:
    assert Scrubber.for_identity(StudyIdentity()).scrub(text) == text


def test_study_identity_from_files_reads_headers_and_skips_unreadable(tmp_path: Path) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.17"
    first, second = ct_dataset(study_uid=study_uid), ct_dataset(study_uid=study_uid, index=1)
    first.NameOfPhysiciansReadingStudy = "Zamora-Ibarra^Lucia"
    first.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    second.save_as(tmp_path / "b.dcm", enforce_file_format=True)
    (tmp_path / "notes.txt").write_text("not DICOM")
    paths = [tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "notes.txt"]
    identity = StudyIdentity.from_files(paths)
    assert identity == StudyIdentity.collect([first, second])
    assert "Zamora-Ibarra^Lucia" in identity.names
