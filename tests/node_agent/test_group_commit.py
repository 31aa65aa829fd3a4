"""Group commit of the spool's rows: concurrent associations share commits, and no caller
returns (the SCP's C-STORE success) before the commit holding its row has returned."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from node_agent.group_commit import GroupCommit
from node_agent.spool import Spool
from node_agent.state import AgentState
from node_agent.synthetic import write_synthetic_study


def test_concurrent_callers_share_commits_and_return_only_after_theirs() -> None:
    committed: set[int] = set()
    batches: list[list[int]] = []

    def commit(items: list[int]) -> None:
        time.sleep(0.05)  # a slow disk flush: callers pile up behind it
        batches.append(items)
        committed.update(items)

    group: GroupCommit[int] = GroupCommit(commit)
    early: list[int] = []

    def caller(item: int) -> None:
        group.submit(item)
        if item not in committed:
            early.append(item)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert early == []
    assert sorted(i for batch in batches for i in batch) == list(range(12))  # each once
    assert len(batches) < 12  # shared


def test_a_failed_commit_fails_every_caller_of_its_batch_and_the_next_one_works() -> None:
    fail = {"now": True}
    gate = threading.Event()

    def commit(items: list[int]) -> None:
        gate.wait(5)
        if fail["now"]:
            raise OSError("disk full")

    group: GroupCommit[int] = GroupCommit(commit)
    errors: list[BaseException | None] = []

    def caller(item: int) -> None:
        try:
            group.submit(item)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join()
    assert errors and all(isinstance(e, OSError) for e in errors)
    fail["now"] = False
    group.submit(99)  # the group is usable again


def test_spool_from_four_associations_records_every_instance(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    study = write_synthetic_study(tmp_path / "in", instances=24, rows=64, columns=64)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shares = [study.files[i::4] for i in range(4)]

    def association(files: list[Path]) -> None:
        for source in files:
            received = incoming / source.name
            received.write_bytes(source.read_bytes())
            spool.store_file(received)

    threads = [threading.Thread(target=association, args=(s,)) for s in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with state.connect() as conn:
        rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT study_uid) FROM instances")
        assert tuple(rows.fetchone()) == (24, 1)
    assert len(list((tmp_path / "spool").rglob("*.dcm"))) == 24


@pytest.mark.parametrize("replace", [False, True])
def test_an_instance_received_again_with_other_content_replaces_the_file(
    tmp_path: Path, replace: bool
) -> None:
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    study = write_synthetic_study(tmp_path / "in", instances=1, rows=16, columns=16)
    first = spool.store(study.files[0].read_bytes())
    assert not first.duplicate
    data = study.files[0].read_bytes()
    if replace:
        data = data[:-2] + b"\x01\x02"  # the same instance, other pixels
    again = spool.store(data)
    assert again.duplicate is not replace
    assert again.path.read_bytes() == data
