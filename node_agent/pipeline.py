"""Pipeline: receiving -> stable (quiet period) -> per destination: [de-identify -> verify]
-> payload -> seal -> outbox. A study still receiving is sealed in parts of `pipeline.part_mib`
as it arrives (`process_growing`), so its upload overlaps its receive. Each arrow is a
committed row change; sealed files are written to a temporary folder and renamed into the
outbox before the row that points at them exists.

The payload tar is never stored: a thread writes it into a pipe that `seal` reads. Each chunk
file is fsynced as it is written; the staging folder is fsynced once, before it is renamed into
the outbox (nothing in it counts until then, and the outbox row comes after the rename).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, NamedTuple, cast

import structlog
from pydicom import dcmread

from deidentify.heldback import HeldBack
from node_agent.config import AgentConfig, Destination
from node_agent.files import durable_write, fsync_dir
from node_agent.identity import AgentIdentity
from node_agent.ledger import Ledger, NewBundle
from node_agent.policy import NoPolicy
from node_agent.priority import priority_for
from node_agent.state import AgentState
from node_agent.study_facts import StudyFactsCache
from wire.api import QuarantineReason
from wire.envelope import RecipientKey, seal
from wire.errors import PayloadError
from wire.facts import StudyFacts
from wire.manifest import ManifestDraft
from wire.payload import instance_name, write_payload

log = structlog.get_logger("hexchange.agent.pipeline")

RecipientLookup = Callable[[str], list[RecipientKey]]
DestinationLookup = Callable[[StudyFacts], list[Destination]]
# de-identify the spool file (1st) for the destination into the new file (3rd), streamed
Transform = Callable[[Path, Destination, Path], None]


class LazyFile(io.RawIOBase):
    """A seekable read-only view of a file that holds no descriptor between reads.

    The payload writer may read a member twice (hash, then copy); a study of thousands of
    instances must not need thousands of open files, nor the instances in memory.
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

    def __init__(
        self,
        reason: str,
        category: QuarantineReason,
        *,
        previews: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__(reason)
        self.category = category  # what the hub's quarantine view counts (no item text)
        self.previews = previews or {}


class FolderSink:
    """Chunk files in a staging folder, each fsynced; the caller fsyncs the folder once, before
    renaming it into place (a half-written staging folder is never used).

    The fsyncs run on a helper thread, so the disk waits overlap the encryption of the next
    chunks; `finish()` waits for all of them (and raises the first error) and must come before
    the folder is used. At most `max_pending` written chunks wait for their fsync.
    """

    def __init__(self, folder: Path, max_pending: int = 16) -> None:
        self.folder = folder
        self._pending: queue.Queue[int | None] = queue.Queue(maxsize=max_pending)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._sync_loop, name="chunk-fsync", daemon=True)
        self._thread.start()
        self._finished = False

    def write_chunk(self, index: int, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        fd = os.open(self.folder / f"chunk-{index:07d}.bin", _CREATE, 0o600)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        self._pending.put(fd)

    def _sync_loop(self) -> None:
        while (fd := self._pending.get()) is not None:
            try:
                if self._error is None:
                    os.fsync(fd)
            except OSError as exc:
                self._error = exc
            finally:
                os.close(fd)

    def finish(self) -> None:
        """Wait until every chunk written so far is fsynced; raise the first fsync error."""
        if not self._finished:
            self._finished = True
            self._pending.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_synced(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) with `data`, fsynced; the folder is not."""
    fd = os.open(path, _CREATE, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


_PIPE_BYTES = 1 << 20


class PayloadPipe:
    """`write_payload` in a thread into an OS pipe; `reader` is the other end, for `seal`.

    The payload tar exists only in the pipe (up to 1 MiB) and in the two buffers on either
    side. Use: `seal(pipe.reader, ...)` inside `try`, `pipe.close()` in `finally`, then
    `pipe.check()` before the sealed result is used: a writer error (an instance unreadable,
    changed, or not matching its recorded sha256) ends the pipe early, so `seal` saw a
    truncated payload that must be thrown away.
    """

    def __init__(
        self,
        streams: list[tuple[str, BinaryIO, int]],
        known_sha256: Mapping[str, str] | None = None,
    ) -> None:
        read_fd, write_fd = os.pipe()
        # not Linux, or over /proc/sys/fs/pipe-max-size: the default 64 KiB pipe works too
        with contextlib.suppress(ImportError, OSError):
            import fcntl

            fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
        self.reader: BinaryIO = os.fdopen(read_fd, "rb")
        self._writer: BinaryIO = os.fdopen(write_fd, "wb", buffering=_PIPE_BYTES)
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write, args=(streams, known_sha256), name="payload", daemon=True
        )
        self._thread.start()

    def _write(
        self, streams: list[tuple[str, BinaryIO, int]], known: Mapping[str, str] | None
    ) -> None:
        try:
            write_payload(self._writer, streams, known_sha256=known)
            self._writer.flush()
        except BaseException as exc:  # handed to the sealing thread by check()
            self.error = exc
        finally:
            # OSError: the reader has gone (it failed), and its error is the one raised
            with contextlib.suppress(OSError):
                self._writer.close()

    def close(self) -> None:
        """Close the reading end (a writer still blocked gets EPIPE) and wait for the writer."""
        self.reader.close()
        self._thread.join()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def outbox_dir(config: AgentConfig) -> Path:
    return config.agent.data_dir / "outbox"


def mark_stable(state: AgentState, quiet_period: float, now: float | None = None) -> list[str]:
    """Studies with no new instance for their quiet period become stable: the longest period
    of their sources (`quiet_s`, per calling AE), else `quiet_period`."""
    return Ledger(state).mark_stable(quiet_period, time.time() if now is None else now)


class PendingInstance(NamedTuple):
    """An instance of the study not yet sealed for a destination and mode, as recorded when
    it was received."""

    sop_uid: str
    path: str
    sha256: str
    size: int
    modality: str | None


def _pending_instances(
    state: AgentState, study_uid: str, dest_org: str, mode: str
) -> list[PendingInstance]:
    """Instances of the study not yet sealed for this destination and mode (same content)."""
    with state.connect() as conn:
        rows = conn.execute(
            "SELECT i.sop_uid, i.path, i.sha256, i.size, i.modality FROM instances i "
            "WHERE i.study_uid = ? AND NOT "
            "EXISTS (SELECT 1 FROM bundle_instances b WHERE b.dest_org = ? AND b.mode = ? AND "
            "b.sop_uid = i.sop_uid AND b.sha256 = i.sha256) ORDER BY i.received_at, i.sop_uid",
            (study_uid, dest_org, mode),
        ).fetchall()
    return [
        PendingInstance(r["sop_uid"], r["path"], r["sha256"], r["size"], r["modality"])
        for r in rows
    ]


def full_parts(pending: list[PendingInstance], part_bytes: int) -> list[list[PendingInstance]]:
    """`pending` in arrival order cut into parts whose bytes reach `part_bytes`; the rest (less
    than a part) is left out."""
    parts: list[list[PendingInstance]] = []
    current: list[PendingInstance] = []
    size = 0
    for instance in pending:
        current.append(instance)
        size += instance.size
        if size >= part_bytes:
            parts.append(current)
            current, size = [], 0
    return parts


def identified_bytes(path: Path, _destination: Destination, target: Path) -> None:
    """The identified "transform": never called (the spool file itself is the member)."""
    raise AssertionError("identified members are read from the spool as they are")


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
        self.ledger = Ledger(state)
        self.identity = identity
        self.recipients = recipients
        self.destinations = destinations
        self.deidentify = deidentify
        self.facts = StudyFactsCache()
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
        self.ledger.restart_quiet_periods(time.time())
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

    def stages(self) -> list[tuple[str, Callable[[], int]]]:
        """One pass of the seal loop, in order; each returns the bundles it sealed. The study
        arrows they take are node_agent/ledger.py's."""
        return [
            ("seal parts of studies still arriving", self.process_growing),
            ("studies quiet for their period become stable", self._mark_stable),
            ("seal stable studies for every destination", self.process_stable),
        ]

    def _mark_stable(self) -> int:
        mark_stable(self.state, self.config.pipeline.quiet_period_seconds)
        return 0

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

    def process_growing(self) -> int:
        """Seal parts of `pipeline.part_mib` of every study still arriving; returns bundles
        sealed. The instances waiting for a destination are cut, in arrival order, into parts
        that each reach `part_mib` (the instance that reaches it is the last of its part); the
        rest, less than a part, waits for more instances or the quiet period. So a 100 MiB
        study with part_mib 64 goes out as ~64 + ~36 MiB however fast it arrived.

        The upload of a large study then overlaps its receive, and the quiet period only
        delays the last part. Each part is an ordinary bundle of the instances not yet sealed
        for that destination (the same bookkeeping as an addition), so a receiver gets every
        instance once. Nothing here changes the study's state: a part that cannot be sealed now
        (no policy yet, no recipient key, a spool file that changed) is left to the stable
        study's turn, which reports why.
        """
        part_bytes = int(self.config.pipeline.part_mib * 1024 * 1024)
        if part_bytes <= 0:
            return 0
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT study_uid FROM studies WHERE state = 'receiving' ORDER BY first_at"
            ).fetchall()
        sealed = 0
        for row in rows:
            study_uid = row["study_uid"]
            try:
                destinations = self.destinations(self._study_facts(study_uid))
                for destination in destinations:
                    pending = _pending_instances(
                        self.state, study_uid, destination.org, destination.mode
                    )
                    for part in full_parts(pending, part_bytes):
                        if self._seal_for(study_uid, destination, part):
                            sealed += 1
            except (NoRecipients, NoPolicy, PayloadError) as exc:
                log.debug("part not sealed yet; the whole study waits its turn", reason=str(exc))
        return sealed

    def _study_facts(self, study_uid: str) -> StudyFacts:
        """What the sharing rules match on, from the study's spooled headers (each read once)."""
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT sop_uid, path, source_ae FROM instances WHERE study_uid = ? "
                "AND state = 'spooled'",
                (study_uid,),
            ).fetchall()
        return self.facts.facts(
            study_uid,
            [(r["sop_uid"], Path(r["path"])) for r in rows],
            [r["source_ae"] for r in rows if r["source_ae"]],
        )

    def _process_study(self, study_uid: str) -> int:
        sealed = 0
        try:
            destinations = self.destinations(self._study_facts(study_uid))
            if not destinations:
                self.ledger.study_held(
                    study_uid, "no sharing rule matches this study; it stays at the site"
                )
                log.info("study held: no sharing rule matches")
                return 0
            for destination in destinations:
                if self._seal_for(study_uid, destination):
                    sealed += 1
        except (NoRecipients, NoPolicy, PayloadError) as exc:  # PayloadError: a spool file
            # no longer matches its recorded sha256 (disk fault, or edited): never sent as is
            self.ledger.study_waits(study_uid, str(exc), time.time() + 30)
            log.warning("study waits", reason=str(exc))
            return sealed
        outcome = self.ledger.study_finished(study_uid)
        if outcome in ("partial", "quarantined"):
            log.warning("study finished with quarantined instances", state=outcome)
        return sealed

    def _seal_for(
        self,
        study_uid: str,
        destination: Destination,
        pending: list[PendingInstance] | None = None,
    ) -> bool:
        """Seal what is pending for the destination (`pending`, if the caller listed it)."""
        if pending is None:
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
        included: list[tuple[str, str]] = []
        modalities: set[str] = set()
        held = HeldBack()  # instances of this part not sent, by reason class (no values)
        # identified members are the spool files as received: their sha256 is on record, so
        # the payload writer reads each once (and checks the copy against the record)
        known: dict[str, str] = {}
        try:
            streams: list[tuple[str, BinaryIO, int]] = []
            work = self.work / bundle_id
            work.mkdir()
            for sop_uid, path, sha, _size, recorded_modality in pending:
                source_path = Path(path)
                modality = recorded_modality
                if transform is identified_bytes:
                    known[instance_name(len(streams))] = sha
                else:
                    target = work / f"{len(streams)}.dcm"
                    try:
                        transform(source_path, destination, target)
                    except InstanceRejected as exc:
                        target.unlink(missing_ok=True)
                        for name, data in exc.previews.items():
                            durable_write(self.quarantine_dir / sop_uid / name, data)
                        self.ledger.quarantine_instance(sop_uid, str(exc), path, exc.category)
                        held.add(str(exc))
                        log.warning("instance quarantined", reason=str(exc))
                        continue
                    source_path = target
                    modality = None
                if modality is None:  # de-identified, or received before modality was kept
                    modality = dcmread(
                        source_path, stop_before_pixels=True, specific_tags=["Modality"]
                    ).get("Modality")
                if modality:
                    modalities.add(str(modality))
                size = source_path.stat().st_size
                streams.append(
                    (instance_name(len(streams)), cast(BinaryIO, LazyFile(source_path)), size)
                )
                included.append((sop_uid, sha))
            if not streams:
                return False
            draft = ManifestDraft(
                bundle_id=bundle_id,
                sender_org=self.identity.org,
                sender_site=self.identity.site,
                recipients=[destination.org],
                mode=destination.mode,
                instance_count=len(streams),
                modalities=sorted(modalities),
                created_at=dt.datetime.now(dt.UTC),
                facts=self._study_facts(study_uid).without_identity(destination.station_names),
                held_back=held.counts() or None,  # reason classes, no values
            )
            pipe = PayloadPipe(streams, known)
            try:
                sink = FolderSink(staging)
                try:
                    header = seal(
                        pipe.reader,
                        sink,
                        draft=draft,
                        recipients=recipients,
                        signing_key=self.identity.signing_key,
                        signer_key_id=self.identity.serial_hex,
                        chunk_size=self.config.upload.chunk_size_bytes,
                    )
                finally:
                    with contextlib.suppress(OSError):  # on success, finish() below raises it
                        sink.finish()
            finally:
                pipe.close()
            pipe.check()
            sink.finish()
            write_synced(staging / "header.bin", header.to_bytes())
            fsync_dir(staging)  # every chunk's and the header's name, before the folder counts
            final = self.outbox / bundle_id
            staging.rename(final)
            fsync_dir(self.outbox)
            sealed_bytes = sum(f.stat().st_size for f in final.iterdir())
            self.ledger.bundle_sealed(
                NewBundle(
                    bundle_id=bundle_id,
                    study_uid=study_uid,
                    dest_org=destination.org,
                    mode=destination.mode,
                    priority=priority_for(self.state, study_uid, destination.priority),
                    payload_bytes=header.manifest.payload_bytes,
                    sealed_bytes=sealed_bytes,
                    instances=included,
                )
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
