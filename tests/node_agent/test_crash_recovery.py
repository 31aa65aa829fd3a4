"""What the kill -9 and bad-link tests found, pinned down in-process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from node_agent.config import Destination
from node_agent.hubclient import HubUnavailable
from node_agent.inbound import Inbound
from node_agent.pipeline import Pipeline, mark_stable
from node_agent.uploader import Uploader
from tests.node_agent.test_pipeline_queue import _store_study, agent_parts  # noqa: F401
from wire.api import BundleStatus, DeliveryList
from wire.envelope import parse_header


def _pipeline(parts: Any, **upload: Any) -> Pipeline:
    config, _cf, state, _spool, identity, _r, keys = parts
    if upload:
        config = config.model_copy(update={"upload": config.upload.model_copy(update=upload)})
    return Pipeline(config, state, identity, lambda org: keys, lambda m: [Destination(org="org-b")])


def test_restart_gives_a_receiving_study_a_fresh_quiet_period(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    _config, _cf, state, spool, *_ = agent_parts
    _store_study(spool, tmp_path, 2)  # the association broke after two instances
    with state.transaction() as conn:  # ... and the agent was down for a minute
        conn.execute("UPDATE studies SET last_at = last_at - 60")
    _pipeline(agent_parts).recover()
    assert mark_stable(state, 5.0) == []  # the modality's resend joins the same study
    assert len(mark_stable(state, 5.0, now=time.time() + 6)) == 1


def test_chunk_size_comes_from_the_config_and_delivered_chunks_are_freed(  # type: ignore[no-untyped-def]
    agent_parts,  # noqa: F811
    tmp_path: Path,
) -> None:
    config, _cf, state, spool, *_ = agent_parts
    _store_study(spool, tmp_path, 1)
    pipeline = _pipeline(agent_parts, chunk_size_bytes=256 * 1024)
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    [bundle] = list((config.agent.data_dir / "outbox").iterdir())
    assert parse_header((bundle / "header.bin").read_bytes()).manifest.chunk_size == 256 * 1024
    with state.transaction() as conn:  # killed after 'delivered', before the chunks were freed
        conn.execute("UPDATE outbox SET state = 'delivered'")
    pipeline.recover()
    assert sorted(p.name for p in bundle.iterdir()) == ["header.bin"]


class _FlakyHub:
    """Takes the header and every chunk, then the link drops before `complete`."""

    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.acked: list[str] = []

    def put_header(self, bundle_id: str, header: bytes) -> BundleStatus:
        count = parse_header(header).manifest.chunk_count
        return BundleStatus(
            bundle_id=bundle_id, state="receiving", chunk_count=count, received_chunks=[]
        )

    def put_chunk(self, bundle_id: str, index: int, data: bytes) -> None:
        self.chunks.append(index)

    def complete(self, bundle_id: str) -> None:
        raise HubUnavailable("ReadError talking to the hub")

    def deliveries(self) -> DeliveryList:
        return DeliveryList(deliveries=[])

    def ack(self, bundle_id: str) -> None:
        self.acked.append(bundle_id)


def test_progress_resets_the_backoff(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _cf, state, spool, identity, *_ = agent_parts
    _store_study(spool, tmp_path, 1)
    mark_stable(state, 0.0)
    _pipeline(agent_parts).process_stable()
    with state.transaction() as conn:  # many failures in a row during a long outage
        conn.execute("UPDATE outbox SET attempts = 12")
    hub = _FlakyHub()
    uploader = Uploader(config, state, identity, hub)  # type: ignore[arg-type]
    [bundle_id] = uploader.due()
    assert uploader.upload(bundle_id) is False
    assert hub.chunks == [0]
    with state.connect() as conn:
        row = conn.execute("SELECT attempts, next_attempt_at FROM outbox").fetchone()
    assert row["attempts"] == 1  # the link worked again: back to the base delay, not the cap
    assert row["next_attempt_at"] - time.time() <= 2 * config.upload.retry_base_seconds


def test_a_lost_ack_is_sent_again(agent_parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    config, _cf, state, _spool, identity, *_ = agent_parts
    bundle_id = "cd" * 16
    with state.transaction() as conn:  # stored, then the ack's answer was lost
        conn.execute(
            "INSERT INTO inbound(bundle_id, state, sender, updated_at) "
            "VALUES (?, 'stored', 'org-a/clinic-a', 0)",
            (bundle_id,),
        )
    hub = _FlakyHub()  # the hub had committed the ack, so it lists nothing
    Inbound(config, state, identity, hub, store=None).run_once()  # type: ignore[arg-type]
    assert hub.acked == [bundle_id]
    with state.connect() as conn:
        assert conn.execute("SELECT state FROM inbound").fetchone()[0] == "acked"
