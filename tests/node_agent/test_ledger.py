"""The ledger owns every arrow of the agent's queue: a study whose instances were all
quarantined says so (not `sealed`), one sent without some of them is `partial`, the heartbeat
counts both, and an arrow the table lacks is refused rather than written."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from node_agent import operations
from node_agent.app import build_heartbeat
from node_agent.backoff import schedule_retry
from node_agent.config import Destination
from node_agent.ledger import ARROWS, IllegalTransition, Ledger, LedgerError
from node_agent.pipeline import InstanceRejected, Pipeline, mark_stable
from tests.node_agent.test_pipeline_queue import _store_study, agent_parts  # noqa: F401
from wire.api import QuarantineReason


def _rejecting(bad: set[str]):  # type: ignore[no-untyped-def]
    def transform(path: Path, _d: Destination, target: Path) -> None:
        if str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) in bad:
            raise InstanceRejected(
                "pixel scrub: text-like marks left after the scrub", QuarantineReason.BURNED_IN_TEXT
            )
        target.write_bytes(path.read_bytes())

    return transform


def _study_state(state, study_uid: str) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    with state.connect() as conn:
        row = conn.execute(
            "SELECT state, last_error FROM studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
    return row["state"], row["last_error"]


def test_all_quarantined_partial_and_sealed_studies_are_told_apart(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _cf, state, spool, identity, _r, keys = agent_parts
    every = _store_study(spool, tmp_path / "a", 2)
    some = _store_study(spool, tmp_path / "b", 3)
    clean = _store_study(spool, tmp_path / "c", 1)
    bad = {*every.sop_instance_uids, some.sop_instance_uids[0]}
    pipeline = Pipeline(
        config,
        state,
        identity,
        lambda org: keys,
        lambda mods: [Destination(org="org-r", mode="deidentified")],
        _rejecting(bad),
    )
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 2  # nothing was sealed for the all-quarantined study

    got_state, reason = _study_state(state, every.study_instance_uid)
    assert got_state == "quarantined" and reason is not None and "all 2" in reason
    got_state, reason = _study_state(state, some.study_instance_uid)
    assert got_state == "partial" and reason is not None and "1 of 3" in reason
    assert _study_state(state, clean.study_instance_uid) == ("sealed", None)

    beat = build_heartbeat(state, config.agent.data_dir, None)
    assert beat.partial_studies == 2 and beat.quarantined_instances == 3
    assert beat.quarantine_reasons == {QuarantineReason.BURNED_IN_TEXT: 3}
    assert beat.held_studies == 0 and beat.queue_depth == 2
    for needle in [*every.identifying_strings, every.study_instance_uid]:
        assert needle not in beat.model_dump_json()

    # the operator releases the partial study's instance: it goes out, the study is whole
    item = next(i for i in operations.quarantine_list(state) if i.ref in some.sop_instance_uids)
    bad.discard(item.ref)
    operations.release(state, item.id)
    assert _study_state(state, some.study_instance_uid)[0] == "stable"
    assert pipeline.process_stable() == 1
    assert _study_state(state, some.study_instance_uid) == ("sealed", None)
    after = build_heartbeat(state, config.agent.data_dir, None)
    assert after.partial_studies == 1
    assert after.quarantine_reasons == {QuarantineReason.BURNED_IN_TEXT: 2}  # released: gone


def test_held_study_is_counted_and_a_new_policy_sends_it_again(
    agent_parts,  # noqa: F811
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, _r, keys = agent_parts
    study = _store_study(spool, tmp_path, 1)
    pipeline = Pipeline(config, state, identity, lambda org: keys, lambda mods: [])
    mark_stable(state, 0.0)
    pipeline.process_stable()
    assert _study_state(state, study.study_instance_uid)[0] == "held"
    assert build_heartbeat(state, config.agent.data_dir, None).held_studies == 1
    assert Ledger(state).release_held() == 1
    assert _study_state(state, study.study_instance_uid)[0] == "stable"


def test_an_arrow_the_table_lacks_is_refused_and_nothing_is_written(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _cf, state, spool, identity, _r, keys = agent_parts
    _store_study(spool, tmp_path, 1)
    pipeline = Pipeline(
        config, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )
    mark_stable(state, 0.0)
    pipeline.process_stable()
    bundle_id = operations.queue(state)[0]["bundle_id"]
    ledger = Ledger(state)
    with pytest.raises(IllegalTransition, match="sealed -> delivered"):
        ledger.bundle_delivered(bundle_id, "{}")  # never claimed for upload
    assert operations.queue(state)[0]["state"] == "sealed"
    with pytest.raises(LedgerError, match="no row"):
        ledger.bundle_failed("0" * 32, "x")
    # delivered is final: an operator's retry is refused with a clear message
    with state.transaction() as conn:
        conn.execute("UPDATE outbox SET state = 'delivered'")
    with pytest.raises(operations.OperationError, match="already delivered"):
        operations.retry(state, bundle_id)
    assert ("delivered", "sealed") not in ARROWS["outbox"]


def test_a_delivery_error_reaches_the_heartbeat_and_counts_as_waiting(agent_parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _cf, state, *_ = agent_parts
    ledger = Ledger(state)
    ledger.delivery_downloading("b" * 32, "org-b/site-1")
    reason = "the local PACS refuses SOP class 1.2.3.4 in every transfer syntax offered"
    schedule_retry(state, "inbound", "b" * 32, reason, base=1, cap=2)
    beat = build_heartbeat(state, config.agent.data_dir, None)
    assert beat.inbound_waiting == 1 and beat.last_error == reason
    assert beat.quarantine_reasons == {}  # retried, not in quarantine
    ledger.delivery_stored("b" * 32, 3)
    assert ledger.delivery_acked("b" * 32)
    assert build_heartbeat(state, config.agent.data_dir, None).inbound_waiting == 0
    with pytest.raises(IllegalTransition, match="acked -> stored"):
        ledger.delivery_stored("b" * 32, 3)


def test_a_refused_delivery_counts_as_a_delivery_reason_until_retried(agent_parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _cf, state, *_ = agent_parts
    ledger = Ledger(state)
    ledger.delivery_downloading("c" * 32, "org-b/site-1")
    ledger.delivery_failed("c" * 32, "the bundle's signature does not verify")
    beat = build_heartbeat(state, config.agent.data_dir, None)
    assert beat.quarantine_reasons == {QuarantineReason.DELIVERY: 1}
    [item] = operations.quarantine_list(state)
    assert (item.kind, item.category) == ("delivery", "delivery")
    operations.release(state, item.id)
    assert build_heartbeat(state, config.agent.data_dir, None).quarantine_reasons == {}


def test_an_older_state_database_gets_categories_for_what_it_already_quarantined(
    tmp_path: Path,
) -> None:
    import sqlite3

    from node_agent.state import SCHEMA_VERSION, AgentState

    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:  # a version 7 database, before categories existed
        conn.execute(
            "CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
            "ref TEXT NOT NULL, reason TEXT NOT NULL, path TEXT, created_at REAL NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO quarantine(kind, ref, reason, created_at) VALUES (?, ?, ?, 0)",
            [("delivery", "d" * 32, "refused"), ("instance", "1.2.3", "verification failed")],
        )
        conn.execute("PRAGMA user_version = 7")
    state = AgentState(path)
    assert [i.category for i in operations.quarantine_list(state)] == ["delivery", "other"]
    with state.connect() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
