"""Background retrieves at the asking site are ledger rows (issue 12): an agent killed during a
retrieve follows it again at start, and `request list` still shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.arrivals import ArrivalBoard
from node_agent.dicom.retrieve_follow import BackgroundRetrieves
from node_agent.ledger import IllegalTransition, Ledger
from node_agent.state import AgentState
from tests.factories.dicom import make_ct_study


def _row(path: Path, request_id: str) -> tuple[str, int, int]:
    with AgentState(path).connect() as conn:
        row = conn.execute(
            "SELECT state, arrived, expected FROM retrieves WHERE request_id = ?", (request_id,)
        ).fetchone()
    return str(row[0]), int(row[1]), int(row[2])


def test_instances_are_counted_once_and_the_arrows_are_checked(tmp_path: Path) -> None:
    ledger = Ledger(AgentState(tmp_path / "state.db"))
    ledger.retrieve_started("r1", "1.2.3", 2)
    assert ledger.retrieve_arrived("r1", "1.2.3.1") == 1
    assert ledger.retrieve_arrived("r1", "1.2.3.1") == 1  # stored again: the same instance
    assert ledger.retrieve_moved("r1", "background")
    with pytest.raises(IllegalTransition):
        ledger.retrieve_moved("r1", "receiving")
    assert ledger.retrieve_arrived("r1", "1.2.3.2") == 2
    assert ledger.retrieve_moved("r1", "completed-in-background")
    assert not ledger.retrieve_moved("r1", "stalled")  # finished: left as it is
    assert _row(tmp_path / "state.db", "r1") == ("completed-in-background", 2, 2)


def test_a_retrieve_left_by_a_killed_agent_is_followed_to_the_end_after_a_restart(
    tmp_path: Path,
) -> None:
    study = make_ct_study(tmp_path / "study", instances=3)
    path = tmp_path / "state.db"
    # the agent that died: one retrieve under its association (one instance in), one already
    # handed to the background, one finished
    before = Ledger(AgentState(path))
    before.retrieve_started("under-association", study.study_instance_uid, 3)
    before.retrieve_arrived("under-association", study.sop_instance_uids[0])
    before.retrieve_started("done", "9.9.9", 1)
    before.retrieve_arrived("done", "9.9.9.1")
    before.retrieve_moved("done", "complete")

    board = ArrivalBoard()
    follower = BackgroundRetrieves(Ledger(AgentState(path)), board)  # the agent restarted
    (thread,) = follower.resume()
    assert _row(path, "under-association") == ("background", 1, 3)
    for file in study.files:  # the inbound path stores the whole delivery (one twice)
        board.publish(file.read_bytes())
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert _row(path, "under-association") == ("completed-in-background", 3, 3)
    assert _row(path, "done") == ("complete", 1, 1)
    assert BackgroundRetrieves(Ledger(AgentState(path)), board).resume() == []


def test_a_quiet_retrieve_stalls_and_is_followed_again_at_the_next_start(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "study", instances=2)
    path = tmp_path / "state.db"
    ledger = Ledger(AgentState(path))
    ledger.retrieve_started("r", study.study_instance_uid, 2)
    ledger.retrieve_moved("r", "background")
    board = ArrivalBoard()
    (thread,) = BackgroundRetrieves(ledger, board, idle_s=0.2).resume()
    thread.join(timeout=10)
    assert _row(path, "r") == ("stalled", 0, 2)
    (thread,) = BackgroundRetrieves(Ledger(AgentState(path)), board).resume()
    for file in study.files:
        board.publish(file.read_bytes())
    thread.join(timeout=10)
    assert _row(path, "r") == ("completed-in-background", 2, 2)
