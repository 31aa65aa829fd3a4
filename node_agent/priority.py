"""Priorities asked for a study: a clinician's request goes before a bulk backfill.

A study's bundles get the priority of the sharing rule that sends them (lower is sent first).
An on-demand pull (`hexchange-agent pull --priority`) asks for a lower number for the studies
it names: bundles sealed for them later take it, and bundles of theirs already queued are
raised to it at once, so a study already waiting behind a backfill jumps the queue too.
"""

from __future__ import annotations

from node_agent.ledger import Ledger
from node_agent.state import AgentState


def request_priority(state: AgentState, study_uid: str, priority: int) -> int:
    """Ask for `priority` (or better) for the study; returns how many queued bundles of it were
    raised. A lower number wins: an earlier, more urgent request is never undone."""
    return Ledger(state).raise_priority(study_uid, priority)


def priority_for(state: AgentState, study_uid: str, rule_priority: int) -> int:
    """The priority a new bundle of the study gets: its rule's, or the one asked for if lower."""
    with state.connect() as conn:
        row = conn.execute(
            "SELECT priority FROM study_priority WHERE study_uid = ?", (study_uid,)
        ).fetchone()
    return rule_priority if row is None else min(rule_priority, int(row["priority"]))
