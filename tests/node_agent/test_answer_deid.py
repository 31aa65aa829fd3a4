"""De-identified answers to federated queries (issue 12): the `[answering]` rule's mode, the
answer shown as the de-identified share would send the study, and the pseudonym links."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydicom import dcmread

from deidentify.engine import PseudonymKeys
from deidentify.profile import Profile
from deidentify.recipe import parse_recipe
from node_agent.answer_deid import LINK_DAYS, AnswerDeidentifier, AnswerLinks, sharing_rule_for
from node_agent.answer_policy import AnsweringSection, AnswerRule, decide
from node_agent.deid_step import deidentify_file, share_profile
from node_agent.state import AgentState
from tests.factories.dicom import FakePatient, make_ct_study
from wire.policy import PolicyMatch, PolicyRule, SitePolicy
from wire.query import QueryKeys, StudyMatch

PATIENT = FakePatient(name="Oakhurst^Marlene^J", patient_id="MRN-70312244", birth_date="19620411")
KEYS = QueryKeys(patient_id=PATIENT.patient_id)
RECIPE = '[attributes]\nStudyDescription = { replace = "RESEARCH CT" }\n[dates]\npolicy = "shift"\n'
DAY = 86400.0


def _sharing(*rules: PolicyRule) -> SitePolicy:
    return SitePolicy(
        org="org-a", site="a", version=1, updated_at=dt.datetime.now(dt.UTC), rules=list(rules)
    )


def _section(mode: str) -> AnsweringSection:
    return AnsweringSection(rules=[AnswerRule(org="org-b", mode=mode)])  # type: ignore[arg-type]


def test_the_rule_mode_is_validated_and_de_identified_needs_a_de_identified_share() -> None:
    assert AnswerRule(org="org-b", mode="de-identified").mode == "deidentified"  # type: ignore[arg-type]
    assert AnswerRule(org="org-b").mode == "identified"
    with pytest.raises(ValidationError, match="identified"):
        AnswerRule(org="org-b", mode="anonymous")  # type: ignore[arg-type]

    identified = _sharing(PolicyRule(destination_org="org-b", mode="identified"))
    deidentified = _sharing(PolicyRule(destination_org="org-b", mode="deidentified"))
    assert decide(_section("de-identified"), deidentified, "org-b", KEYS, "org-a").rule is not None
    refused = decide(_section("de-identified"), identified, "org-b", KEYS, "org-a")
    assert refused.rule is None and refused.reason == (
        "org-a's sharing policy sends no de-identified studies to org-b, "
        "so they could not be retrieved"
    )
    # deny by default stays: no rule for the org, whatever the share
    assert decide(_section("de-identified"), deidentified, "org-c", KEYS, "org-a").rule is None
    # an identified rule still needs an identified share
    assert decide(_section("identified"), deidentified, "org-b", KEYS, "org-a").rule is None


def test_the_sharing_rule_is_the_first_de_identified_one_for_the_org_and_modality() -> None:
    mr_only = PolicyRule(destination_org="org-b", mode="deidentified",
                         match=PolicyMatch(modalities=["MR"]))  # fmt: skip
    any_study = PolicyRule(destination_org="org-b", mode="deidentified", recipe=RECIPE)
    sharing = _sharing(PolicyRule(destination_org="org-b", mode="identified"), mr_only, any_study)
    assert sharing_rule_for(sharing, "org-b", {"MR"}) is mr_only
    assert sharing_rule_for(sharing, "org-b", {"CT"}) is any_study
    assert sharing_rule_for(sharing, "org-c", {"CT"}) is None
    assert sharing_rule_for(None, "org-b", {"CT"}) is None


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "pseudonym.key"
    path.write_text("5a" * 32)
    return path


@pytest.mark.parametrize("recipe", [None, RECIPE], ids=["profile", "recipe"])
def test_the_answer_shows_what_the_de_identified_share_sends(
    tmp_path: Path, key_file: Path, recipe: str | None
) -> None:
    study = make_ct_study(tmp_path / "ct", instances=1, patient=PATIENT, accession="ACC-D-77")
    source = dcmread(study.files[0])
    match = StudyMatch(
        study_uid=study.study_instance_uid, study_date=str(source.StudyDate),
        study_time=str(source.StudyTime), study_description="CT CHEST Oakhurst",
        accession_number="ACC-D-77", modalities=["CT"], series=1, instances=1,
        patient_name=PATIENT.name, patient_id=PATIENT.patient_id,
        issuer_of_patient_id="CLINIC-A", patient_birth_date=PATIENT.birth_date,
        patient_sex="F", source_org="org-a", institution_name="Clinic A",
    )  # fmt: skip
    options = ["retain-long-modified-dates"] if recipe is None else []
    rule = PolicyRule(destination_org="org-b", mode="deidentified", deid_options=options,
                      recipe=recipe)  # fmt: skip
    state = AgentState(tmp_path / "state.db")
    answering = AnswerDeidentifier(state, key_file, [])
    (shown,) = answering.answer([match], _sharing(rule), "org-b")

    # what the share to org-b writes for an instance of that study (same engine, key, recipe)
    keys = PseudonymKeys.from_key_file_bytes(key_file.read_bytes())
    target = tmp_path / "sent.dcm"
    deidentify_file(
        study.files[0], target, share_profile(Profile.from_names([]), options), keys,
        recipe=parse_recipe(recipe) if recipe else None,
    )  # fmt: skip
    sent = dcmread(target)
    assert shown.study_uid == sent.StudyInstanceUID != study.study_instance_uid
    assert shown.patient_id == sent.PatientID and shown.patient_name == str(sent.PatientName)
    assert shown.study_date == sent.StudyDate != source.StudyDate  # shifted as the share does
    assert shown.accession_number == (sent.get("AccessionNumber") or None)
    assert shown.patient_birth_date == (sent.get("PatientBirthDate") or None)
    if recipe:
        assert shown.study_description == sent.StudyDescription == "RESEARCH CT"
    assert shown.modalities == ["CT"] and shown.instances == 1
    text = shown.model_dump_json().upper()
    for value in ("OAKHURST", "MARLENE", PATIENT.patient_id, PATIENT.birth_date, "ACC-D-77",
                  study.study_instance_uid, "CLINIC-A"):  # fmt: skip
        assert value.upper() not in text
    # the way back, for this org only
    assert answering.links.original_of("org-b", shown.study_uid) == study.study_instance_uid
    assert answering.links.original_of("org-c", shown.study_uid) is None


def test_a_share_that_would_not_send_the_study_gives_no_answer(
    tmp_path: Path, key_file: Path
) -> None:
    match = StudyMatch(study_uid="1.2.3.4", modalities=["CT"], patient_id="X-1",
                       source_org="org-a")  # fmt: skip
    mr_only = PolicyRule(destination_org="org-b", mode="deidentified",
                         match=PolicyMatch(modalities=["MR"]))  # fmt: skip
    answering = AnswerDeidentifier(AgentState(tmp_path / "state.db"), key_file, [])
    assert answering.answer([match], _sharing(mr_only), "org-b") == []


def test_a_missing_key_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    from node_agent.answer_deid import AnswerDeidError

    match = StudyMatch(study_uid="1.2.3.4", patient_id="X-1", source_org="org-a")
    rule = PolicyRule(destination_org="org-b", mode="deidentified")
    answering = AnswerDeidentifier(AgentState(tmp_path / "state.db"), None, [])
    with pytest.raises(AnswerDeidError, match="key_file"):
        answering.answer([match], _sharing(rule), "org-b")


def test_links_are_durable_renewed_by_an_answer_and_dropped_after_90_days(
    tmp_path: Path,
) -> None:
    assert LINK_DAYS == 90
    path = tmp_path / "state.db"
    t0 = 1_800_000_000.0
    AnswerLinks(AgentState(path)).remember("org-b", [("2.25.1", "1.2.3"), ("2.25.2", "1.2.4")], t0)
    links = AnswerLinks(AgentState(path))  # reopened: still there
    assert links.original_of("org-b", "2.25.1", t0 + 89 * DAY) == "1.2.3"
    assert links.original_of("org-b", "2.25.1", t0 + 91 * DAY) is None
    links.remember("org-b", [("2.25.1", "1.2.3")], t0 + 60 * DAY)  # answered again
    assert links.original_of("org-b", "2.25.1", t0 + 120 * DAY) == "1.2.3"
    assert links.original_of("org-b", "2.25.2", t0 + 120 * DAY) is None
    assert links.prune(t0 + 120 * DAY) == 1  # 2.25.2 is gone from the database
    with AgentState(path).connect() as conn:
        rows = conn.execute("SELECT pseudonym_uid FROM answer_links").fetchall()
    assert [r[0] for r in rows] == ["2.25.1"]


def test_an_agent_that_starts_after_the_age_drops_expired_links(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = time.time() - 91 * DAY
    AnswerLinks(AgentState(path)).remember("org-b", [("2.25.9", "1.2.9")], old)
    AnswerLinks(AgentState(path)).remember("org-c", [("2.25.8", "1.2.8")])  # fresh: kept
    AnswerDeidentifier(AgentState(path), None, [])  # what the agent builds at start
    with AgentState(path).connect() as conn:
        rows = conn.execute("SELECT pseudonym_uid FROM answer_links").fetchall()
    assert [r[0] for r in rows] == ["2.25.8"]


def test_a_recipe_that_keeps_the_name_leaves_the_study_out_and_a_short_id_does_not(
    tmp_path: Path, key_file: Path
) -> None:
    keeps_name = PolicyRule(
        destination_org="org-b", mode="deidentified",
        recipe='[attributes]\nPatientName = { action = "keep", allow_identifying = true }\n',
    )  # fmt: skip
    plain = PolicyRule(destination_org="org-b", mode="deidentified")
    answering = AnswerDeidentifier(AgentState(tmp_path / "state.db"), key_file, [])
    named = StudyMatch(study_uid="1.2.840.99.1", patient_name=PATIENT.name,
                       patient_id=PATIENT.patient_id, source_org="org-a")  # fmt: skip
    assert answering.answer([named], _sharing(keeps_name), "org-b") == []
    # a one-digit patient ID is found in any long UID by chance: only text is checked
    short = StudyMatch(study_uid="1.2.840.99.2", patient_name="Ng^Bo", patient_id="7",
                       source_org="org-a")  # fmt: skip
    (shown,) = answering.answer([short], _sharing(plain), "org-b")
    assert shown.patient_id != "7" and "7" in shown.study_uid
