"""The answering site's policy and its PACS C-FIND for a federated query (real Orthanc)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from node_agent.answer_policy import AnsweringSection, AnswerRule, decide
from node_agent.config import DicomSection
from node_agent.dicom.pacs_config import PacsSection
from node_agent.dicom.patient_find import find_patient_studies
from tests.factories.dicom import FakePatient
from tests.factories.orthanc import Orthanc
from tests.node_agent.conftest import make_study
from wire.policy import PolicyRule, SitePolicy
from wire.query import QueryKeys

PATIENT = FakePatient()
SHARING = SitePolicy(
    org="org-a", site="a", version=1, updated_at=dt.datetime.now(dt.UTC),
    rules=[PolicyRule(destination_org="org-b", mode="identified")],
)  # fmt: skip
KEYS = QueryKeys(patient_id=PATIENT.patient_id)


def _section(**rule: object) -> AnsweringSection:
    return AnsweringSection(
        institution_name="Clinic A",
        patient_id_issuer="CLINIC-A",
        rules=[AnswerRule(org="org-b", **rule)],
    )  # type: ignore[arg-type]


def test_who_may_ask_is_deny_by_default_with_reasons() -> None:
    assert decide(None, SHARING, "org-b", KEYS, "org-a").outcome == "refused"
    no_rule = decide(_section(), SHARING, "org-c", KEYS, "org-a")
    assert (no_rule.outcome, no_rule.reason) == (
        "refused", "org-a's policy does not let org-c query its studies"
    )  # fmt: skip
    deid_only = SHARING.model_copy(
        update={"rules": [PolicyRule(destination_org="org-b", mode="deidentified")]}
    )
    refused = decide(_section(), deid_only, "org-b", KEYS, "org-a")
    assert refused.outcome == "refused" and "could not be retrieved" in refused.reason
    vague = decide(_section(), SHARING, "org-b", QueryKeys(patient_name="*"), "org-a")
    assert vague.outcome == "refused" and "must name the patient" in vague.reason
    waiting = decide(_section(approval_required=True), SHARING, "org-b", KEYS, "org-a")
    assert waiting.outcome == "awaiting_approval" and waiting.rule is not None
    assert decide(_section(), SHARING, "org-b", KEYS, "org-a").rule is not None


@pytest.fixture
def loaded(orthanc: Orthanc, tmp_path: Path) -> dict[str, str]:
    today = dt.date.today()
    recent = make_study(tmp_path, (today - dt.timedelta(days=400)).strftime("%Y%m%d"), "CT")
    old = make_study(tmp_path, (today - dt.timedelta(days=20 * 365)).strftime("%Y%m%d"), "MR")
    orthanc.load(recent.files + old.files)
    return {"recent": recent.study_uid, "old": old.study_uid}


def _find(orthanc: Orthanc, agent_dicom: DicomSection, keys: QueryKeys, **rule: object) -> set[str]:
    pacs = PacsSection(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)
    section = _section(**rule)
    matches = find_patient_studies(
        pacs, agent_dicom.ae_title, section, section.rules[0], keys, "org-a"
    )
    for match in matches:
        assert match.source_org == "org-a" and match.institution_name == "Clinic A"
        assert match.patient_id == PATIENT.patient_id and match.instances == 2
    return {m.study_uid for m in matches}


def test_the_pacs_answers_the_patients_studies_as_the_rule_allows(
    orthanc: Orthanc, agent_dicom: DicomSection, loaded: dict[str, str]
) -> None:
    both = {loaded["recent"], loaded["old"]}
    assert _find(orthanc, agent_dicom, KEYS) == both
    assert _find(orthanc, agent_dicom, KEYS, modalities=["CT"]) == {loaded["recent"]}
    assert _find(orthanc, agent_dicom, KEYS, max_years_back=10) == {loaded["recent"]}
    by_name = QueryKeys(patient_name=PATIENT.name, patient_birth_date=PATIENT.birth_date)
    assert _find(orthanc, agent_dicom, by_name) == both
    wrong_birth = QueryKeys(patient_name=PATIENT.name, patient_birth_date="19000101")
    assert _find(orthanc, agent_dicom, wrong_birth) == set()
    assert _find(orthanc, agent_dicom, QueryKeys(patient_id="NOBODY-1")) == set()
    # another hospital's patient ID means nothing here: without a name, no match
    foreign = QueryKeys(patient_id=PATIENT.patient_id, issuer_of_patient_id="HOSPITAL-B")
    assert _find(orthanc, agent_dicom, foreign) == set()
    foreign_named = foreign.model_copy(update={"patient_name": PATIENT.name})
    assert _find(orthanc, agent_dicom, foreign_named) == both
    asked_ct = KEYS.model_copy(update={"modalities": ["CT"]})
    assert _find(orthanc, agent_dicom, asked_ct) == {loaded["recent"]}
