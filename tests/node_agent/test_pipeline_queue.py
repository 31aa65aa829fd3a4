"""The agent's pipeline and queues in-process: spool -> stable -> seal -> outbox, quarantine,
operator actions and metrics. No hub: recipients and policy are given directly."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import generate_latest
from pydicom import dcmread
from typer.testing import CliRunner

from node_agent import operations
from node_agent.cli import app as agent_cli
from node_agent.config import AgentConfig, Destination
from node_agent.identity import AgentIdentity, encryption_key_id
from node_agent.metrics import make_registry
from node_agent.pipeline import InstanceRejected, Pipeline, mark_stable
from node_agent.policy import NoPolicy
from node_agent.spool import Spool, SpoolError
from node_agent.state import AgentState
from tests.factories.dicom import make_ct_study
from tests.factories.pki import make_network
from wire.api import QuarantineReason
from wire.envelope import RecipientKey, open_data_key, open_stream, parse_header
from wire.payload import read_payload


@pytest.fixture
def agent_parts(tmp_path: Path):  # type: ignore[no-untyped-def]
    network = make_network(tmp_path / "pki")
    creds = network.site("org-a", "clinic-a")
    receipt = ec.generate_private_key(ec.SECP256R1())
    identity = AgentIdentity(
        org="org-a",
        site="clinic-a",
        signing_key=creds.key,
        certificate=creds.cert,
        ca_certificate=network.ca.certificate,
        encryption_key=X25519PrivateKey.generate(),
        hub_receipt_key=receipt.public_key(),
        folder=tmp_path / "identity",
    )
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "agent"}"\n'
        f'[hub]\npublic_url = "https://127.0.0.1:1"\nnode_url = "https://127.0.0.1:2"\n'
        f'ca_file = "{network.ca_file}"\n[pipeline]\nquiet_period_seconds = 0\n'
    )
    config = AgentConfig.model_validate(
        {
            "agent": {"data_dir": tmp_path / "agent"},
            "hub": {"public_url": "https://x", "node_url": "https://y", "ca_file": network.ca_file},
            "pipeline": {"quiet_period_seconds": 0},
        }
    )
    state = AgentState(config.agent.data_dir / "state.db")
    spool = Spool(config.agent.data_dir / "spool", state)
    recipient = X25519PrivateKey.generate()
    raw = recipient.public_key().public_bytes_raw()
    keys = [RecipientKey(encryption_key_id(raw), recipient.public_key())]
    return config, config_file, state, spool, identity, recipient, keys


def _store_study(spool: Spool, tmp_path: Path, instances: int = 3):  # type: ignore[no-untyped-def]
    study = make_ct_study(tmp_path / "study", instances=instances)
    for path in study.files:
        spool.store(path.read_bytes())
    return study


def test_stable_study_is_sealed_once_to_the_policy_destination(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, recipient, keys = agent_parts
    study = _store_study(spool, tmp_path)
    pipeline = Pipeline(
        config,
        state,
        identity,
        lambda org: keys,
        lambda facts: [Destination(org="org-b")] if "CT" in facts.modalities else [],
    )
    assert mark_stable(state, 0.0) == [study.study_instance_uid]
    assert pipeline.process_stable() == 1
    assert pipeline.process_stable() == 0  # nothing pending any more
    rows = operations.queue(state)
    assert len(rows) == 1 and rows[0]["instance_count"] == 3 and rows[0]["state"] == "sealed"

    # the recipient opens exactly the spooled instances
    header = _header(config, rows[0]["bundle_id"])
    assert header.manifest.recipients == ["org-b"] and header.manifest.modalities == ["CT"]
    got = _opened_sop_uids(config, rows[0]["bundle_id"], keys[0], recipient)
    assert sorted(got) == sorted(study.sop_instance_uids)


def _header(config: AgentConfig, bundle_id: str):  # type: ignore[no-untyped-def]
    return parse_header((config.agent.data_dir / "outbox" / bundle_id / "header.bin").read_bytes())


def _opened_sop_uids(
    config: AgentConfig, bundle_id: str, key: RecipientKey, private: X25519PrivateKey
) -> list[str]:
    """What the recipient gets out of an outbox bundle: the SOP Instance UIDs, in order."""
    folder = config.agent.data_dir / "outbox" / bundle_id
    header = _header(config, bundle_id)
    data_key = open_data_key(header, key_id=key.key_id, private_key=private)
    chunks = [
        (folder / f"chunk-{i:07d}.bin").read_bytes() for i in range(header.manifest.chunk_count)
    ]
    plain = b"".join(open_stream(header, data_key, chunks))
    return [
        str(dcmread(io.BytesIO(data)).SOPInstanceUID)
        for _n, data in read_payload(io.BytesIO(plain))
    ]


def _study_state(state: AgentState) -> str:
    with state.connect() as conn:
        return str(conn.execute("SELECT state FROM studies").fetchone()["state"])


def test_a_study_still_arriving_is_sent_in_parts_each_instance_once(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, recipient, keys = agent_parts
    study = make_ct_study(tmp_path / "study", instances=7)
    size = study.files[0].stat().st_size
    # a part is sealed once three instances' worth waits (they are all the same size)
    part = config.pipeline.model_copy(update={"part_mib": 2.5 * size / (1024 * 1024)})
    config = config.model_copy(update={"pipeline": part})
    pipeline = Pipeline(
        config, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )

    def arrive(*indexes: int) -> None:
        for index in indexes:
            spool.store(study.files[index].read_bytes())

    arrive(0, 1, 2)
    assert pipeline.process_growing() == 1
    assert _study_state(state) == "receiving"  # still arriving: the quiet period is untouched
    arrive(3)
    assert pipeline.process_growing() == 0  # one instance waits: less than a part
    arrive(4, 5)
    assert pipeline.process_growing() == 1
    arrive(6)
    assert pipeline.process_growing() == 0
    assert mark_stable(state, 0.0) == [study.study_instance_uid]
    assert pipeline.process_stable() == 1  # the rest, after the quiet period
    assert _study_state(state) == "sealed"

    rows = sorted(operations.queue(state), key=lambda r: r["created_at"])
    assert [r["instance_count"] for r in rows] == [3, 3, 1]
    opened = [_opened_sop_uids(config, r["bundle_id"], keys[0], recipient) for r in rows]
    assert [uid for got in opened for uid in got] == study.sop_instance_uids  # each once

    # a site that wants whole studies only: nothing leaves before the quiet period
    whole = config.model_copy(
        update={"pipeline": config.pipeline.model_copy(update={"part_mib": 0})}
    )
    later = make_ct_study(tmp_path / "later", instances=4)
    for path in later.files:
        spool.store(path.read_bytes())
    never = Pipeline(
        whole, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )
    assert never.process_growing() == 0


def test_part_mib_is_the_size_of_a_part_however_fast_the_study_arrived(
    agent_parts, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, recipient, keys = agent_parts
    study = make_ct_study(tmp_path / "study", instances=8)
    size = study.files[0].stat().st_size
    part = config.pipeline.model_copy(update={"part_mib": 2.5 * size / (1024 * 1024)})
    config = config.model_copy(update={"pipeline": part})
    pipeline = Pipeline(
        config, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )
    for path in study.files:  # all of it before the seal loop looks (a fast sender)
        spool.store(path.read_bytes())
    assert pipeline.process_growing() == 2  # two parts of 3, not one of 8
    assert pipeline.process_growing() == 0  # 2 instances wait: less than a part
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    rows = sorted(operations.queue(state), key=lambda r: r["created_at"])
    assert [r["instance_count"] for r in rows] == [3, 3, 2]
    opened = [_opened_sop_uids(config, r["bundle_id"], keys[0], recipient) for r in rows]
    assert [uid for got in opened for uid in got] == study.sop_instance_uids  # each once


def test_a_requested_priority_moves_queued_bundles_up_and_applies_to_later_ones(  # type: ignore[no-untyped-def]
    agent_parts, tmp_path
) -> None:
    from node_agent.priority import request_priority

    config, _cf, state, spool, identity, _recipient, keys = agent_parts
    study = make_ct_study(tmp_path / "study", instances=3)
    spool.store(study.files[0].read_bytes())
    pipeline = Pipeline(
        config,
        state,
        identity,
        lambda org: keys,
        lambda mods: [Destination(org="org-b", priority=100)],
    )
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    assert [r["priority"] for r in operations.queue(state)] == [100]

    assert request_priority(state, study.study_instance_uid, 10) == 1  # the queued bundle
    assert request_priority(state, study.study_instance_uid, 50) == 0  # never made less urgent
    assert [r["priority"] for r in operations.queue(state)] == [10]
    for path in study.files[1:]:  # the rest arrives later: an addition, just as urgent
        spool.store(path.read_bytes())
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    assert [r["priority"] for r in operations.queue(state)] == [10, 10]


def test_no_policy_means_the_study_waits(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, _r, keys = agent_parts
    _store_study(spool, tmp_path, 1)

    def no_policy(_mods: set[str]) -> list[Destination]:
        raise NoPolicy("no sharing policy from the hub yet")

    pipeline = Pipeline(config, state, identity, lambda org: keys, no_policy)
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 0
    with state.connect() as conn:
        row = conn.execute("SELECT state, last_error FROM studies").fetchone()
    assert row["state"] == "waiting" and "policy" in row["last_error"]
    assert operations.queue(state) == []


def test_rejected_instance_is_quarantined_then_released(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, config_file, state, spool, identity, _r, keys = agent_parts
    study = _store_study(spool, tmp_path, 2)
    bad = study.sop_instance_uids[0]
    allow = {"now": False}

    def transform(path: Path, _d: Destination, target: Path) -> None:
        if dcmread(path).SOPInstanceUID == bad and not allow["now"]:
            raise InstanceRejected(
                "de-identification verification failed: X PatientName",
                QuarantineReason.VERIFICATION,
            )
        target.write_bytes(path.read_bytes())

    pipeline = Pipeline(
        config,
        state,
        identity,
        lambda org: keys,
        lambda mods: [Destination(org="org-r", mode="deidentified")],
        transform,
    )
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 1
    assert operations.queue(state)[0]["instance_count"] == 1
    items = operations.quarantine_list(state)
    assert [(i.kind, i.ref) for i in items] == [("instance", bad)]

    runner = CliRunner()
    listed = runner.invoke(agent_cli, ["quarantine", "list", "--config", str(config_file)])
    assert listed.exit_code == 0 and "PatientName" in listed.stdout
    allow["now"] = True
    released = runner.invoke(
        agent_cli, ["quarantine", "release", "--config", str(config_file), str(items[0].id)]
    )
    assert released.exit_code == 0, released.output
    assert pipeline.process_stable() == 1  # the released instance goes out on its own
    assert sorted(r["instance_count"] for r in operations.queue(state)) == [1, 1]
    assert operations.quarantine_list(state) == []


def test_retry_requeues_a_failed_bundle_and_refuses_unknown_ids(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, config_file, state, spool, identity, _r, keys = agent_parts
    _store_study(spool, tmp_path, 1)
    pipeline = Pipeline(
        config, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )
    mark_stable(state, 0.0)
    pipeline.process_stable()
    bundle_id = operations.queue(state)[0]["bundle_id"]
    with state.transaction() as conn:
        conn.execute("UPDATE outbox SET state = 'failed', attempts = 7, last_error = 'x'")
    runner = CliRunner()
    result = runner.invoke(agent_cli, ["retry", "--config", str(config_file), bundle_id])
    assert result.exit_code == 0, result.output
    row = operations.queue(state)[0]
    assert row["state"] == "sealed" and row["attempts"] == 0
    missing = runner.invoke(agent_cli, ["retry", "--config", str(config_file), "0" * 32])
    assert missing.exit_code == 1 and "no outbox bundle" in missing.output


def test_metrics_report_queue_depth_without_patient_data(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, _r, keys = agent_parts
    study = _store_study(spool, tmp_path, 2)
    pipeline = Pipeline(
        config, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )
    mark_stable(state, 0.0)
    pipeline.process_stable()
    text = generate_latest(make_registry(state)).decode()
    assert "hexchange_agent_spooled_instances 2.0" in text
    assert 'hexchange_agent_outbox_bundles{destination_org="org-b",state="sealed"} 1.0' in text
    for needle in [*study.identifying_strings, study.study_instance_uid]:
        assert needle not in text


def test_spool_refuses_non_dicom_and_detects_duplicates(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _config, _cf, state, spool, *_ = agent_parts
    with pytest.raises(SpoolError, match=r"could not be parsed|no valid"):
        spool.store(b"this is not DICOM at all" * 10)
    study = make_ct_study(tmp_path / "s", instances=1)
    data = study.files[0].read_bytes()
    assert spool.store(data).duplicate is False
    assert spool.store(data).duplicate is True
    with state.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1


def test_crash_between_seal_and_row_leaves_nothing_behind(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, _spool, identity, _r, keys = agent_parts
    pipeline = Pipeline(
        config, state, identity, lambda org: keys, lambda mods: [Destination(org="org-b")]
    )
    orphan = config.agent.data_dir / "outbox" / ("ab" * 16)
    orphan.mkdir(parents=True)
    (orphan / "header.bin").write_bytes(b"half-written")
    staging = config.agent.data_dir / "outbox" / ".seal-xyz"
    staging.mkdir()
    assert pipeline.recover() == 2
    assert list((config.agent.data_dir / "outbox").iterdir()) == []


def test_bulk_waits_for_the_offpeak_window_but_urgent_goes_now(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from node_agent.uploader import Uploader

    config, _cf, state, spool, identity, _r, keys = agent_parts
    _store_study(spool, tmp_path, 1)
    pipeline = Pipeline(
        config,
        state,
        identity,
        lambda org: keys,
        lambda mods: [Destination(org="org-b", priority=100), Destination(org="org-c", priority=5)],
    )
    mark_stable(state, 0.0)
    pipeline.process_stable()
    now = dt.datetime.now()
    closed = f"{(now + dt.timedelta(hours=2)):%H:%M}-{(now + dt.timedelta(hours=3)):%H:%M}"
    opened = f"{(now - dt.timedelta(hours=1)):%H:%M}-{(now + dt.timedelta(hours=1)):%H:%M}"
    by_org = {r["bundle_id"]: r["dest_org"] for r in operations.queue(state)}

    def due_orgs(window: str) -> list[str]:
        cfg = config.model_copy(
            update={"upload": config.upload.model_copy(update={"offpeak_windows": [window]})}
        )
        uploader = Uploader(cfg, state, identity, client=None)  # type: ignore[arg-type]
        return [by_org[b] for b in uploader.due()]

    assert due_orgs(closed) == ["org-c"]  # only the urgent one outside the window
    assert due_orgs(opened) == ["org-c", "org-b"]  # urgent first, then bulk


def test_identified_and_deidentified_rules_to_one_org_both_send(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, _cf, state, spool, identity, _r, keys = agent_parts
    _store_study(spool, tmp_path, 2)
    pipeline = Pipeline(
        config,
        state,
        identity,
        lambda org: keys,
        lambda mods: [Destination(org="org-b"), Destination(org="org-b", mode="deidentified")],
        lambda path, _d, target: target.write_bytes(path.read_bytes()) and None,
    )
    mark_stable(state, 0.0)
    assert pipeline.process_stable() == 2
    assert sorted(r["mode"] for r in operations.queue(state)) == ["deidentified", "identified"]
    assert pipeline.process_stable() == 0


def test_the_manifest_names_only_the_stations_the_rule_names(agent_parts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Station Name is typed at the modality: a name there must not reach the hub in the
    manifest's facts (the hub stores the header); the rule's own station names may."""
    config, _cf, state, spool, identity, _recipient, keys = agent_parts
    study = make_ct_study(tmp_path / "study", instances=2)
    for index, path in enumerate(study.files):
        ds = dcmread(path)
        ds.StationName = "CT01" if index == 0 else "Zqxwv^Ykjhg"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        spool.store(buffer.getvalue())
    pipeline = Pipeline(
        config, state, identity, lambda org: keys,
        lambda facts: [Destination(org="org-b", station_names=("ct01",))]
        if "CT01" in facts.station_names and "Zqxwv^Ykjhg" in facts.station_names else [],
    )  # fmt: skip
    assert mark_stable(state, 0.0) == [study.study_instance_uid]
    assert pipeline.process_stable() == 1
    [row] = operations.queue(state)
    header_bytes = (config.agent.data_dir / "outbox" / row["bundle_id"] / "header.bin").read_bytes()
    facts = _header(config, row["bundle_id"]).manifest.facts
    assert facts.station_names == ["CT01"] and facts.station_names_withheld
    assert b"Zqxwv" not in header_bytes and b"CT01" in header_bytes
