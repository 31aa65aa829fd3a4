"""Policy facts come from the study's own headers, read once per instance as they arrive."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from node_agent.study_facts import StudyFactsCache, age_in_years
from tests.factories.dicom import make_ct_study


def test_ages_from_age_strings_or_birth_and_study_dates() -> None:
    assert age_in_years("045Y", None, None) == 45
    assert age_in_years("018M", None, None) == 1
    assert age_in_years("", "19800615", "20240614") == 43
    assert age_in_years("", "19800615", "20240615") == 44
    assert age_in_years("garbage", "not a date", "20240101") is None


def test_facts_grow_with_the_study_and_each_instance_is_read_once(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "study", instances=3)
    first = dcmread(study.files[0])
    first.BodyPartExamined = "CHEST"
    first.StationName = "CT01"
    first.StudyDescription = "CT Thorax"
    first.save_as(study.files[0])
    cache = StudyFactsCache()
    rows = [(f"sop-{n}", path) for n, path in enumerate(study.files)]
    facts = cache.facts("study-1", rows[:1], calling_aes=["CTSCANNER"])
    assert facts.modalities == ["CT"] and facts.body_parts == ["CHEST"]
    assert facts.station_names == ["CT01"] and facts.calling_aes == ["CTSCANNER"]
    assert facts.study_description == "CT Thorax" and facts.patient_age_years is not None
    study.files[0].unlink()  # already read: not opened again
    later = cache.facts("study-1", rows)
    assert later.sop_classes == ["1.2.840.10008.5.1.4.1.1.2"] and later.body_parts == ["CHEST"]
    indexed = later.without_identity()
    assert indexed.study_description is None and indexed.is_indexable
