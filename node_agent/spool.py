"""The spool: every received instance is durable on disk before the sender hears success."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from node_agent.dicom.uids import is_valid_uid
from node_agent.files import fsync_dir
from node_agent.group_commit import GroupCommit
from node_agent.ledger import Ledger, Received
from node_agent.state import AgentState


class SpoolError(Exception):
    """The instance cannot be accepted; the message says why (never patient data)."""


@dataclass(frozen=True)
class Stored:
    sop_uid: str
    study_uid: str
    path: Path
    duplicate: bool


def study_folder(spool_dir: Path, study_uid: str) -> Path:
    return spool_dir / hashlib.sha256(study_uid.encode()).hexdigest()[:24]


class Spool:
    """`wake` (if given) is set each time `wake_bytes` more have been spooled: the seal loop
    then cuts a part (`[pipeline] part_mib`) at once rather than at its next poll."""

    def __init__(
        self,
        root: Path,
        state: AgentState,
        *,
        wake: threading.Event | None = None,
        wake_bytes: int = 0,
    ) -> None:
        self.root = root
        self.state = state
        self.ledger = Ledger(state)
        self._commits: GroupCommit[Received] = GroupCommit(self.ledger.instances_received)
        self.wake = wake
        self.wake_bytes = wake_bytes
        self._since_wake = 0
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def _count(self, size: int) -> None:
        if self.wake is None or self.wake_bytes <= 0:
            return
        with self._lock:
            self._since_wake += size
            if self._since_wake < self.wake_bytes:
                return
            self._since_wake = 0
        self.wake.set()

    def store(
        self, encoded: bytes, quiet_s: float | None = None, source_ae: str | None = None
    ) -> Stored:
        """Store one Part 10 encoded instance durably and record it; idempotent by UID + hash."""
        incoming = self.root / ".incoming"
        incoming.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=incoming, suffix=".dcm")
        with os.fdopen(fd, "wb") as handle:
            handle.write(encoded)
        try:
            return self.store_file(Path(tmp), quiet_s, source_ae)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def store_file(
        self, source: Path, quiet_s: float | None = None, source_ae: str | None = None
    ) -> Stored:
        """Take a received Part 10 file into the spool (moved when it can be, else copied),
        durably, before anything answers success. Streams: never holds the instance whole.

        `quiet_s`: the quiet period of the instance's source (its calling AE); the study waits
        for the longest of its sources' periods, or the configured default when none is given.
        `source_ae`: that calling AE title, kept for the sharing rules that match on it.
        """
        try:
            ds = dcmread(
                source,
                stop_before_pixels=True,
                specific_tags=["StudyInstanceUID", "SOPInstanceUID", "Modality"],
            )
            # values are converted when read, so a damaged element raises here, not at dcmread
            study_uid = str(ds.get("StudyInstanceUID", ""))
            sop_uid = str(ds.get("SOPInstanceUID", ""))
            modality = str(ds.get("Modality", "") or "") or None
        except Exception as exc:  # untrusted bytes: pydicom raises many kinds (struct.error,
            # NotImplementedError for an unknown VR, ...); every one is a refusal with a reason
            raise SpoolError(
                f"the data set could not be parsed as DICOM ({type(exc).__name__})"
            ) from exc
        if not is_valid_uid(study_uid) or not is_valid_uid(sop_uid):
            raise SpoolError("the data set has no valid StudyInstanceUID or SOPInstanceUID")
        digest, size = _sha256_file(source)
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT sha256, path FROM instances WHERE sop_uid = ?", (sop_uid,)
            ).fetchone()
        if row is not None and row["sha256"] == digest and Path(row["path"]).exists():
            return Stored(sop_uid, study_uid, Path(row["path"]), duplicate=True)
        path = study_folder(self.root, study_uid) / f"{sop_uid}.dcm"
        _durable_take(source, path)
        # returns once the row is committed (with those of other associations' instances)
        self._commits.submit(
            Received(
                sop_uid=sop_uid,
                study_uid=study_uid,
                path=str(path),
                sha256=digest,
                size=size,
                modality=modality,
                quiet_s=quiet_s,
                source_ae=(source_ae or "").strip()[:16] or None,
            )
        )
        self._count(size)
        return Stored(sop_uid, study_uid, path, duplicate=False)


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _durable_take(source: Path, target: Path) -> None:
    """Rename `source` onto `target` (same filesystem), else copy it; fsync file and folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.part")
    try:
        os.replace(source, staged)
    except OSError:  # another filesystem (e.g. the system temp folder): copy instead
        shutil.copyfile(source, staged)
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, target)
    fsync_dir(target.parent)
