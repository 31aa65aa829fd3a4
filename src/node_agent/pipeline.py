"""Pipeline: receiving -> stable (quiet period) -> per destination: [de-identify -> verify]
-> payload -> seal -> outbox. Each arrow is a committed row change; sealed files are written
to a temporary folder and renamed into the outbox before the row that points at them exists.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydicom import dcmread

from node_agent.config import AgentConfig, Destination
from node_agent.files import durable_write, fsync_dir
from node_agent.identity import AgentIdentity
from node_agent.policy import NoPolicy
from node_agent.state import AgentState
from wire.envelope import RecipientKey, seal
from wire.manifest import ManifestDraft
from wire.payload import instance_name, write_payload

log = structlog.get_logger("hexchange.agent.pipeline")

RecipientLookup = Callable[[str], list[RecipientKey]]
DestinationLookup = Callable[[set[str]], list[Destination]]
Transform = Callable[[Path, Destination], bytes]


class LazyFile(io.RawIOBase):
    """A seekable read-only view of a file that holds no descriptor between reads.

    The payload writer reads every member twice; a study of thousands of instances must not
    need thousands of open files, nor the instances in memory.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = self.path.stat().st_size + offset
        return self.position

    def read(self, size: int = -1) -> bytes:
        with open(self.path, "rb") as handle:
            handle.seek(self.position)
            data = handle.read() if size is None or size < 0 else handle.read(size)
        self.position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class NoRecipients(Exception):
    """The destination organization has no enrolled site key yet: try again later."""


class InstanceRejected(Exception):
    """An instance may not leave (verification failed); it is quarantined, never sent.

    `previews` are files (name -> bytes, e.g. before/after PNGs) kept for the reviewer.
    """

    def __init__(self, reason: str, *, previews: dict[str, bytes] | None = None) -> None:
        super().__init__(reason)
        self.previews = previews or {}


@dataclass
class FolderSink:
    folder: Path

    def write_chunk(self, index: int, data: bytes) -> None:
        durable_write(self.folder / f"chunk-{index:07d}.bin", data)


def outbox_dir(config: AgentConfig) -> Path:
    return config.agent.data_dir / "outbox"


def mark_stable(state: AgentState, quiet_period: float, now: float | None = None) -> list[str]:
    """Studies with no new instance for `quiet_period` seconds become stable."""
    now = time.time() if now is None else now
    with state.transaction() as conn:
        rows = conn.execute(
            "SELECT study_uid FROM studies WHERE state = 'receiving' AND last_at <= ?",
            (now - quiet_period,),
        ).fetchall()
        uids = [row["study_uid"] for row in rows]
        for uid in uids:
            conn.execute("UPDATE studies SET state = 'stable' WHERE study_uid = ?", (uid,))
    return uids


def _pending_instances(
    state: AgentState, study_uid: str, dest_org: str, mode: str
) -> list[tuple[str, str, str]]:
    """Instances of the study not yet sealed for this destination and mode (same content)."""
    with state.connect() as conn:
        rows = conn.execute(
            "SELECT i.sop_uid, i.path, i.sha256 FROM instances i WHERE i.study_uid = ? AND NOT "
            "EXISTS (SELECT 1 FROM bundle_instances b WHERE b.dest_org = ? AND b.mode = ? AND "
            "b.sop_uid = i.sop_uid AND b.sha256 = i.sha256) ORDER BY i.received_at, i.sop_uid",
            (study_uid, dest_org, mode),
        ).fetchall()
    return [(r["sop_uid"], r["path"], r["sha256"]) for r in rows]


def identified_bytes(path: Path, _destination: Destination) -> bytes:
    return path.read_bytes()


class Pipeline:
    def __init__(
        self,
        config: AgentConfig,
        state: AgentState,
        identity: AgentIdentity,
        recipients: RecipientLookup,
        destinations: DestinationLookup,
        deidentify: Transform | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.identity = identity
        self.recipients = recipients
        self.destinations = destinations
        self.deidentify = deidentify
        self.outbox = outbox_dir(config)
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = config.agent.data_dir / "quarantine"
        self.work = config.agent.data_dir / "work"
        self.work.mkdir(parents=True, exist_ok=True)

    def recover(self) -> int:
        """After a crash: drop half-sealed folders that no outbox row points at.

        Studies that were still receiving get a fresh quiet period: while the agent was down
        the modality could not send, and its resend of a broken association must join the
        same study rather than find it sealed half-way (and sent again as an addition).
        Chunks of bundles already delivered (a crash before they were freed) are freed.
        """
        removed = 0
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE studies SET last_at = MAX(last_at, ?) WHERE state = 'receiving'",
                (time.time(),),
            )
        with self.state.connect() as conn:
            known = {r["bundle_id"] for r in conn.execute("SELECT bundle_id FROM outbox")}
            delivered = {
                r["bundle_id"]
                for r in conn.execute("SELECT bundle_id FROM outbox WHERE state = 'delivered'")
            }
        for entry in self.outbox.iterdir():
            if entry.name.startswith(".") or entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            elif entry.name in delivered:
                for chunk in entry.glob("chunk-*.bin"):
                    chunk.unlink(missing_ok=True)
        for entry in self.work.iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
        return removed

    def process_stable(self, now: float | None = None) -> int:
        """Seal every stable study whose retry time has come; returns bundles sealed."""
        now = time.time() if now is None else now
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT study_uid FROM studies WHERE state IN ('stable', 'waiting') "
                "AND next_attempt_at <= ? ORDER BY last_at",
                (now,),
            ).fetchall()
        sealed = 0
        for row in rows:
            sealed += self._process_study(row["study_uid"])
        return sealed

    def _study_modalities(self, study_uid: str) -> set[str]:
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT DISTINCT modality FROM instances WHERE study_uid = ? "
                "AND modality IS NOT NULL",
                (study_uid,),
            ).fetchall()
        return {r["modality"] for r in rows}

    def _process_study(self, study_uid: str) -> int:
        sealed = 0
        try:
            destinations = self.destinations(self._study_modalities(study_uid))
            if not destinations:
                with self.state.transaction() as conn:
                    conn.execute(
                        "UPDATE studies SET state = 'held', last_error = ? WHERE study_uid = ? "
                        "AND state IN ('stable', 'waiting')",
                        ("no sharing rule matches this study; it stays at the site", study_uid),
                    )
                log.info("study held: no sharing rule matches")
                return 0
            for destination in destinations:
                if self._seal_for(study_uid, destination):
                    sealed += 1
        except (NoRecipients, NoPolicy) as exc:
            with self.state.transaction() as conn:
                conn.execute(
                    "UPDATE studies SET state = 'waiting', next_attempt_at = ?, last_error = ? "
                    "WHERE study_uid = ? AND state IN ('stable', 'waiting')",
                    (time.time() + 30, str(exc), study_uid),
                )
            log.warning("study waits", reason=str(exc))
            return sealed
        with self.state.transaction() as conn:
            conn.execute(
                "UPDATE studies SET state = 'sealed', last_error = NULL "
                "WHERE study_uid = ? AND state IN ('stable', 'waiting')",
                (study_uid,),
            )
        return sealed

    def _seal_for(self, study_uid: str, destination: Destination) -> bool:
        pending = _pending_instances(self.state, study_uid, destination.org, destination.mode)
        if not pending:
            return False
        recipients = self.recipients(destination.org)
        if not recipients:
            raise NoRecipients(f"organization {destination.org} has no enrolled site key yet")
        transform = identified_bytes if destination.mode == "identified" else self.deidentify
        if transform is None:
            raise RuntimeError("de-identified destination configured but no de-identifier given")
        bundle_id = uuid.uuid4().hex
        staging = Path(tempfile.mkdtemp(prefix=".seal-", dir=self.outbox))
        payload_path = self.work / f"{bundle_id}.tar"
        included: list[tuple[str, str]] = []
        modalities: set[str] = set()
        try:
            streams: list[tuple[str, LazyFile, int]] = []
            work = self.work / bundle_id
            work.mkdir()
            for sop_uid, path, sha in pending:
                source_path = Path(path)
                if transform is not identified_bytes:
                    try:
                        data = transform(source_path, destination)
                    except InstanceRejected as exc:
                        for name, data in exc.previews.items():
                            durable_write(self.quarantine_dir / sop_uid / name, data)
                        self.state.quarantine("instance", sop_uid, str(exc), path)
                        log.warning("instance quarantined", reason=str(exc))
                        continue
                    source_path = work / f"{len(streams)}.dcm"
                    source_path.write_bytes(data)
                modality = dcmread(
                    source_path, stop_before_pixels=True, specific_tags=["Modality"]
                ).get("Modality")
                if modality:
                    modalities.add(str(modality))
                size = source_path.stat().st_size
                streams.append((instance_name(len(streams)), LazyFile(source_path), size))
                included.append((sop_uid, sha))
            if not streams:
                return False
            with open(payload_path, "wb") as out:
                write_payload(out, streams)
            draft = ManifestDraft(
                bundle_id=bundle_id,
                sender_org=self.identity.org,
                sender_site=self.identity.site,
                recipients=[destination.org],
                mode=destination.mode,
                instance_count=len(streams),
                modalities=sorted(modalities),
                created_at=dt.datetime.now(dt.UTC),
            )
            with open(payload_path, "rb") as source:
                header = seal(
                    source,
                    FolderSink(staging),
                    draft=draft,
                    recipients=recipients,
                    signing_key=self.identity.signing_key,
                    signer_key_id=self.identity.serial_hex,
                    chunk_size=self.config.upload.chunk_size_bytes,
                )
            durable_write(staging / "header.bin", header.to_bytes())
            final = self.outbox / bundle_id
            staging.rename(final)
            fsync_dir(self.outbox)
            sealed_bytes = sum(f.stat().st_size for f in final.iterdir())
            now = time.time()
            with self.state.transaction() as conn:
                conn.execute(
                    "INSERT INTO outbox(bundle_id, study_uid, dest_org, mode, state, priority, "
                    "payload_bytes, sealed_bytes, instance_count, created_at, updated_at) "
                    "VALUES (?,?,?,?, 'sealed', ?,?,?,?,?,?)",
                    (
                        bundle_id,
                        study_uid,
                        destination.org,
                        destination.mode,
                        destination.priority,
                        header.manifest.payload_bytes,
                        sealed_bytes,
                        len(streams),
                        now,
                        now,
                    ),
                )
                conn.executemany(
                    "INSERT INTO bundle_instances(bundle_id, dest_org, mode, sop_uid, sha256) "
                    "VALUES (?,?,?,?,?)",
                    [
                        (bundle_id, destination.org, destination.mode, sop, sha)
                        for sop, sha in included
                    ],
                )
            log.info(
                "bundle sealed",
                bundle_id=bundle_id,
                dest_org=destination.org,
                mode=destination.mode,
                instances=len(streams),
            )
            return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(self.work / bundle_id, ignore_errors=True)
            payload_path.unlink(missing_ok=True)
