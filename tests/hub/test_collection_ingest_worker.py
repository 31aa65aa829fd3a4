"""Collection bundles are ingested by the hub's background worker, not inside the agent's
completion request: the completion queues the bundle durably and returns its receipt; the
worker (started by the public app's lifespan) opens, verifies, stores and indexes it in
batches, each bundle under a lease so that several hub processes never ingest one twice; a
failing instance is quarantined while the rest are indexed; a failure is shown to the sending
org's admins and retried; a restart resumes a half-done bundle without duplicates.

One real hub per database backend for the module (worker poll interval 0.2 s)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from hub.bootstrap import init_hub
from hub.collections.batch import add_batch
from hub.collections.blobs import InstanceFiles
from hub.collections.bundles import ingest_pending
from hub.collections.keys import FileKeyProvider
from hub.collections.lease import IngestLeases
from hub.collections.models import (
    Collection,
    CollectionIngest,
    CollectionInstance,
    CollectionQuarantine,
    CollectionSequenceValue,
    CollectionStudy,
)
from hub.collections.store import Source
from hub.main import create_app
from hub.models import AuditEvent, Delivery
from hub.settings import HubSettings
from hub.storage import LocalBlobStore
from tests.factories.collections import deidentified_study, make_collection, part10
from tests.hub.conftest import (
    SKIP_POSTGRES_ENV,
    EnrolledSite,
    Hub,
    Sealed,
    free_port,
    postgres_database,
    running_hub,
)
from wire.collection_key import collection_recipient
from wire.envelope import RecipientKey
from wire.payload import write_payload

NAME = "cohort"
RECIPIENT = collection_recipient(NAME)
IDENTITY = ("Quixote", "MRN")


@dataclass
class World:
    hub: Hub
    site: EnrolledSite
    keys: list[RecipientKey]
    admin_a: object  # httpx.Client of org-a's admin

    def seal(self, files: list[bytes]) -> Sealed:
        out = io.BytesIO()
        write_payload(out, [(f"{i:06d}.dcm", io.BytesIO(d), len(d)) for i, d in enumerate(files)])
        return self.site.seal(
            out.getvalue(), [RECIPIENT], mode="deidentified", recipients=self.keys,
            chunk_size=64 * 1024,
        )  # fmt: skip

    def leases(self) -> IngestLeases:
        return IngestLeases(self.hub.engine, self.hub.settings.data_dir / "locks")

    def job(self, bundle_id: str) -> CollectionIngest:
        with self.hub.session() as session:
            job = session.get(CollectionIngest, (bundle_id, RECIPIENT))
            assert job is not None
            return job

    def indexed(self, sop_uids: list[str]) -> list[str]:
        with self.hub.session() as session:
            return list(
                session.exec(
                    select(CollectionInstance.sop_uid).where(
                        col(CollectionInstance.sop_uid).in_(sop_uids)
                    )
                ).all()
            )

    def ingest_events(self, bundle_id: str) -> list[dict[str, int]]:
        with self.hub.session() as session:
            rows = session.exec(
                select(AuditEvent.detail).where(
                    AuditEvent.action == "collection.ingest",
                    AuditEvent.subject == f"{NAME}:{bundle_id}",
                )
            ).all()
        return [json.loads(detail) for detail in rows]


def wait_for(
    done: Callable[[], bool], what: str, timeout_s: float = 30.0, every_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(every_s)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    from node_agent.hubclient import HubClient
    from node_agent.recipients import RecipientDirectory
    from tests.hub.test_collections_agent_path import _identity

    tmp = tmp_path_factory.mktemp("ingest-worker")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'hub-data' / 'hub.db'}"
        else:
            if os.environ.get(SKIP_POSTGRES_ENV) == "1":
                pytest.skip(f"{SKIP_POSTGRES_ENV}=1")
            url = stack.enter_context(postgres_database())
        settings = HubSettings(
            data_dir=tmp / "hub-data", database_url=url, node_port=free_port(),
            public_port=free_port(), collection_ingest_poll_s=0.2, collection_ingest_batch=3,
        )  # fmt: skip
        init_hub(settings)
        hub = Hub(settings=settings, backend=request.param, workdir=tmp / "work")
        stack.enter_context(running_hub(settings))
        stack.callback(hub.close)
        site = hub.enroll("org-a", "site-a")
        admin_a = hub.person("alice", "org-admin", "org-a")
        hub.person("bob", "org-admin", "org-b")
        with hub.session() as session:
            make_collection(session, settings, NAME, "org-b")
        hub.allow("org-a", "site-a", RECIPIENT, mode="deidentified")
        client = HubClient(hub.node_url, _identity(site))
        stack.callback(client.close)
        keys = RecipientDirectory(client, _identity(site)).keys_for(RECIPIENT)
        yield World(hub, site, keys, admin_a)


def test_completion_returns_before_indexing_and_the_worker_indexes(world: World) -> None:
    made = deidentified_study(4)
    sealed = world.seal(made.files)
    with world.leases().hold(f"{sealed.bundle_id}/{RECIPIENT}") as held:
        assert held  # no worker can take this bundle meanwhile
        started = time.monotonic()
        world.site.push(sealed)  # a receipt: the bundle is durable and queued
        assert time.monotonic() - started < 5
        time.sleep(0.5)  # longer than the worker's poll interval
        assert world.job(sealed.bundle_id).state == "pending"
        assert world.indexed(made.sop_uids) == []
        with world.hub.session() as session:
            assert session.get(Delivery, (sealed.bundle_id, RECIPIENT)).state == "queued"  # type: ignore[union-attr]
    wait_for(lambda: world.job(sealed.bundle_id).state == "done", "the worker")
    assert sorted(world.indexed(made.sop_uids)) == sorted(made.sop_uids)
    assert world.ingest_events(sealed.bundle_id) == [
        {"stored": 4, "duplicate": 0, "quarantined": 0, "conflict": 0}
    ]
    with world.hub.session() as session:
        assert session.get(Delivery, (sealed.bundle_id, RECIPIENT)).state == "acked"  # type: ignore[union-attr]
        study = session.exec(
            select(CollectionStudy).where(CollectionStudy.study_uid == made.study_uid)
        ).one()
        assert (study.instance_count, study.series_count) == (4, 1)


def test_a_failing_instance_is_quarantined_while_the_rest_are_indexed(world: World) -> None:
    made = deidentified_study(5)
    identified = part10(made.originals[1])
    not_a_number = _instance_number_not_a_number(made.files[4])  # no DICOM JSON for it
    files = [made.files[0], identified, made.files[2], b"not a DICOM file", made.files[3]]
    sealed = world.seal([*files, not_a_number])
    world.site.push(sealed)
    wait_for(lambda: world.job(sealed.bundle_id).state == "done", "the worker")
    good = [made.sop_uids[i] for i in (0, 2, 3)]
    assert sorted(world.indexed(made.sop_uids)) == sorted(good)
    assert world.ingest_events(sealed.bundle_id) == [
        {"stored": 3, "duplicate": 0, "quarantined": 3, "conflict": 0}
    ]
    shown = world.admin_a.get("/api/v1/orgs/org-a/collection-quarantine")  # type: ignore[attr-defined]
    assert shown.status_code == 200, shown.text
    mine = [q for q in shown.json() if q["bundle_id"] == sealed.bundle_id]
    assert len(mine) == 3
    codes = {f["code"] for q in mine for f in q["findings"]}
    assert {"identity-not-marked", "unreadable", "unrepresentable-value"} <= codes
    named = [f for q in mine for f in q["findings"] if f["code"] == "unrepresentable-value"]
    assert [(f["tag"], f["keyword"]) for f in named] == [("(0020,0013)", "InstanceNumber")]
    assert not any(needle in shown.text for needle in IDENTITY)


def _instance_number_not_a_number(data: bytes) -> bytes:
    """The file with its Instance Number (IS) bytes made letters: pydicom reads the file, the
    verification passes, but the value is no integer string, so it has no DICOM JSON."""
    at = data.index(b"\x20\x00\x13\x00IS") + 6
    length = int.from_bytes(data[at : at + 2], "little")
    return data[: at + 2] + b"X" * length + data[at + 2 + length :]


def test_a_failed_bundle_is_shown_then_two_more_hub_processes_never_ingest_one_twice(
    world: World,
) -> None:
    """With the operator's key file away, the worker records a failure the sending org's
    admins see; with it back, the running hub, two more app instances on the same database
    (each its own worker; one verifying in two processes of its own) and `hexchange-hub
    collection ingest` all go for the same bundles: each is ingested exactly once."""
    hub = world.hub
    key_path = hub.settings.collection_key_path
    hidden = key_path.with_suffix(".away")
    key_path.rename(hidden)
    studies = [deidentified_study(4) for _ in range(4)]
    try:
        sealed = [world.seal(made.files) for made in studies]
        for bundle in sealed:
            world.site.push(bundle)
        for bundle in sealed:
            wait_for(lambda b=bundle: world.job(b.bundle_id).state == "failed", "a failure")
        shown = world.admin_a.get("/api/v1/orgs/org-a/collection-ingest")  # type: ignore[attr-defined]
        assert shown.status_code == 200, shown.text
        listed = {j["bundle_id"]: j for j in shown.json()}
        assert set(listed) >= {b.bundle_id for b in sealed}
        first = listed[sealed[0].bundle_id]
        assert first["state"] == "failed" and first["collection"] == NAME
        assert "collection key file" in first["error"] and first["next_attempt_at"]
        assert not any(needle in shown.text for needle in IDENTITY)
    finally:
        hidden.rename(key_path)

    in_processes = hub.settings.model_copy(update={"collection_ingest_processes": 2})
    apps = [create_app(hub.settings), create_app(in_processes)]
    with ExitStack() as stack:
        for app in apps:  # the lifespan starts each app's worker
            stack.enter_context(TestClient(app, base_url="https://testserver"))
            stack.callback(app.state.services.close)
        with hub.engine.begin() as conn:  # due now, for every worker at once
            conn.exec_driver_sql("UPDATE collection_ingest SET not_before = queued_at")
        cli = threading.Thread(target=_cli_ingest, args=(hub,))
        cli.start()
        for bundle in sealed:
            wait_for(lambda b=bundle: world.job(b.bundle_id).state == "done", "every bundle")
        cli.join(30)
    for bundle, made in zip(sealed, studies, strict=True):
        assert world.ingest_events(bundle.bundle_id) == [
            {"stored": 4, "duplicate": 0, "quarantined": 0, "conflict": 0}
        ]
        assert sorted(world.indexed(made.sop_uids)) == sorted(made.sop_uids)
    assert world.admin_a.get("/api/v1/orgs/org-a/collection-ingest").json() == []  # type: ignore[attr-defined]
    other = hub.person("carol", "org-admin", "org-c")
    assert other.get("/api/v1/orgs/org-a/collection-ingest").status_code == 404


def _cli_ingest(hub: Hub) -> None:
    """What `hexchange-hub collection ingest` does, from another thread."""
    with hub.session() as session:
        ingest_pending(
            session, LocalBlobStore(hub.settings.blob_dir),
            InstanceFiles(hub.settings.data_dir / "collections"),
            lambda: FileKeyProvider(hub.settings.collection_key_path), IngestLeases(
                hub.engine, hub.settings.data_dir / "locks"
            ),
        )  # fmt: skip


def test_a_restart_resumes_a_half_ingested_bundle_without_duplicates(world: World) -> None:
    """A worker killed after its first batch committed (and after writing a file of the next
    batch, not indexed): the next worker finishes the bundle; what was committed counts as
    duplicates, no instance or quarantine row twice, study counts right."""
    hub = world.hub
    made = deidentified_study(5)
    identified = part10(made.originals[1])
    files = [made.files[0], identified, made.files[2], made.files[3], made.files[4]]
    sealed = world.seal(files)
    store = InstanceFiles(hub.settings.data_dir / "collections")
    with world.leases().hold(f"{sealed.bundle_id}/{RECIPIENT}") as held:
        assert held
        world.site.push(sealed)
        with hub.session() as session, ThreadPoolExecutor(4) as pool:
            collection = session.exec(select(Collection).where(Collection.name == NAME)).one()
            source = Source(
                actor="site:org-a/site-a", sender_org="org-a", sender_site="site-a",
                bundle_id=sealed.bundle_id,
            )  # fmt: skip
            add_batch(session, store, collection, files[:3], source, pool)  # the first batch
            store.put_unsynced(files[3], hashlib.sha256(files[3]).hexdigest())
        assert world.job(sealed.bundle_id).state == "pending"  # killed: never marked done
    wait_for(lambda: world.job(sealed.bundle_id).state == "done", "the resumed ingest")
    assert world.ingest_events(sealed.bundle_id) == [
        {"stored": 2, "duplicate": 2, "quarantined": 1, "conflict": 0}
    ]
    good = [made.sop_uids[i] for i in (0, 2, 3, 4)]
    assert sorted(world.indexed(made.sop_uids)) == sorted(good)
    with hub.session() as session:
        study = session.exec(
            select(CollectionStudy).where(CollectionStudy.study_uid == made.study_uid)
        ).one()
        assert study.instance_count == 4
        quarantined = session.exec(
            select(CollectionQuarantine).where(CollectionQuarantine.bundle_id == sealed.bundle_id)
        ).all()
        assert len(quarantined) == 1


def test_the_batched_path_makes_the_rows_of_the_one_by_one_path(world: World) -> None:
    """`add_batch` takes its rows from `store.index_rows`: the same instances give the same study,
    series and instance rows as `add_instance` (apart from ids and times)."""
    from hub.collections.models import CollectionSeries
    from hub.collections.store import add_instance

    hub = world.hub
    with hub.session() as session:
        make_collection(session, hub.settings, "one-by-one", "org-b")
        make_collection(session, hub.settings, "batched", "org-b")
    made = deidentified_study(3)
    other = deidentified_study(2, modality="MR")
    files = [_with_sequences(data, n) for n, data in enumerate([*made.files, *other.files])]
    store = InstanceFiles(hub.settings.data_dir / "collections")
    with hub.session() as session, ThreadPoolExecutor(4) as pool:
        ids = {}
        for name in ("one-by-one", "batched"):
            row = session.exec(select(Collection).where(Collection.name == name)).one()
            ids[name] = row.id
            if name == "one-by-one":
                for data in files:
                    add_instance(session, store, row, data, Source("test"))
            else:
                add_batch(session, store, row, files, Source("test"), pool)

        def rows(cid: int | None) -> list[list[dict[str, object]]]:
            out = []
            for table in (
                CollectionStudy,
                CollectionSeries,
                CollectionInstance,
                CollectionSequenceValue,
            ):
                found = session.exec(select(table).where(table.collection_id == cid)).all()
                dumped = [r.model_dump(exclude={"id", "collection_id", "added_at"}) for r in found]
                out.append(sorted(dumped, key=lambda d: json.dumps(d, sort_keys=True)))
            return out

        one, batched = rows(ids["one-by-one"]), rows(ids["batched"])
    assert [len(r) for r in one[:3]] == [2, 2, 5]
    assert one[3], "the sequence items (QIDO-RS sequence matching) are indexed"
    assert one == batched


def _with_sequences(data: bytes, n: int) -> bytes:
    """A de-identified file given a Procedure Code and an Anatomic Region item (the sequences
    QIDO-RS matches on), so the two paths are compared on their sequence rows too."""
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = dcmread(io.BytesIO(data))
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = f"P{n % 2}", "99TEST", "scan"
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "R1", "99TEST", "Chest"
    ds.ProcedureCodeSequence = Sequence([code])
    ds.AnatomicRegionSequence = Sequence([region])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


INSTANCES = 150  # small files: ~2 s to make; enough that a loaded CLI is caught half way


def test_a_process_killed_mid_ingest_leaves_work_the_next_one_resumes(world: World) -> None:
    """`hexchange-hub collection ingest` (a process of its own, one instance per transaction)
    is killed with SIGKILL half way through a bundle: its lease dies with it, the bundle stays
    pending with what was committed, and the hub's worker finishes it without a duplicate."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    hub = world.hub
    made = deidentified_study(INSTANCES)
    sealed = world.seal(made.files)
    with world.leases().hold(f"{sealed.bundle_id}/{RECIPIENT}") as held:
        assert held
        world.site.push(sealed)
        with hub.engine.begin() as conn:  # the running hub's worker leaves it to the CLI
            conn.exec_driver_sql(
                "UPDATE collection_ingest SET state = 'failed', not_before = '2999-01-01' "
                f"WHERE bundle_id = '{sealed.bundle_id}'"
            )
    env = {
        **os.environ, "HEXCHANGE_HUB_DATABASE_URL": hub.settings.db_url,
        "HEXCHANGE_HUB_COLLECTION_INGEST_BATCH": "1",
    }  # fmt: skip
    cli = Path(sys.executable).parent / "hexchange-hub"
    proc = subprocess.Popen(
        [str(cli), "collection", "ingest", "--data-dir", str(hub.settings.data_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # polled often: under load the CLI could otherwise finish between two looks
        wait_for(lambda: len(world.indexed(made.sop_uids)) >= 3, "the CLI to index a few", 20, 0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    partial = len(world.indexed(made.sop_uids))
    assert 3 <= partial < INSTANCES, "killed too late to test a resume"
    assert world.job(sealed.bundle_id).state == "failed"  # not done: never marked
    with hub.engine.begin() as conn:  # as after a restart: due now
        conn.exec_driver_sql(
            "UPDATE collection_ingest SET not_before = queued_at "
            f"WHERE bundle_id = '{sealed.bundle_id}'"
        )
    wait_for(lambda: world.job(sealed.bundle_id).state == "done", "the worker to resume")
    (counts,) = world.ingest_events(sealed.bundle_id)
    assert counts["stored"] + counts["duplicate"] == INSTANCES and counts["duplicate"] >= 3
    assert counts["quarantined"] == counts["conflict"] == 0
    assert sorted(world.indexed(made.sop_uids)) == sorted(made.sop_uids)
    with hub.session() as session:
        study = session.exec(
            select(CollectionStudy).where(CollectionStudy.study_uid == made.study_uid)
        ).one()
        assert study.instance_count == INSTANCES


def test_the_worker_does_not_take_a_bundle_put_off_after_it_was_listed(world: World) -> None:
    """`due` lists a bundle, then it fails or an operator puts it off before the worker holds
    its lease: the worker, reading the row again, leaves it; the CLI takes it at once."""
    import datetime as dt

    from hub.collections import queue
    from hub.models import utcnow

    hub = world.hub
    made = deidentified_study(1)
    sealed = world.seal(made.files)
    with world.leases().hold(f"{sealed.bundle_id}/{RECIPIENT}") as held:
        assert held
        world.site.push(sealed)
        with hub.session() as session:
            assert (sealed.bundle_id, RECIPIENT) in queue.due(session, utcnow())
            job = world.job(sealed.bundle_id)
            job.state, job.not_before = "failed", utcnow() + dt.timedelta(days=1)
            session.add(job)
            session.commit()
            assert queue.claim(session, sealed.bundle_id, RECIPIENT, utcnow()) is None
            assert queue.claim(session, sealed.bundle_id, RECIPIENT) is not None
            job = world.job(sealed.bundle_id)
            job.not_before = utcnow()
            session.add(job)
            session.commit()
    wait_for(lambda: world.job(sealed.bundle_id).state == "done", "the worker once it is due")
