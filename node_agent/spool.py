"""The spool: every received instance is durable on disk before the sender hears success.

Durable means the file: its contents, its name (the folder fsynced) and, in an extended
attribute written before the file's fsync, what its queue row needs besides the file (the
calling AE and its quiet period). The row itself is committed without an fsync of the WAL
when the label could be written: a power loss may lose the last such rows, and `recover`
registers their files again at the next start. Where the filesystem has no user extended
attributes, every row's commit is flushed before success, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from node_agent.dicom.uids import is_valid_uid
from node_agent.files import durable_move, fsync_dir
from node_agent.group_commit import GroupCommit
from node_agent.ledger import Ledger, Received
from node_agent.state import AgentState, record_quarantine
from wire.api import QuarantineReason

# on each spool file: {"quiet_s": ..., "source_ae": ...}, durable with the file's own fsync
SOURCE_XATTR = "user.hexchange.source"


class SpoolError(Exception):
    """The instance cannot be accepted; the message says why (never patient data)."""


@dataclass(frozen=True)
class Recovered:
    registered: int  # labelled files whose row was missing, registered again
    set_aside: int  # labelled files without a row that did not parse: moved, quarantined
    partials_removed: int = 0  # partial writes in `.incoming` no sender heard success for


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
        self._commits: GroupCommit[Received] = GroupCommit(self._record)
        # False once the filesystem refused the label (then every row is flushed)
        self._labels = hasattr(os, "setxattr")  # Linux only
        self.wake = wake
        self.wake_bytes = wake_bytes
        self._since_wake = 0
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def _record(self, received: list[Received]) -> None:
        # labelled files are registered again by `recover` if a power loss takes their rows
        self.ledger.instances_received(received, flush=not self._labels)

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
        study_uid, sop_uid, modality = _read_header(source)
        digest, size = _sha256_file(source)
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT sha256, path FROM instances WHERE sop_uid = ?", (sop_uid,)
            ).fetchone()
        if row is not None and row["sha256"] == digest and Path(row["path"]).exists():
            return Stored(sop_uid, study_uid, Path(row["path"]), duplicate=True)
        path = study_folder(self.root, study_uid) / f"{sop_uid}.dcm"
        source_ae = (source_ae or "").strip()[:16] or None
        label = _label(quiet_s, source_ae) if self._labels else None
        if not _durable_take(source, path, label) and label is not None:
            self._labels = False  # before the submit: this row's commit is flushed
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
                source_ae=source_ae,
            )
        )
        self._count(size)
        return Stored(sop_uid, study_uid, path, duplicate=False)

    def recover(self) -> Recovered:
        """At start-up: register every labelled spool file whose instance has no row (its
        row's commit was not yet on disk when the power went), with the label's source and
        quiet period; idempotent. A labelled file without a row that does not parse, or whose
        UIDs do not match its place, is moved to `.unreadable` and quarantined. Unlabelled
        files without a row (a sender that never heard success) are left as they are.
        Partial writes left in `.incoming` by a killed process are removed: nothing answers
        success for a file before it leaves that folder, so no sender is owed them."""
        partials = self._remove_partials()
        if not hasattr(os, "getxattr"):  # no labels written on this platform
            return Recovered(registered=0, set_aside=0, partials_removed=partials)
        with self.state.connect() as conn:
            known = {str(row[0]) for row in conn.execute("SELECT sop_uid FROM instances")}
        found: list[Received] = []
        set_aside = 0
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.dcm")):
                if path.name.startswith(".") or path.stem in known:
                    continue
                try:
                    label = os.getxattr(path, SOURCE_XATTR)
                except OSError:
                    continue  # unlabelled (or no such attributes here)
                try:
                    quiet_s, source_ae = _parse_label(label)
                    study_uid, sop_uid, modality = _read_header(path)
                    if path.stem != sop_uid or study_folder(self.root, study_uid) != folder:
                        raise SpoolError("the file's UIDs do not match its place in the spool")
                except SpoolError as exc:
                    self._set_aside(path, str(exc))
                    set_aside += 1
                    continue
                digest, size = _sha256_file(path)
                found.append(
                    Received(
                        sop_uid=sop_uid,
                        study_uid=study_uid,
                        path=str(path),
                        sha256=digest,
                        size=size,
                        modality=modality,
                        quiet_s=quiet_s,
                        source_ae=source_ae,
                    )
                )
                known.add(sop_uid)
        if found:
            self.ledger.instances_received(found)  # flushed
        return Recovered(registered=len(found), set_aside=set_aside, partials_removed=partials)

    def _remove_partials(self) -> int:
        incoming = self.root / ".incoming"
        if not incoming.is_dir():
            return 0
        removed = 0
        for path in incoming.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _set_aside(self, path: Path, reason: str) -> None:
        target = self.root / ".unreadable" / f"{path.parent.name}-{path.name}"
        durable_move(path, target)
        with self.state.transaction() as conn:
            record_quarantine(
                conn,
                "file",
                target.name,
                f"a spool file without its queue row could not be registered after a restart: "
                f"{reason}; it was moved to {target}",
                str(target),
                QuarantineReason.MALFORMED,
            )


def _read_header(source: Path) -> tuple[str, str, str | None]:
    """Study and SOP Instance UID and modality of a Part 10 file; SpoolError if unusable."""
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
    return study_uid, sop_uid, modality


def _label(quiet_s: float | None, source_ae: str | None) -> bytes:
    return json.dumps({"quiet_s": quiet_s, "source_ae": source_ae}).encode()


def _parse_label(label: bytes) -> tuple[float | None, str | None]:
    try:
        value = json.loads(label)
        quiet_s, source_ae = value["quiet_s"], value["source_ae"]
    except (ValueError, TypeError, KeyError) as exc:
        raise SpoolError(f"its {SOURCE_XATTR} attribute does not parse") from exc
    if not (quiet_s is None or isinstance(quiet_s, (int, float))) or not (
        source_ae is None or (isinstance(source_ae, str) and len(source_ae) <= 16)
    ):
        raise SpoolError(f"its {SOURCE_XATTR} attribute holds values of the wrong kind")
    return (None if quiet_s is None else float(quiet_s)), source_ae


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _durable_take(source: Path, target: Path, label: bytes | None) -> bool:
    """Rename `source` onto `target` (same filesystem), else copy it; label it (if given), fsync
    file and folder. Whether the label was written (False: the filesystem refused it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.part")
    try:
        os.replace(source, staged)
    except OSError:  # another filesystem (e.g. the system temp folder): copy instead
        shutil.copyfile(source, staged)
    labelled = False
    with open(staged, "rb") as handle:
        if label is not None:
            try:
                os.setxattr(handle.fileno(), SOURCE_XATTR, label)
                labelled = True
            except OSError:  # no user extended attributes here (e.g. some network mounts)
                pass
        os.fsync(handle.fileno())  # contents and label
    os.replace(staged, target)
    fsync_dir(target.parent)
    return labelled
