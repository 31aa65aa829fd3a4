"""Fixtures for the agent's DICOM side: a real Orthanc on loopback, an in-process agent SCP.

Orthanc (Debian package `orthanc`) is started per test with a generated JSON config: free
ports, storage in the test's tmp folder, no plugins, remote access off, and the agent's AE
registered as a modality so the PACS can C-MOVE to it and accept its C-FIND/C-GET. Tests
that need it are skipped with the reason when the binary is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import MRImageStorage, generate_uid

from node_agent.config import DicomSection
from node_agent.dicom.scp import start_scp
from node_agent.spool import Spool
from node_agent.state import AgentState
from tests.factories.dicom import FakePatient, ct_slice
from tests.factories.orthanc import (
    Orthanc,
    OrthancUnavailable,
    start_orthanc,
)
from tests.ports import free_port

AGENT_AE = "HEXAGENT"


@pytest.fixture
def agent_dicom() -> DicomSection:
    """The agent's DICOM identity; the PACS knows it (Orthanc's DicomModalities)."""
    return DicomSection(ae_title=AGENT_AE, host="127.0.0.1", port=free_port())


@pytest.fixture
def orthanc(tmp_path: Path, agent_dicom: DicomSection) -> Iterator[Orthanc]:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk storescu is not installed (Debian: apt-get install dcmtk)")
    try:
        server = start_orthanc(
            tmp_path / "orthanc", {"agent": (agent_dicom.ae_title, agent_dicom.port)}
        )
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class AgentScp:
    """The agent's receiving side in-process: state, spool and its C-STORE SCP."""

    dicom: DicomSection
    state: AgentState
    spool: Spool
    server: Any = None

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()

    def sop_uids(self, study_uid: str) -> set[str]:
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT sop_uid FROM instances WHERE study_uid = ?", (study_uid,)
            ).fetchall()
        return {r[0] for r in rows}

    def paths(self, study_uid: str) -> list[Path]:
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT path FROM instances WHERE study_uid = ?", (study_uid,)
            ).fetchall()
        return [Path(r[0]) for r in rows]


@pytest.fixture
def agent_scp(tmp_path: Path, agent_dicom: DicomSection) -> Iterator[AgentScp]:
    state = AgentState(tmp_path / "agent" / "state.db")
    spool = Spool(tmp_path / "agent" / "spool", state)
    side = AgentScp(agent_dicom, state, spool, start_scp(agent_dicom, spool))
    try:
        yield side
    finally:
        side.stop()


@dataclass
class Study:
    """A synthetic study on disk that can grow: same study and series, more instances."""

    folder: Path
    study_date: str
    modality: str
    study_uid: str = field(default_factory=generate_uid)
    series_uid: str = field(default_factory=generate_uid)
    files: list[Path] = field(default_factory=list)
    sop_uids: list[str] = field(default_factory=list)

    def add(self, count: int = 1) -> list[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        new = []
        for _ in range(count):
            index = len(self.files)
            sop_uid = generate_uid()
            ds = ct_slice(
                FakePatient(),
                study_uid=self.study_uid,
                series_uid=self.series_uid,
                sop_uid=sop_uid,
                accession="ACC-PULL-1",
                index=index,
                rows=16,
                columns=16,
                study_date=self.study_date,
            )
            if self.modality != "CT":
                ds.Modality = self.modality
                if self.modality == "MR":
                    ds.SOPClassUID = MRImageStorage
                    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            path = self.folder / f"{index:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            self.files.append(path)
            self.sop_uids.append(sop_uid)
            new.append(path)
        return new


def make_study(root: Path, study_date: str, modality: str = "CT", instances: int = 2) -> Study:
    study = Study(root / f"{modality}-{study_date}-{generate_uid()[-8:]}", study_date, modality)
    study.add(instances)
    return study
