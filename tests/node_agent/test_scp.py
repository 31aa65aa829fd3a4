"""The agent's C-STORE SCP in-process on a free port: durable before success, clear statuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from node_agent.config import DicomSection, PipelineSection
from node_agent.dicom.scp import start_scp
from node_agent.pipeline import mark_stable
from node_agent.spool import Spool
from node_agent.state import AgentState
from tests.factories.dicom import make_ct_study
from tests.ports import free_port


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[int, Spool, AgentState]]:
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    port = free_port()
    server = start_scp(DicomSection(ae_title="HEXTEST", port=port), spool)
    try:
        yield port, spool, state
    finally:
        server.shutdown()


def _send(port: int, datasets: list[Dataset], calling_ae: str = "MODALITY") -> list[int]:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEXTEST")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_instances_are_in_the_spool_when_success_is_answered(scp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, spool, state = scp
    study = make_ct_study(tmp_path / "study", instances=3, rows=256, columns=256)
    datasets = [dcmread(p) for p in study.files]
    assert _send(port, datasets) == [0, 0, 0]
    with state.connect() as conn:
        rows = conn.execute("SELECT sop_uid, path FROM instances").fetchall()
    assert sorted(r["sop_uid"] for r in rows) == sorted(study.sop_instance_uids)
    for row in rows:
        stored = dcmread(row["path"])
        original = next(ds for ds in datasets if ds.SOPInstanceUID == row["sop_uid"])
        assert stored.PixelData == original.PixelData
    assert not list((spool.root).rglob("*.part"))


def test_a_resent_instance_is_a_duplicate_not_a_second_copy(scp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, _spool, state = scp
    ds = dcmread(make_ct_study(tmp_path / "s", instances=1).files[0])
    assert _send(port, [ds, ds]) == [0, 0]
    with state.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1


def test_unwritable_spool_answers_out_of_resources(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "state.db")
    blocker = tmp_path / "not-a-folder"
    blocker.mkdir()
    spool = Spool(blocker / "spool", state)
    # the study folder cannot be created: a file stands where it must go
    port = free_port()
    server = start_scp(DicomSection(ae_title="HEXTEST", port=port), spool)
    try:
        ds = dcmread(make_ct_study(tmp_path / "s", instances=1).files[0])
        from node_agent.spool import study_folder

        study_folder(spool.root, str(ds.StudyInstanceUID)).write_text("in the way")
        assert _send(port, [ds]) == [0xA700]
    finally:
        server.shutdown()


def test_a_data_set_without_uids_is_refused_as_not_understood(scp) -> None:  # type: ignore[no-untyped-def]
    port, _spool, state = scp
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "No^Study"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    assert _send(port, [ds]) == [0xC000]
    with state.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 0


def test_echo(scp) -> None:  # type: ignore[no-untyped-def]
    port, *_ = scp
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEXTEST")
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == 0
    assoc.release()


def test_dicom_tls_with_client_certificates(tmp_path: Path) -> None:
    import ssl

    from tests.factories.pki import make_network

    network = make_network(tmp_path / "pki")
    modality = network.site("org-a", "modality")
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    port = free_port()
    config = DicomSection(
        ae_title="HEXTEST",
        port=port,
        tls_cert_file=network.hub_cert_file,
        tls_key_file=network.hub_key_file,
        tls_client_ca_file=network.ca_file,
    )
    server = start_scp(config, spool)
    ds = dcmread(make_ct_study(tmp_path / "s", instances=1).files[0])
    try:
        client = ssl.create_default_context(cafile=str(network.ca_file))
        client.load_cert_chain(modality.cert_file, modality.key_file)
        ae = AE(ae_title="MODALITY")
        ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 3
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="HEXTEST", tls_args=(client, "127.0.0.1"))
        assert assoc.is_established
        assert int(assoc.send_c_store(ds).Status) == 0
        assoc.release()
        # without TLS, or without a client certificate, no association
        assert not ae.associate("127.0.0.1", port, ae_title="HEXTEST").is_established
        anonymous = ssl.create_default_context(cafile=str(network.ca_file))
        refused = ae.associate(
            "127.0.0.1", port, ae_title="HEXTEST", tls_args=(anonymous, "127.0.0.1")
        )
        assert not refused.is_established
    finally:
        server.shutdown()
    with state.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1


def test_quiet_period_follows_the_sending_modality(tmp_path: Path) -> None:
    pipeline = PipelineSection(
        quiet_period_seconds=30, quiet_period_by_source={"CT_RECON": 300, "US_ROOM": 5}
    )
    state = AgentState(tmp_path / "state.db")
    spool = Spool(tmp_path / "spool", state)
    port = free_port()
    server = start_scp(
        DicomSection(ae_title="HEXTEST", port=port), spool, pipeline.quiet_period_for
    )
    try:
        us, ct, other = (make_ct_study(tmp_path / n, instances=1) for n in ("us", "ct", "x"))
        both = make_ct_study(tmp_path / "both", instances=2)
        assert _send(port, [dcmread(us.files[0])], "US_ROOM") == [0]
        assert _send(port, [dcmread(ct.files[0])], "CT_RECON") == [0]
        assert _send(port, [dcmread(other.files[0])], "SOMEONE") == [0]
        # a study from two sources waits for the longer period
        assert _send(port, [dcmread(both.files[0])], "US_ROOM") == [0]
        assert _send(port, [dcmread(both.files[1])], "CT_RECON") == [0]
    finally:
        server.shutdown()
    now = time.time()
    quiet = pipeline.quiet_period_seconds
    assert mark_stable(state, quiet, now=now + 10) == [us.study_instance_uid]
    assert mark_stable(state, quiet, now=now + 40) == [other.study_instance_uid]
    assert mark_stable(state, quiet, now=now + 200) == []
    stable = mark_stable(state, quiet, now=now + 310)
    assert sorted(stable) == sorted([ct.study_instance_uid, both.study_instance_uid])


def test_quiet_period_by_source_names_a_bad_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not an AE title"):
        PipelineSection(quiet_period_by_source={"A_NAME_LONGER_THAN_16": 10})
    with pytest.raises(ValidationError, match="0 or more seconds"):
        PipelineSection(quiet_period_by_source={"CT1": -1})
