"""Fixtures for the agent's DICOM side: a real Orthanc on loopback, an in-process agent SCP.

Orthanc (Debian package `orthanc`) is started per test with a generated JSON config: free
ports, storage in the test's tmp folder, no plugins, remote access off, and the agent's AE
registered as a modality so the PACS can C-MOVE to it and accept its C-FIND/C-GET. Tests
that need it are skipped with the reason when the binary is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import MRImageStorage, generate_uid

from node_agent.config import DicomSection
from node_agent.dicom.scp import start_scp
from node_agent.spool import Spool
from node_agent.state import AgentState
from tests.factories.dicom import FakePatient, ct_slice
from tests.federation import free_port, storescu

AGENT_AE = "HEXAGENT"
ORTHANC_AE = "ORTHANC"


def orthanc_binary() -> str | None:
    found = shutil.which("Orthanc")
    if found:
        return found
    return "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None


@dataclass
class Orthanc:
    root: Path
    dicom_port: int
    http_port: int
    ae_title: str = ORTHANC_AE
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def load(self, files: list[Path]) -> None:
        """Send files as a modality would (dcmtk storescu)."""
        result = storescu(self.dicom_port, self.ae_title, files)
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]

    def instance_id(self, sop_uid: str) -> str:
        found = self.rest("POST", "/tools/lookup", content=sop_uid)
        ids = [f["ID"] for f in found if f["Type"] == "Instance"]
        assert ids, "instance not in Orthanc"
        return str(ids[0])

    def delete_instance(self, sop_uid: str) -> None:
        self.rest("DELETE", f"/instances/{self.instance_id(sop_uid)}")

    def sop_uids(self) -> set[str]:
        out = set()
        for instance_id in self.rest("GET", "/instances"):
            tags = self.rest("GET", f"/instances/{instance_id}/simplified-tags")
            out.add(tags["SOPInstanceUID"])
        return out

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def agent_dicom() -> DicomSection:
    """The agent's DICOM identity; the PACS knows it (Orthanc's DicomModalities)."""
    return DicomSection(ae_title=AGENT_AE, host="127.0.0.1", port=free_port())


@pytest.fixture
def orthanc(tmp_path: Path, agent_dicom: DicomSection) -> Iterator[Orthanc]:
    binary = orthanc_binary()
    if binary is None:
        pytest.skip(
            "Orthanc is not installed (Debian: apt-get install orthanc; neither `Orthanc` on "
            "PATH nor /usr/sbin/Orthanc found)"
        )
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk storescu is not installed (Debian: apt-get install dcmtk)")
    root = tmp_path / "orthanc"
    (root / "db").mkdir(parents=True)
    server = Orthanc(root=root, dicom_port=free_port(), http_port=free_port())
    config = {
        "Name": "hexchange-test-pacs",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": server.http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": server.ae_title,
        "DicomPort": server.dicom_port,
        "DicomCheckCalledAet": True,
        "DicomModalities": {
            "agent": {"AET": agent_dicom.ae_title, "Host": "127.0.0.1", "Port": agent_dicom.port}
        },
        "DicomScuTimeout": 10,
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "StorageCompression": False,
        "OverwriteInstances": True,
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (root / "orthanc.log").open("wb")
    server.process = subprocess.Popen(
        [binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=root
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.process.poll() is not None:
                pytest.fail(
                    "Orthanc exited at start:\n" + (root / "orthanc.log").read_text()[-3000:]
                )
            try:
                server.rest("GET", "/system")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail("Orthanc did not answer on its HTTP port within 30 s")
                time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()


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
