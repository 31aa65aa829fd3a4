"""A real Orthanc (Debian package `orthanc`) on loopback, as the clinic PACS in tests.

Started with a generated JSON config: free ports, storage in the given folder, no plugins,
remote access off, and the given modalities registered so it accepts their C-FIND/C-GET and can
C-MOVE to them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.federation import storescu
from tests.ports import free_port

ORTHANC_AE = "ORTHANC"


class OrthancUnavailable(Exception):
    pass


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


def start_orthanc(
    root: Path,
    modalities: dict[str, tuple[str, int]],
    *,
    dicom_port: int | None = None,
    http_port: int | None = None,
    scu_timeout: int = 10,
    accepted_transfer_syntaxes: list[str] | None = None,
    plugins: list[str] | None = None,
    extra_config: dict[str, Any] | None = None,
) -> Orthanc:
    """Start Orthanc; `modalities` maps a name to (AE title, port) on 127.0.0.1. Ports are free
    ones unless given (a caller that must name them in another config first).

    `accepted_transfer_syntaxes`: the only syntaxes its storage SCP accepts (Orthanc's
    "AcceptedTransferSyntaxes", e.g. an older PACS that takes uncompressed only); None keeps
    Orthanc's default (all it knows)."""
    binary = orthanc_binary()
    if binary is None:
        raise OrthancUnavailable(
            "Orthanc is not installed (Debian: apt-get install orthanc; neither `Orthanc` on "
            "PATH nor /usr/sbin/Orthanc found)"
        )
    (root / "db").mkdir(parents=True)
    server = Orthanc(
        root=root, dicom_port=dicom_port or free_port(), http_port=http_port or free_port()
    )
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
            name: {"AET": ae, "Host": "127.0.0.1", "Port": port}
            for name, (ae, port) in modalities.items()
        },
        "DicomScuTimeout": scu_timeout,
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "StorageCompression": False,
        "OverwriteInstances": True,
    }
    if accepted_transfer_syntaxes is not None:
        config["AcceptedTransferSyntaxes"] = accepted_transfer_syntaxes
    if plugins:  # e.g. the DICOMweb plugin (Debian orthanc-dicomweb), with its settings
        config["Plugins"] = plugins
    config.update(extra_config or {})
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (root / "orthanc.log").open("wb")
    server.process = subprocess.Popen(
        [binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=root
    )
    log.close()
    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                "Orthanc exited at start:\n" + (root / "orthanc.log").read_text()[-3000:]
            )
        try:
            server.rest("GET", "/system")
            return server
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("Orthanc did not answer on its HTTP port within 30 s") from None
            time.sleep(0.1)
