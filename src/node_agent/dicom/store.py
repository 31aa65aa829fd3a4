"""Where inbound instances go: a local folder (default) or the site's PACS over C-STORE."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Protocol

from pydicom import dcmread

from node_agent.config import InboundSection
from node_agent.files import durable_write


class StoreError(Exception):
    """Storing failed; retry later. The message names no patient data."""


class InstanceStore(Protocol):
    def store(self, data: bytes) -> None: ...


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = dcmread(
        io.BytesIO(data),
        stop_before_pixels=True,
        specific_tags=["StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"],
    )
    return str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), str(ds.SOPClassUID)


class FolderStore:
    """<folder>/<hash of study UID>/<SOP Instance UID>.dcm, written durably; idempotent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def is_available() -> bool:
        return True

    def store(self, data: bytes) -> None:
        study_uid, sop_uid, _ = _uids(data)
        study_dir = self.folder / hashlib.sha256(study_uid.encode()).hexdigest()[:24]
        durable_write(study_dir / f"{sop_uid}.dcm", data)


class PacsStore:
    """C-STORE each instance to the local PACS; success means the PACS answered 0x0000."""

    def __init__(self, section: InboundSection, calling_ae: str) -> None:
        self.section = section
        self.calling_ae = calling_ae

    def store(self, data: bytes) -> None:
        from pynetdicom import AE

        ds = dcmread(io.BytesIO(data))
        ae = AE(ae_title=self.calling_ae)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate(
            self.section.pacs_host, self.section.pacs_port, ae_title=self.section.pacs_ae_title
        )
        if not assoc.is_established:
            raise StoreError("the local PACS refused or did not answer the association")
        try:
            status = assoc.send_c_store(ds)
        finally:
            assoc.release()
        code = getattr(status, "Status", None)
        if code != 0x0000:
            raise StoreError(f"the local PACS answered C-STORE status {code!r}")


def make_store(section: InboundSection, folder: Path, calling_ae: str) -> InstanceStore:
    if section.store == "pacs":
        return PacsStore(section, calling_ae)
    return FolderStore(folder)
