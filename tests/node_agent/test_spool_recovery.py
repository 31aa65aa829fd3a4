"""The spool's rows are committed without a WAL fsync; after a power loss that took the last of
them, the next start registers their durable, labelled files again (`Spool.recover`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from node_agent import operations
from node_agent.ledger import Ledger
from node_agent.spool import SOURCE_XATTR, Spool, study_folder
from node_agent.state import AgentState
from tests.factories.dicom import make_ct_study

REPO = Path(__file__).resolve().parents[2]


def _rows(state: AgentState) -> dict[str, tuple[str, str | None, str, int]]:
    with state.connect() as conn:
        return {
            r["sop_uid"]: (r["state"], r["source_ae"], r["sha256"], r["size"])
            for r in conn.execute("SELECT * FROM instances")
        }


def test_rows_lost_with_the_wal_tail_come_back_from_the_files(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "study", instances=3)
    db = tmp_path / "data" / "state.db"
    state = AgentState(db)
    spool = Spool(tmp_path / "data" / "spool", state)
    spool.store(study.files[0].read_bytes(), quiet_s=30.0, source_ae="CT_ROOM_1")
    # what was on disk at the last flush: the WAL up to here (the later commits are not
    # fsynced, so a power loss may take them while the files, fsynced, stay)
    disk = tmp_path / "disk-at-flush"
    disk.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy2(f"{db}{suffix}", disk / f"state.db{suffix}")
    stored = [
        spool.store(p.read_bytes(), quiet_s=30.0, source_ae="CT_ROOM_1") for p in study.files[1:]
    ]
    before = _rows(state)
    assert len(before) == 3
    state.close()
    for suffix in ("", "-wal", "-shm"):  # the power loss
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for suffix in ("", "-wal"):
        shutil.copy2(disk / f"state.db{suffix}", f"{db}{suffix}")

    state = AgentState(db)
    assert len(_rows(state)) == 1
    spool = Spool(tmp_path / "data" / "spool", state)
    recovered = spool.recover()
    assert (recovered.registered, recovered.set_aside) == (2, 0)
    assert _rows(state) == before  # same source AE, hash and size; spooled
    with state.connect() as conn:
        study_row = conn.execute("SELECT state, quiet_s FROM studies").fetchall()
    assert [tuple(r) for r in study_row] == [("receiving", 30.0)]
    assert all(s.path.exists() for s in stored)
    assert spool.recover().registered == 0  # idempotent


def test_unparseable_and_discarded_files_are_not_registered(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "study", instances=2)
    state = AgentState(tmp_path / "data" / "state.db")
    spool = Spool(tmp_path / "data" / "spool", state)
    kept, dropped = (spool.store(p.read_bytes(), source_ae="CT1") for p in study.files)
    # a quarantined instance discarded by the admin stays gone after a restart
    Ledger(state).quarantine_instance(dropped.sop_uid, "burned-in text", str(dropped.path))
    with state.connect() as conn:
        item = conn.execute("SELECT id FROM quarantine").fetchone()[0]
    operations.discard(state, item)
    assert not dropped.path.exists()
    # a labelled file that is not DICOM (e.g. a disk error), and an unlabelled orphan
    folder = study_folder(spool.root, kept.study_uid)
    broken = folder / "1.2.826.0.1.3680043.8.498.1.dcm"
    broken.write_bytes(b"not a DICOM file")
    os.setxattr(broken, SOURCE_XATTR, b'{"quiet_s": null, "source_ae": "CT1"}')
    orphan = folder / "1.2.826.0.1.3680043.8.498.2.dcm"
    orphan.write_bytes(b"unlabelled")

    recovered = spool.recover()
    assert (recovered.registered, recovered.set_aside) == (0, 1)
    assert set(_rows(state)) == {kept.sop_uid}
    assert not broken.exists() and orphan.exists()
    aside = spool.root / ".unreadable" / f"{folder.name}-{broken.name}"
    assert aside.read_bytes() == b"not a DICOM file"
    with state.connect() as conn:
        quarantined = conn.execute("SELECT kind, category, path FROM quarantine").fetchall()
    assert [tuple(r) for r in quarantined] == [("file", "malformed", str(aside))]
    assert spool.recover() == recovered.__class__(0, 0)


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from node_agent.spool import Spool
    from node_agent.state import AgentState
    data, files = Path(sys.argv[1]), sorted(Path(sys.argv[2]).glob("*.dcm"))
    spool = Spool(data / "spool", AgentState(data / "state.db"))
    print("ready", flush=True)
    while True:
        for path in files:
            spool.store(path.read_bytes(), quiet_s=5.0, source_ae="MOD")
    """
)


def test_after_kill_9_every_spool_file_has_its_row(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "study", instances=40)
    data = tmp_path / "data"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data), str(tmp_path / "study")],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
    time.sleep(0.05)  # in the middle of the first pass
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    state = AgentState(data / "state.db")
    Spool(data / "spool", state).recover()
    spooled = (data / "spool").glob("*/*.dcm")  # not .incoming: what no sender heard of
    files = {p.stem for p in spooled if not p.parent.name.startswith(".")}
    rows = _rows(state)
    assert files and set(rows) == files
    assert {ae for _s, ae, _h, _n in rows.values()} == {"MOD"}
    assert len(files) <= len(study.files)


def test_partial_writes_in_incoming_are_removed_at_start(tmp_path: Path) -> None:
    """A process killed while writing an instance to `.incoming` (before the sender heard
    success) leaves a partial file there; the next start removes it rather than letting such
    files fill the disk, and registers nothing for it."""
    study = make_ct_study(tmp_path / "study", instances=1)
    state = AgentState(tmp_path / "data" / "state.db")
    spool = Spool(tmp_path / "data" / "spool", state)
    incoming = spool.root / ".incoming"
    incoming.mkdir(parents=True)
    partial = incoming / "tmpabc123.dcm"
    partial.write_bytes(study.files[0].read_bytes()[:1000])
    recovered = spool.recover()
    assert (recovered.registered, recovered.partials_removed) == (0, 1)
    assert not partial.exists()
    assert _rows(state) == {}
    stored = spool.store(study.files[0].read_bytes())  # the folder still works afterwards
    assert stored.path.exists() and list(incoming.iterdir()) == []
    assert spool.recover().partials_removed == 0


def test_without_extended_attributes_every_row_is_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem that refuses user extended attributes (some network mounts), a spool
    file carries no label `recover` could rebuild its row from, so the row's commit must be
    fsynced before the sender hears success: the spool notices the refusal on the first
    instance and flushes that row's commit and every later one."""
    import errno

    study = make_ct_study(tmp_path / "study", instances=3)
    state = AgentState(tmp_path / "data" / "state.db")
    spool = Spool(tmp_path / "data" / "spool", state)

    def refuse(*_args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    flushes: list[bool] = []
    transaction = state.transaction

    def spy(*, flush: bool = True):  # type: ignore[no-untyped-def]
        flushes.append(flush)
        return transaction(flush=flush)

    monkeypatch.setattr(state, "transaction", spy)
    stored = [spool.store(p.read_bytes(), quiet_s=30.0, source_ae="CT1") for p in study.files]
    assert flushes and all(flushes)  # no commit of these rows went unflushed
    assert len(_rows(state)) == 3
    for s in stored:
        with pytest.raises(OSError):
            os.getxattr(s.path, SOURCE_XATTR)
    # and a restart finds nothing to register (the rows are there; no labels to read)
    assert Spool(tmp_path / "data" / "spool", state).recover().registered == 0
