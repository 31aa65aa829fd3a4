"""The agent's fast paths keep their promises: one SQLite connection per thread, the payload
streamed through a pipe into the seal (checked against the spool's recorded sha256), and
chunks uploaded several at a time on a fast link, one at a time on a slow one, resuming."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydicom import dcmread

from node_agent import uploader as uploader_module
from node_agent.config import Destination
from node_agent.hubclient import HubRefused, HubUnavailable
from node_agent.pipeline import PayloadPipe, Pipeline, mark_stable
from node_agent.spool import Spool
from node_agent.uploader import Uploader
from tests.factories.dicom import SyntheticStudy, make_ct_study
from tests.node_agent.test_pipeline_queue import agent_parts  # noqa: F401
from wire.api import BundleStatus
from wire.envelope import open_data_key, open_stream, parse_header
from wire.errors import PayloadError
from wire.payload import instance_name, read_payload
from wire.receipt import Receipt, sign_receipt

SMALL_CHUNK = 256 * 1024


def _store_study(spool: Spool, tmp_path: Path, instances: int) -> SyntheticStudy:
    """Instances of 512 KiB of pixels: a study of several 256 KiB chunks."""
    study = make_ct_study(tmp_path / "study", instances=instances, rows=512, columns=512)
    for path in study.files:
        spool.store(path.read_bytes())
    return study


def _pipeline(parts: Any, **upload: Any) -> Pipeline:
    config, _cf, state, _spool, identity, _r, keys = parts
    if upload:
        config = config.model_copy(update={"upload": config.upload.model_copy(update=upload)})
    return Pipeline(config, state, identity, lambda org: keys, lambda m: [Destination(org="org-b")])


def test_state_keeps_one_connection_per_thread_and_survives_a_failed_transaction(
    agent_parts: Any,  # noqa: F811
) -> None:
    _config, _cf, state, *_ = agent_parts
    with state.connect() as first, state.connect() as again:
        assert first is again
    other: list[object] = []

    def elsewhere() -> None:
        with state.connect() as conn:
            other.append(conn)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert other and other[0] is not first

    with pytest.raises(RuntimeError), state.transaction() as conn:
        conn.execute(
            "INSERT INTO quarantine(kind, ref, reason, created_at) VALUES ('x', 'y', 'z', 0)"
        )
        raise RuntimeError("the step failed half-way")
    with state.connect() as conn:  # rolled back, and the connection is usable
        assert not conn.in_transaction
        assert conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    state.quarantine("x", "y", "z")
    assert state.counts()["quarantine"] == 1


def test_a_multi_chunk_study_streams_through_the_pipe_intact(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    config, _cf, state, spool, _identity, recipient, keys = agent_parts
    study = _store_study(spool, tmp_path, 6)
    mark_stable(state, 0.0)
    assert _pipeline(agent_parts, chunk_size_bytes=SMALL_CHUNK).process_stable() == 1
    [folder] = [p for p in (config.agent.data_dir / "outbox").iterdir()]
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())
    header = parse_header((folder / "header.bin").read_bytes())
    assert header.manifest.chunk_count > 1
    key = open_data_key(header, key_id=keys[0].key_id, private_key=recipient)
    chunks = [
        (folder / f"chunk-{i:07d}.bin").read_bytes() for i in range(len(header.chunk_digests))
    ]
    plain = b"".join(open_stream(header, key, chunks))
    got = {dcmread(io.BytesIO(d)).SOPInstanceUID: d for _n, d in read_payload(io.BytesIO(plain))}
    assert set(got) == set(study.sop_instance_uids)
    assert not list((config.agent.data_dir / "work").iterdir())  # no payload tar on disk


def test_a_spool_file_that_changed_after_receipt_is_not_sealed(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    config, _cf, state, spool, *_ = agent_parts
    _store_study(spool, tmp_path, 3)
    with state.connect() as conn:
        path = Path(conn.execute("SELECT path FROM instances LIMIT 1").fetchone()[0])
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[-10] ^= 0xFF  # a bit flip in the pixels: same size, other content
    path.write_bytes(bytes(damaged))
    mark_stable(state, 0.0)
    pipeline = _pipeline(agent_parts, chunk_size_bytes=SMALL_CHUNK)
    assert pipeline.process_stable() == 0
    with state.connect() as conn:
        row = conn.execute("SELECT state, last_error FROM studies").fetchone()
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert row["state"] == "waiting" and "sha256" in row["last_error"]
    assert list((config.agent.data_dir / "outbox").iterdir()) == []  # staging removed

    path.write_bytes(original)
    with state.transaction() as conn:
        conn.execute("UPDATE studies SET next_attempt_at = 0")
    assert pipeline.process_stable() == 1


def test_the_payload_writer_stops_when_the_seal_gives_up(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 << 20))  # more than the pipe and both buffers hold
    stream = cast(BinaryIO, open(big, "rb"))  # noqa: SIM115
    try:
        pipe = PayloadPipe([(instance_name(0), stream, big.stat().st_size)])
        assert pipe.reader.read(100)
        started = time.monotonic()
        pipe.close()  # the writer is blocked on a full pipe: it must be let go
        assert time.monotonic() - started < 5
        with pytest.raises((OSError, PayloadError)):  # EPIPE, as the payload writer saw it
            pipe.check()
    finally:
        stream.close()


class _Hub:
    """Takes chunks (optionally slowly, optionally failing one once), tracks concurrency."""

    def __init__(self, receipt_key: ec.EllipticCurvePrivateKey, delay: float = 0.0) -> None:
        self.receipt_key = receipt_key
        self.delay = delay
        self.received: dict[str, set[int]] = {}
        self.sent: list[int] = []
        self.fail_once: set[int] = set()
        self.refuse_complete_once = False
        self.headers: dict[str, bytes] = {}
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def put_header(self, bundle_id: str, header: bytes) -> BundleStatus:
        self.headers[bundle_id] = header
        count = parse_header(header).manifest.chunk_count
        have = sorted(self.received.setdefault(bundle_id, set()))
        return BundleStatus(
            bundle_id=bundle_id, state="receiving", chunk_count=count, received_chunks=have
        )

    def put_chunk(self, bundle_id: str, index: int, data: bytes) -> None:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.sent.append(index)
        try:
            time.sleep(self.delay or 0.002)
            with self.lock:
                if index in self.fail_once:
                    self.fail_once.discard(index)
                    raise HubUnavailable("ReadError talking to the hub")
                self.received[bundle_id].add(index)
        finally:
            with self.lock:
                self.active -= 1

    def complete(self, bundle_id: str) -> Receipt:
        header = parse_header(self.headers[bundle_id])
        if self.refuse_complete_once:
            self.refuse_complete_once = False
            raise HubRefused(409, "bundle is missing 1 of 2 chunks")
        assert len(self.received[bundle_id]) == header.manifest.chunk_count
        return sign_receipt(
            bundle_id,
            header.digest(),
            header.manifest.chunk_count,
            dt.datetime.now(dt.UTC).replace(microsecond=0),
            self.receipt_key,
        )


def _sealed_uploader(parts: Any, tmp_path: Path, hub: _Hub, **upload: Any) -> tuple[Uploader, str]:
    config, _cf, state, spool, identity, *_ = parts
    _store_study(spool, tmp_path, 6)
    mark_stable(state, 0.0)
    assert _pipeline(parts, chunk_size_bytes=SMALL_CHUNK).process_stable() == 1
    config = config.model_copy(update={"upload": config.upload.model_copy(update=upload)})
    identity = dataclasses.replace(identity, hub_receipt_key=hub.receipt_key.public_key())
    up = Uploader(config, state, identity, hub)  # type: ignore[arg-type]
    [bundle_id] = up.due()
    return up, bundle_id


def _outbox_state(parts: Any) -> str:
    with parts[2].connect() as conn:
        return str(conn.execute("SELECT state FROM outbox").fetchone()[0])


def test_parallel_upload_resumes_after_a_failure_mid_way(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    hub = _Hub(ec.generate_private_key(ec.SECP256R1()))
    up, bundle_id = _sealed_uploader(agent_parts, tmp_path, hub, parallel_chunks=3)
    count = parse_header((up.outbox / bundle_id / "header.bin").read_bytes()).manifest.chunk_count
    assert count >= 8
    hub.fail_once = {count // 2}
    assert up.upload(bundle_id) is False  # the link dropped mid-way
    got_first = set(hub.received[bundle_id])
    assert count // 2 not in got_first and got_first
    assert _outbox_state(agent_parts) == "uploading"
    assert 1 < hub.most_active <= 3  # several in flight on a fast link, never more than set

    hub.sent.clear()
    assert up.upload(bundle_id) is True
    assert sorted(hub.sent) == sorted(set(range(count)) - got_first)  # only what was missing
    assert hub.received[bundle_id] == set(range(count))
    assert _outbox_state(agent_parts) == "delivered"
    assert not list((up.outbox / bundle_id).glob("chunk-*.bin"))


def test_slow_chunks_go_one_at_a_time(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uploader_module, "FAST_CHUNK_SECONDS", 0.01)
    hub = _Hub(ec.generate_private_key(ec.SECP256R1()), delay=0.03)
    up, bundle_id = _sealed_uploader(agent_parts, tmp_path, hub, parallel_chunks=4)
    assert up.upload(bundle_id) is True
    assert hub.most_active == 1  # a cut on a slow link costs at most one partial chunk


def test_a_hub_that_lost_chunks_at_completion_gets_them_again(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    hub = _Hub(ec.generate_private_key(ec.SECP256R1()))
    up, bundle_id = _sealed_uploader(agent_parts, tmp_path, hub)
    hub.refuse_complete_once = True
    assert up.upload(bundle_id) is False
    assert _outbox_state(agent_parts) == "uploading"  # retried, not failed for an operator
    assert up.upload(bundle_id) is True


@pytest.mark.parametrize("parallel_chunks", [1, 4])
def test_a_clinicians_request_overtakes_a_bulk_upload_between_chunks(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parallel_chunks: int,
) -> None:
    from node_agent.priority import request_priority

    monkeypatch.setattr(uploader_module, "YIELD_CHECK_SECONDS", 0.0)
    config, _cf, state, spool, identity, *_ = agent_parts
    config = config.model_copy(
        update={"upload": config.upload.model_copy(update={"parallel_chunks": parallel_chunks})}
    )
    pipeline = _pipeline(agent_parts, chunk_size_bytes=SMALL_CHUNK)
    bulk_study = _store_study(spool, tmp_path, 6)
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    asked = _store_study(spool, tmp_path, 2)
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    with state.connect() as conn:
        ids = {
            r["study_uid"]: r["bundle_id"]
            for r in conn.execute("SELECT study_uid, bundle_id FROM outbox")
        }
    bulk, urgent = ids[bulk_study.study_instance_uid], ids[asked.study_instance_uid]

    order: list[tuple[str, int]] = []
    lock = threading.Lock()  # chunks arrive from several upload threads at once

    class AskingHub(_Hub):
        def put_chunk(self, bundle_id: str, index: int, data: bytes) -> None:
            super().put_chunk(bundle_id, index, data)
            with lock:
                order.append((bundle_id, index))
                asks = bundle_id == bulk and len(order) == 3
                if asks:  # a clinician asks while bulk is sent (before this chunk returns)
                    assert request_priority(state, asked.study_instance_uid, 5) == 1

    hub = AskingHub(ec.generate_private_key(ec.SECP256R1()))
    identity = dataclasses.replace(identity, hub_receipt_key=hub.receipt_key.public_key())
    up = Uploader(config, state, identity, hub)  # type: ignore[arg-type]
    assert up.due() == [bulk, urgent]  # same priority: the older bulk study goes first
    assert up.run_once() == 2

    first_urgent = order.index(next(o for o in order if o[0] == urgent))
    last_urgent = max(i for i, o in enumerate(order) if o[0] == urgent)
    # in between bulk's chunks: after the ask, at most the chunks already in flight finish
    assert 3 <= first_urgent <= 3 + parallel_chunks
    assert last_urgent < len(order) - 1
    bulk_sent = [index for bundle_id, index in order if bundle_id == bulk]
    assert sorted(bulk_sent) == sorted(set(bulk_sent))  # resumed: no chunk sent twice
    assert hub.received[bulk] == set(range(parse_header(hub.headers[bulk]).manifest.chunk_count))
    with state.connect() as conn:
        rows = conn.execute("SELECT state, lease_owner FROM outbox").fetchall()
    assert [(r["state"], r["lease_owner"]) for r in rows] == [("delivered", None)] * 2


def test_a_bundle_leased_by_another_uploader_is_left_alone_until_the_lease_ends(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    hub = _Hub(ec.generate_private_key(ec.SECP256R1()))
    up, bundle_id = _sealed_uploader(agent_parts, tmp_path, hub)
    other = Uploader(up.config, up.state, up.identity, hub)  # type: ignore[arg-type]
    assert other.owner != up.owner
    assert other._claim(bundle_id)  # e.g. a second process on the same data folder
    assert up.due() == []
    assert up.upload(bundle_id) is False and hub.sent == []  # nothing sent twice at once

    assert up.recover_leases() == 0  # its process (this one) is alive: the lease stands
    with up.state.transaction() as conn:  # the other uploader died: its lease runs out
        conn.execute("UPDATE outbox SET lease_until = ?", (time.time() - 1,))
    assert up.due() == [bundle_id]
    assert up.upload(bundle_id) is True
    with up.state.connect() as conn:
        row = conn.execute("SELECT state, lease_owner, lease_until FROM outbox").fetchone()
    assert (row["state"], row["lease_owner"], row["lease_until"]) == ("delivered", None, None)


def test_leases_of_a_killed_agent_are_freed_at_start(
    agent_parts: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    import socket
    import subprocess
    import sys

    hub = _Hub(ec.generate_private_key(ec.SECP256R1()))
    up, bundle_id = _sealed_uploader(agent_parts, tmp_path, hub)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs: the agent before a kill -9
    with up.state.transaction() as conn:
        conn.execute(
            "UPDATE outbox SET lease_owner = ?, lease_until = ?",
            (f"{socket.gethostname()}:{dead.pid}:1:2", time.time() + 300),
        )
    assert up.due() == []
    assert up.recover_leases() == 1
    assert up.due() == [bundle_id] and up.upload(bundle_id) is True
