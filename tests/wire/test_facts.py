"""What the hub may index of a study's facts: Station Name is free text typed at the modality,
so only the station names the matching rule names reach the hub; a rule on other station names
is then undecided at the hub (its dry run, its re-check), never silently refused or allowed."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from wire.facts import StudyFacts
from wire.policy import PolicyMatch, PolicyRule, SitePolicy

TYPED = "ZQXWV^YKJHG"  # a name an operator typed where the station's name belongs


def test_only_station_names_the_rule_names_are_kept() -> None:
    facts = StudyFacts(modalities=["CT"], station_names=["CT01", TYPED, "ct02"])
    indexed = facts.without_identity(stations=["ct01", "CT02"])
    assert indexed.station_names == ["CT01", "ct02"]
    assert indexed.station_names_withheld and indexed.is_indexable
    assert TYPED not in indexed.model_dump_json()
    none_named = facts.without_identity()
    assert none_named.station_names == [] and none_named.station_names_withheld
    nothing_to_withhold = StudyFacts(modalities=["CT"]).without_identity()
    assert not nothing_to_withhold.station_names_withheld


def test_a_rule_on_a_withheld_station_is_undecided_not_refused() -> None:
    on_ct03 = PolicyMatch(station_names=["CT03"])
    shown = StudyFacts(modalities=["CT"], station_names=["CT01"])
    assert on_ct03.evaluate(shown) is False  # every station name shown: CT03 is not one
    withheld = StudyFacts(modalities=["CT"], station_names=["CT01"]).without_identity(["CT01"])
    assert withheld.station_names_withheld is False  # nothing left out: still decided
    assert on_ct03.evaluate(withheld) is False
    hidden = StudyFacts(modalities=["CT"], station_names=["CT01", "CT03"]).without_identity(
        ["CT01"]
    )
    assert on_ct03.evaluate(hidden) is None
    assert PolicyMatch(station_names=["CT01"]).evaluate(hidden) is True
    assert PolicyMatch(modalities=["MR"], station_names=["CT03"]).evaluate(hidden) is False


def test_the_hub_recheck_allows_what_the_agent_matched() -> None:
    rule = PolicyRule(
        destination_org="org-b", mode="identified", match=PolicyMatch(station_names=["ct01"])
    )
    policy = SitePolicy(
        org="org-a", site="clinic-a", version=1, rules=[rule], updated_at=dt.datetime.now(dt.UTC)
    )
    study = StudyFacts(modalities=["CT"], station_names=["CT01", TYPED])
    [matched] = policy.rules_matching(study)
    sent = study.without_identity(matched.match.station_names)
    assert sent.station_names == ["CT01"]
    assert policy.allows("org-b", "identified", {"CT"}, sent)
    other = StudyFacts(modalities=["CT"], station_names=["CT09"]).without_identity(["CT01"])
    assert policy.allows("org-b", "identified", {"CT"}, other)  # undecided: not refused
    shown = StudyFacts(modalities=["CT"], station_names=["CT09"])
    assert not policy.allows("org-b", "identified", {"CT"}, shown)


@given(
    st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16)),
    st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=16)),
)
def test_no_station_name_reaches_the_hub_unless_named(have: list[str], named: list[str]) -> None:
    indexed = StudyFacts(station_names=have[:64]).without_identity(named)
    upper = {n.upper() for n in named}
    assert all(name.upper() in upper for name in indexed.station_names)
    assert indexed.station_names_withheld == (len(indexed.station_names) < len(have[:64]))
