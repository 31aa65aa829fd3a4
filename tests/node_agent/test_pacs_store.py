"""Inbound deliveries into the local PACS (a real Orthanc): C-STORE, then confirm by C-FIND
that every instance arrived before the delivery may be acknowledged to the hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.config import InboundSection
from node_agent.dicom.store import FolderStore, PacsStore, StoreError
from tests.node_agent.conftest import AGENT_AE, Orthanc, make_study
from tests.ports import free_port


def _store(port: int, **kw: float) -> PacsStore:
    section = InboundSection(
        store="pacs", pacs_host="127.0.0.1", pacs_port=port, pacs_ae_title="ORTHANC"
    )
    return PacsStore(section, AGENT_AE, timeout=10, **kw)  # type: ignore[arg-type]


def test_pacs_store_stores_and_confirms(orthanc: Orthanc, tmp_path: Path) -> None:
    study = make_study(tmp_path / "src", "20240301", "CT", 3)
    mr = make_study(tmp_path / "src", "20240301", "MR", 1)
    store = _store(orthanc.dicom_port)
    sop_uids = [store.store(path.read_bytes()) for path in study.files + mr.files]
    assert sop_uids == study.sop_uids + mr.sop_uids
    store.confirm(sop_uids)
    assert orthanc.sop_uids() == set(sop_uids)
    # Storing the same delivery again (a retry) is harmless and confirms again.
    again = [store.store(path.read_bytes()) for path in study.files]
    store.confirm(again)


def test_confirm_detects_an_instance_the_pacs_does_not_hold(
    orthanc: Orthanc, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "src", "20240301", "CT", 3)
    store = _store(orthanc.dicom_port)
    sop_uids = [store.store(path.read_bytes()) for path in study.files]
    orthanc.delete_instance(sop_uids[1])
    with pytest.raises(StoreError, match=r"holds 2 of 3 instances .*1 missing") as caught:
        store.confirm(sop_uids)
    assert "Quixote" not in str(caught.value) and "MRN" not in str(caught.value)
    # The inbound loop retries the whole delivery: store again, and now it confirms.
    sop_uids = [store.store(path.read_bytes()) for path in study.files]
    store.confirm(sop_uids)
    assert orthanc.sop_uids() == set(sop_uids)


def test_confirm_refuses_instances_it_did_not_store(orthanc: Orthanc, tmp_path: Path) -> None:
    study = make_study(tmp_path / "src", "20240301", "CT", 2)
    store = _store(orthanc.dicom_port)
    first = store.store(study.files[0].read_bytes())
    with pytest.raises(StoreError, match="1 of 2 instances were not stored"):
        store.confirm([first, study.sop_uids[1]])


def test_unreachable_pacs_raises_store_error_after_retries(tmp_path: Path) -> None:
    study = make_study(tmp_path / "src", "20240301", "CT", 1)
    store = _store(free_port(), retry_delay=0.0)
    with pytest.raises(StoreError, match=r"did not answer.*after 3 attempts"):
        store.store(study.files[0].read_bytes())


def test_folder_store_confirm(tmp_path: Path) -> None:
    study = make_study(tmp_path / "src", "20240301", "CT", 2)
    store = FolderStore(tmp_path / "received")
    sop_uids = [store.store(path.read_bytes()) for path in study.files]
    store.confirm(sop_uids)
    sop_uids = [store.store(path.read_bytes()) for path in study.files]
    next((tmp_path / "received").rglob(f"{sop_uids[0]}.dcm")).unlink()
    with pytest.raises(StoreError, match="1 of 2 instances are not in"):
        store.confirm(sop_uids)
