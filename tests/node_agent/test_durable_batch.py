"""The spool's batch durability: files and names on disk before any row of their batch, and
a batch that cannot be named durably records nothing (every C-STORE of it fails)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from node_agent.durable_batch import Staged, name_durably
from node_agent.ledger import Received
from node_agent.spool import Spool, _Arrival
from node_agent.state import AgentState
from node_agent.synthetic import write_synthetic_study


def _staged(folder: Path, names: list[str]) -> list[Staged]:
    folder.mkdir(parents=True, exist_ok=True)
    batch = []
    for name in names:
        staged = folder / f".{name}.part"
        staged.write_bytes(name.encode() * 100)
        batch.append(Staged(staged, folder / name))
    return batch


def test_a_batch_gets_its_final_names_with_its_contents(tmp_path: Path) -> None:
    batch = _staged(tmp_path / "a", ["1.dcm", "2.dcm"]) + _staged(tmp_path / "b", ["3.dcm"])
    name_durably(batch)
    for item in batch:
        assert not item.staged.exists()
        assert item.target.read_bytes() == item.target.name.encode() * 100


def test_a_failed_batch_records_no_row_and_the_instance_can_come_again(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    study = write_synthetic_study(tmp_path / "in", instances=2, rows=16, columns=16)
    folder = tmp_path / "spool" / "s"
    batch = _staged(folder, ["a.dcm", "b.dcm"])
    batch[1].staged.unlink()  # e.g. the disk lost it: naming the batch fails
    rows = [
        _Arrival(item, Received(f"1.2.{i}", "1.2.9", str(item.target), "x", 1, None, None))
        for i, item in enumerate(batch)
    ]
    with pytest.raises(OSError):
        spool._record(rows)
    with state.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 0
    stored = spool.store(study.files[0].read_bytes())  # the group is usable again
    assert not stored.duplicate and stored.path.exists()


def test_a_row_seen_while_associations_store_always_has_its_whole_file(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    study = write_synthetic_study(tmp_path / "in", instances=24, rows=64, columns=64)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    done = threading.Event()
    broken: list[str] = []

    def association(files: list[Path]) -> None:
        for source in files:
            received = incoming / source.name
            received.write_bytes(source.read_bytes())
            spool.store_file(received)

    def reader() -> None:  # the pipeline's view: a row means a whole, named file
        while not done.is_set():
            with state.connect() as conn:
                seen = conn.execute("SELECT path, sha256 FROM instances").fetchall()
            for path, digest in seen:
                data = Path(path).read_bytes() if Path(path).exists() else b""
                if hashlib.sha256(data).hexdigest() != digest:
                    broken.append(path)
        state.close()

    watcher = threading.Thread(target=reader)
    watcher.start()
    threads = [threading.Thread(target=association, args=(study.files[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert broken == []
    assert len(list((tmp_path / "spool").rglob("*.dcm"))) == 24
    assert not list((tmp_path / "spool").rglob("*.part"))
