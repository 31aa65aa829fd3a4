"""The agent uses only policies the hub signed, keeps the last verified one, and matches rules
on the study's facts (every criterion of a rule must hold)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from node_agent.policy import PolicyCache, PolicyNotSigned
from wire.facts import StudyFacts
from wire.policy import PolicyMatch, PolicyRule, SitePolicy

HUB_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


class _Hub:
    """Stands in for the node API's GET /node/v1/policy (the only call PolicyCache makes)."""

    def __init__(self, policy: SitePolicy) -> None:
        self.answer = policy

    def policy(self) -> SitePolicy:
        return self.answer


def _policy(version: int, *rules: PolicyRule) -> SitePolicy:
    return SitePolicy(
        org="org-a", site="clinic-a", version=version, rules=list(rules),
        updated_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip


CT_TO_B = PolicyRule(
    destination_org="org-b", mode="identified", match=PolicyMatch(modalities=["CT"])
)


def test_only_signed_policies_are_used_and_the_last_verified_one_stays(tmp_path: Path) -> None:
    cache = PolicyCache(tmp_path / "policy.json", HUB_KEY.public_key())
    with pytest.raises(PolicyNotSigned):
        cache.refresh(_Hub(_policy(1, CT_TO_B)))  # type: ignore[arg-type]  # unsigned
    assert cache.load() is None and not (tmp_path / "policy.json").exists()

    good = _policy(1, CT_TO_B).signed_with(HUB_KEY)
    assert cache.refresh(_Hub(good)).version == 1  # type: ignore[arg-type]
    everything = PolicyRule(destination_org="org-x", mode="identified")
    forged = _policy(2, CT_TO_B, everything).signed_with(OTHER_KEY)
    assert cache.refresh(_Hub(forged)).version == 1  # type: ignore[arg-type]
    tampered: Any = good.model_copy(update={"rules": [everything], "version": 3})
    assert cache.refresh(_Hub(tampered)).version == 1  # type: ignore[arg-type]
    assert [d.org for d in cache.destinations_for({"CT"})] == ["org-b"]

    # a cached file edited on disk is not used by a restarted agent
    path = tmp_path / "policy.json"
    path.write_text(path.read_text().replace('"org-b"', '"org-x"'))
    restarted = PolicyCache(path, HUB_KEY.public_key())
    assert restarted.load() is None


def test_rules_match_on_every_criterion_of_the_study(tmp_path: Path) -> None:
    adult_chest = PolicyRule(
        destination_org="org-r", mode="deidentified", recipe='[attributes]\nPatientAge = "keep"\n',
        pixel_policy="strict",
        match=PolicyMatch(
            modalities=["CT"], body_parts=["CHEST"], min_age_years=18,
            study_description="*thorax*", station_names=["CT01"], calling_aes=["CTSCANNER"],
            sop_classes=["1.2.840.10008.5.1.4.1.1.2"],
        ),
    )  # fmt: skip
    cache = PolicyCache(tmp_path / "policy.json", HUB_KEY.public_key())
    cache.refresh(_Hub(_policy(1, CT_TO_B, adult_chest).signed_with(HUB_KEY)))  # type: ignore[arg-type]
    study = StudyFacts(
        modalities=["CT"], body_parts=["CHEST"], patient_age_years=44,
        study_description="CT Thorax w/o contrast", station_names=["CT01"],
        calling_aes=["CTSCANNER"], sop_classes=["1.2.840.10008.5.1.4.1.1.2"],
    )  # fmt: skip
    routes = cache.destinations_for(study)
    assert [(d.org, d.mode) for d in routes] == [("org-b", "identified"), ("org-r", "deidentified")]
    research = routes[1]
    assert research.recipe and research.pixel_policy == "strict"
    assert research.station_names == ("CT01",)  # what its manifest may show the hub
    for change in (
        {"patient_age_years": 12}, {"body_parts": ["HEAD"]}, {"study_description": "CT head"},
        {"station_names": ["CT02"]}, {"calling_aes": ["OTHER"]}, {"patient_age_years": None},
        {"study_description": None}, {"sop_classes": ["1.2.840.10008.5.1.4.1.1.4"]},
    ):  # fmt: skip
        other = study.model_copy(update=change)
        assert [d.org for d in cache.destinations_for(other)] == ["org-b"], change
