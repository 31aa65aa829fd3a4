"""kill -9 at random points during 20 transfers: every study arrives exactly once, intact.

Real processes (`hexchange-hub serve`, two `hexchange-agent run`, dcmtk `storescu`). A seeded
chaos thread SIGKILLs a process at random moments while 20 studies flow from a modality through
agent A and the hub to agent B, and restarts it each time. A modality whose association breaks
(storescu fails) sends the whole study again, as a real one would.

"Exactly once" is asserted where it can be seen:
- B's store holds each sent SOP Instance once (file count and SOP UIDs), byte-identical to what A
  acknowledged to the modality, pixel data identical to the modality's files;
- A sealed each SOP Instance into exactly one bundle for org-b, every outbox row is final
  ('delivered'), and the hub's complete bundles are exactly those bundles: one per study
  (a crash between sealing and the outbox row re-seals under a new id, but the orphan is
  never uploaded), with one delivery each, acknowledged by B;
- B's inbound table holds those bundles, all acknowledged.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.factories.dicom import FakePatient, SyntheticStudy, make_ct_study
from tests.federation import AgentHandle, Federation, storescu

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk storescu not installed"),
]

STUDIES = 20
INSTANCES = 3
SEED = int(os.environ.get("HEXCHANGE_CHAOS_SEED", "20261104"))


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path / "fed", quiet_period=2.0)
    try:
        fed.start_hub()
        yield fed
    finally:
        fed.stop()
        if fed.hub_process is not None and fed.hub_process.poll() is None:
            fed.hub_process.kill()


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _studies(folder: Path) -> list[SyntheticStudy]:
    return [
        make_ct_study(
            folder / f"study-{i:02d}",
            instances=INSTANCES,
            patient=FakePatient(name=f"Chaos^Patient^{i:02d}", patient_id=f"PID-K9-{i:04d}"),
            accession=f"ACCK9{i:06d}",
        )
        for i in range(STUDIES)
    ]


@dataclass
class Chaos:
    """SIGKILLs the targets at seeded random moments and restarts each one at once."""

    federation: Federation
    targets: dict[str, AgentHandle | None]  # name -> agent, None = the hub
    seed: int
    kills: int
    interval: tuple[float, float] = (1.0, 3.5)
    events: list[str] = field(default_factory=list)
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(self.seed)
        start = time.monotonic()
        try:
            for _ in range(self.kills):
                if self.stop.wait(rng.uniform(*self.interval)):
                    return
                name = rng.choice(sorted(self.targets))
                handle = self.targets[name]
                down = rng.uniform(0.0, 1.0)
                self.events.append(f"t={time.monotonic() - start:5.1f}s kill -9 {name}")
                if handle is None:
                    process = self.federation.hub_process
                    assert process is not None
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    time.sleep(down)
                    self.federation.start_hub()
                else:
                    assert handle.process is not None
                    handle.process.send_signal(signal.SIGKILL)
                    handle.process.wait()
                    time.sleep(down)
                    self.federation.start_agent(handle)
        except BaseException as exc:  # reported by the test
            self.error = exc


@dataclass
class Modality:
    """Sends studies one by one; a failed association means the whole study is sent again."""

    port: int
    ae_title: str
    studies: list[SyntheticStudy]
    seed: int
    resends: int = 0
    error: str | None = None

    def run(self) -> None:
        rng = random.Random(self.seed)
        for study in self.studies:
            deadline = time.monotonic() + 60
            while True:
                result = storescu(self.port, self.ae_title, study.files)
                if result.returncode == 0 and b"E:" not in result.stderr:
                    break
                self.resends += 1
                if time.monotonic() > deadline:
                    self.error = result.stderr.decode()[-500:]
                    return
                time.sleep(0.3)
            time.sleep(rng.uniform(0.1, 0.8))


def _run_chaos(
    federation: Federation,
    tmp_path: Path,
    kill: list[str],
    *,
    seed: int,
    kills: int,
) -> None:
    b = federation.add_agent("org-b", "archive")
    a = federation.add_agent(
        "org-a", "clinic-a", destinations=[("org-b", "identified")], inbound=False
    )
    studies = _studies(tmp_path / "modality")
    names: dict[str, AgentHandle | None] = {"agent-a": a, "agent-b": b, "hub": None}
    chaos = Chaos(federation, {n: names[n] for n in kill}, seed=seed, kills=kills)
    modality = Modality(a.dicom_port, a.ae_title, studies, seed=seed + 1)
    threads = [
        threading.Thread(target=chaos.run, name="chaos"),
        threading.Thread(target=modality.run, name="modality"),
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    chaos.stop.set()
    report = "\n".join(chaos.events)
    print(f"chaos (seed {seed}):\n{report}\nmodality resends: {modality.resends}")
    assert chaos.error is None, f"restart failed: {chaos.error!r}\n{report}"
    assert modality.error is None, f"modality gave up: {modality.error}"
    assert len(chaos.events) == kills

    sent = {uid: s for s in studies for uid in s.sop_instance_uids}
    a_db = a.data_dir / "state.db"
    b_db = b.data_dir / "state.db"

    def settled() -> bool:
        if len(b.received_files()) < len(sent):
            return False
        outbox = _rows(a_db, "SELECT state FROM outbox")
        inbound = _rows(b_db, "SELECT state FROM inbound")
        return (
            bool(outbox)
            and all(r["state"] == "delivered" for r in outbox)
            and len(inbound) == len(outbox)
            and all(r["state"] == "acked" for r in inbound)
        )

    federation.wait_for(settled, 90, f"all studies delivered and acknowledged\n{report}")
    print(f"settled {time.monotonic() - started:.1f}s after the first send")

    # B's store: each SOP Instance exactly once, byte-identical to what A acknowledged
    received = b.received_files()
    assert len(received) == len(sent)
    by_uid = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in received}
    assert set(by_uid) == set(sent)
    spooled = {r["sop_uid"]: Path(r["path"]) for r in _rows(a_db, "SELECT * FROM instances")}
    for uid, study in sent.items():
        got = by_uid[uid]
        assert got.read_bytes() == spooled[uid].read_bytes(), f"{uid} differs from A's spool"
        original = dcmread(study.files[study.sop_instance_uids.index(uid)])
        opened = dcmread(got)
        assert opened.PixelData == original.PixelData
        assert opened == original  # every data element, not only the pixels

    # A: each SOP sealed into one bundle for org-b; every outbox row final
    placements = _rows(
        a_db, "SELECT sop_uid, bundle_id FROM bundle_instances WHERE dest_org='org-b'"
    )
    assert sorted(r["sop_uid"] for r in placements) == sorted(sent)
    outbox = _rows(a_db, "SELECT bundle_id, state FROM outbox")
    assert {r["state"] for r in outbox} == {"delivered"}
    assert {r["bundle_id"] for r in placements} == {r["bundle_id"] for r in outbox}

    # hub: exactly those bundles, complete, one delivery each, acknowledged by org-b
    bundles = json.loads(federation.hub_cli("bundles", "--json"))
    assert {x["bundle_id"] for x in bundles} == {r["bundle_id"] for r in outbox}
    assert len(bundles) == STUDIES, "a study was split or sent twice"
    assert all(x["state"] == "complete" for x in bundles)
    assert all(x["deliveries"] == {"org-b": "acked"} for x in bundles)
    assert sum(x["instances"] for x in bundles) == len(sent)

    # B: those bundles, all acknowledged
    inbound = _rows(b_db, "SELECT bundle_id, state FROM inbound")
    assert {r["bundle_id"] for r in inbound} == {x["bundle_id"] for x in bundles}
    assert {r["state"] for r in inbound} == {"acked"}


def test_kill9_sending_agent(federation: Federation, tmp_path: Path) -> None:
    _run_chaos(federation, tmp_path, ["agent-a"], seed=SEED, kills=7)


def test_kill9_receiving_agent_and_hub(federation: Federation, tmp_path: Path) -> None:
    _run_chaos(federation, tmp_path, ["agent-b", "hub"], seed=SEED + 1, kills=7)
