"""Agent throughput and memory: PACS -> hub on loopback vs. a plain HTTPS upload, one run.

    .venv/bin/python bench/agent_bench.py [--size-mb 500] [--quiet 2] [--part-mib 64]
                                          [--baseline-runs 3] [--reference-runs 3]
                                          [--results FILE] [--no-results]
                                          [--keep] [--skip-b] [--json FILE] [--profile DIR]

Run by hand, never in tests (the issue's full run is `--size-mb 2048`, about 15 GB of
temporary disk). Everything is real processes on loopback, in a temporary folder that is removed
afterwards:

1. A synthetic CT study of `--size-mb` (512x512 16-bit slices, random pixels: nothing
   compresses) is loaded with dcmtk `storescu` into a private Orthanc (free ports, no plugins)
   that knows agent A's AE for C-MOVE.
2. A hub and agents A (org-a, identified to org-b) and B (org-b) start via `tests/federation.py`;
   A gets a `[pacs]` section pointing at the Orthanc (schedule off).
3. Timed, "PACS -> hub": from the start of `hexchange-agent pull --config A --study-uid ...` until
   the hub's index (SQLite, read-only, polled every 0.1 s) shows every instance of the study in
   `complete` bundles. That includes C-FIND, C-MOVE into A's running SCP (spool: hash + fsync),
   payload + seal (AES-GCM chunks, fsync each) and the chunked upload (hub: fsync each chunk).
   A study larger than `[pipeline] part_mib` is sealed and uploaded in parts while it arrives,
   and a pull that brought every instance does not wait out the quiet period, so the time
   after the last C-STORE is what the overlap leaves. The C-MOVE alone is reported too: it is
   the floor for the whole.
4. The baseline, in the same run: `curl --http1.1 -T file` of a file of the sealed size to a
   tiny Starlette app under uvicorn/h11 (as the hub) with the hub's own server certificate,
   which reads and discards the body; median of `--baseline-runs` runs, warm page cache.
   ratio = baseline seconds / hexchange seconds; the issue's target is >= 0.60.
5. Memory: agent A's RSS (and the pull command's, and the hub's) sampled every 0.2 s from
   /proc, plus the kernel's high-water mark (VmHWM); the target is < 200 MB for a 2 GB study.

The references (the same C-MOVE into dcmtk `storescp` and into a bare pynetdicom SCP) vary
more between runs than the code does: they run `--reference-runs` times, one round before the
timed window and the rest after it, every timed window starting with the dirty pages written
back (`sync`); the storescp ratio uses their median, and the single run right after the timed
window (what was reported before) stays in the JSON as `floor_*_s` / `dcmtk_ratio_single`.

Afterwards B's copy is counted (not timed) as a sanity check. The phase breakdown comes from A's
state database (instances.received_at, outbox.created_at), the hub's received chunks and the
poll times; CPU seconds per process come from /proc/PID/stat.

Appends a run to the "agent throughput and memory" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from tests.factories.dicom import FakePatient, random_ct_study  # noqa: E402
from tests.factories.orthanc import ORTHANC_AE as FACTORY_ORTHANC_AE  # noqa: E402
from tests.factories.orthanc import Orthanc as TestOrthanc  # noqa: E402
from tests.factories.orthanc import start_orthanc  # noqa: E402
from tests.federation import BIN, AgentHandle, Federation  # noqa: E402
from tests.ports import free_port  # noqa: E402

SECTION = "agent throughput and memory"
INTRO = (
    "End to end PACS -> hub on loopback (issue 5): `hexchange-agent pull` (C-FIND + C-MOVE from "
    "a private Orthanc into agent A's running SCP) until the hub's index says the bundle is "
    "complete, versus `curl --http1.1 -T` of the same number of bytes over HTTPS to a "
    "discard-only Starlette/uvicorn endpoint with the hub's certificate, in the same run. "
    "Targets: ratio (curl seconds / hexchange seconds) >= 0.60; agent A peak RSS < 200 MB "
    "for a 2 GB study. Written by bench/agent_bench.py."
)
SLICE = 512
SLICE_BYTES = SLICE * SLICE * 2
ORTHANC_AE = FACTORY_ORTHANC_AE  # the AE title the shared Orthanc factory configures
FLOOR_PYN_AE = "FLOORPYN"
FLOOR_DCMTK_AE = "FLOORDCMTK"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

SINK_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def sink(request):
    received = 0
    async for block in request.stream():
        received += len(block)
    return PlainTextResponse(str(received))


app = Starlette(routes=[Route("/{path:path}", sink, methods=["PUT", "POST"])])
"""


# --- the study and the PACS -------------------------------------------------------------------


def write_study(folder: Path, size_mb: float, seed: int = 5) -> tuple[str, list[Path]]:
    """One CT series of 512x512 16-bit slices with random 12-bit pixels."""
    return random_ct_study(
        folder,
        size_mb * 1e6,
        patient=FakePatient(name="Benchley^Agent^Thru", patient_id="PID-BENCH-0001"),
        accession="ACCBENCH0001",
        seed=seed,
        size=SLICE,
        study_date=dt.date.today().strftime("%Y%m%d"),
    )


@dataclass
class Orthanc:
    """The bench's PACS: the tests' Orthanc (tests/factories/orthanc.py), with ports chosen up
    front (agent A's config names them) and a one-association bulk load."""

    root: Path
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    server: TestOrthanc | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.server.process if self.server else None

    floor_pyn_port: int = field(default_factory=free_port)
    floor_dcmtk_port: int = field(default_factory=free_port)

    def start(self, agent: AgentHandle) -> None:
        self.server = start_orthanc(
            self.root,
            {
                "agent-a": (agent.ae_title, agent.dicom_port),
                "floor-pyn": (FLOOR_PYN_AE, self.floor_pyn_port),
                "floor-dcmtk": (FLOOR_DCMTK_AE, self.floor_dcmtk_port),
            },
            dicom_port=self.dicom_port,
            http_port=self.http_port,
            scu_timeout=30,
        )

    def rest(self, path: str) -> Any:
        response = httpx.get(f"http://127.0.0.1:{self.http_port}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def load(self, folder: Path) -> float:
        """storescu the whole folder in one association; returns seconds."""
        binary = shutil.which("storescu", path="/usr/bin:/usr/local/bin") or "storescu"
        start = time.perf_counter()
        result = subprocess.run(
            [
                binary,
                "-aet",
                "MODALITY",
                "-aec",
                ORTHANC_AE,
                "+sd",
                "+r",
                "127.0.0.1",
                str(self.dicom_port),
                str(folder),
            ],
            capture_output=True,
            check=False,
            env={**os.environ, "TCP_NODELAY": "1"},  # dcmtk keeps Nagle on by default: 40 ms/file
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.decode(errors="replace")[-2000:])
        return time.perf_counter() - start

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- /proc sampling ---------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


class RssSampler(threading.Thread):
    """Every `interval` s: VmRSS of each watched process; keeps the peak and the series."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.peak_kb: dict[str, int] = {}
        self.hwm_kb: dict[str, int] = {}
        self.samples: dict[str, list[tuple[float, int]]] = {}
        self.stop_event = threading.Event()

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def run(self) -> None:
        while not self.stop_event.is_set():
            now = time.time()
            for name, pid in list(self.pids.items()):
                rss = _status_kb(pid, "VmRSS")
                if rss is None:
                    continue
                self.samples.setdefault(name, []).append((now, rss))
                self.peak_kb[name] = max(self.peak_kb.get(name, 0), rss)
                hwm = _status_kb(pid, "VmHWM")
                if hwm is not None:
                    self.hwm_kb[name] = hwm
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


# --- the databases ----------------------------------------------------------------------------


def _ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def _utc(value: str | None) -> float | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def hub_bundles(hub_db: Path) -> list[dict[str, Any]]:
    """Agent A's bundles in the hub's index (a large study comes in parts), oldest first."""
    try:
        conn = _ro(hub_db)
    except sqlite3.Error:
        return []
    try:
        rows = conn.execute(
            "SELECT bundle_id, state, instance_count, payload_bytes, chunk_count, chunk_size, "
            "created_at, completed_at FROM bundle WHERE sender_org = 'org-a' ORDER BY created_at"
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [dict(r) for r in rows]


def all_complete(bundles: list[dict[str, Any]], instances: int) -> bool:
    """Every instance of the study is in a bundle the hub has complete."""
    done = sum(b["instance_count"] for b in bundles if b["state"] == "complete")
    return done >= instances and all(b["state"] == "complete" for b in bundles)


def agent_timeline(agent: AgentHandle) -> dict[str, Any]:
    conn = _ro(agent.data_dir / "state.db")
    try:
        inst = conn.execute(
            "SELECT COUNT(*) n, MIN(received_at) first, MAX(received_at) last, SUM(size) bytes "
            "FROM instances"
        ).fetchone()
        study = conn.execute("SELECT last_at FROM studies ORDER BY last_at DESC LIMIT 1").fetchone()
        out = conn.execute(
            "SELECT state, sealed_bytes, payload_bytes, instance_count, created_at, updated_at "
            "FROM outbox ORDER BY created_at"
        ).fetchall()
    finally:
        conn.close()
    return {
        "instances": inst["n"],
        "instance_bytes": inst["bytes"] or 0,
        "first_stored": inst["first"],
        "last_stored": inst["last"],
        "study_last_at": study["last_at"] if study else None,
        "outbox": [dict(r) for r in out],
    }


_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)")


def log_times(log_file: Path, events: tuple[str, ...]) -> dict[str, list[float]]:
    """Timestamps of the agent's structured log lines, by event."""
    found: dict[str, list[float]] = {e: [] for e in events}
    if not log_file.exists():
        return found
    for line in log_file.read_text(errors="replace").splitlines():
        for event in events:
            if event in line and (m := _TS.search(line)):
                found[event].append(_utc(m.group(1).rstrip("Z")) or 0.0)
    return found


# --- the baseline -----------------------------------------------------------------------------


def curl_baseline(
    work: Path, federation: Federation, size: int, runs: int
) -> tuple[list[float], int]:
    """curl -T of a `size`-byte file to a discard endpoint with the hub's TLS certificate."""
    blob = work / "baseline.bin"
    with open(blob, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            handle.write(block)
            left -= len(block)
    blob.read_bytes()  # warm page cache, as the agent's outbox was
    (work / "sink").mkdir()
    (work / "sink" / "bench_sink.py").write_text(SINK_APP)
    port = free_port()
    tls = federation.hub_dir / "tls"
    log = open(work / "sink.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [
            str(BIN / "python"),
            "-m",
            "uvicorn",
            "bench_sink:app",
            "--app-dir",
            str(work / "sink"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--http",
            "h11",
            "--lifespan",
            "off",
            "--ssl-certfile",
            str(tls / "hub.pem"),
            "--ssl-keyfile",
            str(tls / "hub.key"),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    times: list[float] = []
    received = 0
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the baseline server did not start: " + str(work / "sink.log"))
            time.sleep(0.1)
        for _ in range(runs):
            start = time.perf_counter()
            result = subprocess.run(
                [
                    "curl",
                    "--http1.1",
                    "--silent",
                    "--show-error",
                    "--fail",
                    "--cacert",
                    str(federation.ca_file),
                    "-T",
                    str(blob),
                    f"https://127.0.0.1:{port}/upload/baseline.bin",
                ],
                capture_output=True,
                check=True,
            )
            times.append(time.perf_counter() - start)
            received = int(result.stdout.decode().strip())
            if received != size:
                raise RuntimeError(f"the baseline server received {received} of {size} bytes")
    finally:
        _stop(server)
        log.close()
        blob.unlink(missing_ok=True)
    return times, received


# --- optional profile -------------------------------------------------------------------------


def _start_spies(folder: Path | None, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy record (wall clock: idle frames too, per thread) of each process, if asked."""
    if folder is None:
        return []
    spy = shutil.which("py-spy") or os.environ.get("PY_SPY", "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--idle",
                "--threads",
                "--nonblocking",
                "--rate",
                "50",
                "--output",
                str(folder / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / f"{name}.log", "wb"),
        )
        for name, pid in pids.items()
    ]


def _stop_spies(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


# --- the run ----------------------------------------------------------------------------------


def _append_pacs(
    agent: AgentHandle,
    orthanc: Orthanc,
    chunk_kib: int | None,
    parallel: int | None = None,
    part_mib: float | None = None,
    move_associations: int | None = None,
) -> None:
    text = agent.config_file.read_text().rstrip("\n")
    if part_mib is not None:
        assert text.count("[pipeline]\n") == 1
        text = text.replace("[pipeline]\n", f"[pipeline]\npart_mib = {part_mib}\n")
    if chunk_kib:
        assert text.count("[upload]\n") == 1
        text = text.replace("[upload]\n", f"[upload]\nchunk_size_bytes = {chunk_kib * 1024}\n")
    if parallel:
        assert text.count("[upload]\n") == 1
        text = text.replace("[upload]\n", f"[upload]\nparallel_chunks = {parallel}\n")
    text += (
        "\n\n[pacs]\n"
        'host = "127.0.0.1"\n'
        f"port = {orthanc.dicom_port}\n"
        f'ae_title = "{ORTHANC_AE}"\n'
        'retrieve = "move"\n'
        'schedule = "off"\n'
        "retrieve_timeout_seconds = 600\n"
        + (f"move_associations = {move_associations}\n" if move_associations else "")
    )
    agent.config_file.write_text(text + "\n")


def floor_pynetdicom(orthanc: Orthanc, study_uid: str, folder: Path, expected: int) -> float:
    """C-MOVE the study from the same Orthanc into a bare pynetdicom SCP in this process:
    chunked receive, the file renamed into `folder`, no hash, no fsync, no database, no
    sealing. What any agent built on pynetdicom pays for the DICOM leg alone; seconds."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, StoragePresentationContexts, _config, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelMove,
    )

    _config.STORE_RECV_CHUNKED_DATASET = True
    folder.mkdir(parents=True)

    def handle(event: Any) -> int:
        os.replace(event.dataset_path, folder / str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(FLOOR_PYN_AE)
    ae.supported_contexts = StoragePresentationContexts
    ae.maximum_pdu_size = 0
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    server = ae.start_server(
        ("127.0.0.1", orthanc.floor_pyn_port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, handle)],
    )
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        start = time.perf_counter()
        assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=ORTHANC_AE)
        if not assoc.is_established:
            raise RuntimeError("Orthanc refused the floor C-MOVE association")
        for _status, _identifier in assoc.send_c_move(
            query, FLOOR_PYN_AE, StudyRootQueryRetrieveInformationModelMove
        ):
            pass
        assoc.release()
        seconds = time.perf_counter() - start
    finally:
        server.shutdown()
    got = len(list(folder.iterdir()))
    if got != expected:
        raise RuntimeError(f"bare pynetdicom SCP received {got} of {expected} instances")
    shutil.rmtree(folder)
    return seconds


def settle() -> None:
    """Write back every dirty page before a timed window: what the Orthanc load (500 MB) or
    the run before left in the page cache would otherwise be flushed during the next one (by
    the kernel, and by each fsync's journal commit), slowing whichever measurement comes next."""
    os.sync()


def references(
    r: dict[str, Any], orthanc: Orthanc, study_uid: str, work: Path, expected: int, when: str
) -> tuple[float, float]:
    """One round of both references (bare pynetdicom SCP, then dcmtk storescp), appended to
    r["reference_runs"] with `when` (before / after the timed window); their seconds."""
    settle()
    load = os.getloadavg()[0]
    pyn = floor_pynetdicom(orthanc, study_uid, work / "floor-pyn", expected)
    settle()
    dcmtk = floor_dcmtk(orthanc, study_uid, work / "floor-dcmtk", expected)
    r.setdefault("reference_runs", []).append(
        {"when": when, "load_1min": load, "pynetdicom_s": pyn, "dcmtk_s": dcmtk}
    )
    print(f"  {when}: bare pynetdicom {pyn:.2f} s, storescp {dcmtk:.2f} s", flush=True)
    return pyn, dcmtk


def _dcmtk(tool: str) -> str:
    """dcmtk's `tool`, not pynetdicom's console script of the same name in the venv."""
    return shutil.which(tool, path="/usr/bin:/usr/local/bin") or tool


def floor_dcmtk(orthanc: Orthanc, study_uid: str, folder: Path, expected: int) -> float:
    """The same C-MOVE into dcmtk `storescp` (C; writes each file, no fsync), started by dcmtk
    `movescu`; TCP_NODELAY=1 for both (dcmtk leaves Nagle on otherwise: 40 ms per instance)."""
    folder.mkdir(parents=True)
    env = {**os.environ, "TCP_NODELAY": "1"}
    scp = subprocess.Popen(
        [
            _dcmtk("storescp"),
            "-aet",
            FLOOR_DCMTK_AE,
            "-od",
            str(folder),
            str(orthanc.floor_dcmtk_port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", orthanc.floor_dcmtk_port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("storescp did not start") from None
                time.sleep(0.05)
        start = time.perf_counter()
        result = subprocess.run(
            [
                _dcmtk("movescu"),
                "-aet",
                FLOOR_DCMTK_AE,
                "-aec",
                ORTHANC_AE,
                "-aem",
                FLOOR_DCMTK_AE,
                "-S",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "127.0.0.1",
                str(orthanc.dicom_port),
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        seconds = time.perf_counter() - start
    finally:
        _stop(scp)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode(errors="replace")[-1000:])
    got = len(list(folder.iterdir()))
    if got != expected:
        raise RuntimeError(f"storescp received {got} of {expected} instances")
    shutil.rmtree(folder)
    return seconds


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    r: dict[str, Any] = {"size_mb_arg": args.size_mb, "quiet": args.quiet}
    r["part_mib"] = args.part_mib
    r["move_associations"] = args.move_associations
    t = time.perf_counter()
    study_uid, files = write_study(work / "modality", args.size_mb)
    study_bytes = sum(f.stat().st_size for f in files)
    r.update(instances=len(files), study_bytes=study_bytes, generate_s=time.perf_counter() - t)
    print(
        f"study: {len(files)} instances, {study_bytes / 1e6:.0f} MB "
        f"(generated in {r['generate_s']:.0f} s)",
        flush=True,
    )

    federation = Federation(work / "fed", quiet_period=args.quiet)
    orthanc = Orthanc(work / "orthanc")
    sampler = RssSampler(0.2)
    pull: subprocess.Popen[bytes] | None = None
    spies: list[subprocess.Popen[bytes]] = []
    try:
        a, b = federation.start_clinic_and_archive()
        orthanc.start(a)
        r["orthanc_load_s"] = orthanc.load(work / "modality")
        count = orthanc.rest("/statistics")["CountInstances"]
        if count != len(files):
            raise RuntimeError(f"Orthanc holds {count} of {len(files)} instances")
        print(
            f"orthanc: {count} instances loaded by storescu in {r['orthanc_load_s']:.1f} s",
            flush=True,
        )
        shutil.rmtree(work / "modality")  # disk: the PACS has them now
        # the references vary more between runs than the code does: one round before the
        # timed window, the rest after it (see `references`), the ratio uses their median
        if not args.no_floor and args.reference_runs > 1:
            print("references (before): the same C-MOVE into bare receivers ...", flush=True)
            references(r, orthanc, study_uid, work, len(files), "before")
        _append_pacs(
            a, orthanc, args.chunk_kib, args.parallel_chunks, args.part_mib, args.move_associations
        )
        federation.start_agent(a)
        assert a.process is not None and federation.hub_process is not None
        _wait(lambda: (a.data_dir / "policy.json").exists(), 30, "agent A's policy")
        time.sleep(1.0)  # let the start-up loops (heartbeat, recipients) settle
        sampler.watch("agent A", a.process.pid)
        sampler.watch("hub", federation.hub_process.pid)
        sampler.start()
        pids = {"agent A": a.process.pid, "hub": federation.hub_process.pid}
        assert orthanc.process is not None
        pids["orthanc"] = orthanc.process.pid
        settle()
        cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
        hub_db = federation.hub_dir / "hub.db"

        spies += _start_spies(
            args.profile, {"agent-a": a.process.pid, "hub": federation.hub_process.pid}
        )
        print("timed: pull -> hub complete ...", flush=True)
        pull_log = open(work / "pull.log", "wb")  # noqa: SIM115 (closed below)
        r["load_before"] = os.getloadavg()
        t0 = time.time()
        pull = subprocess.Popen(
            [
                str(BIN / "hexchange-agent"),
                "pull",
                "--config",
                str(a.config_file),
                "--study-uid",
                study_uid,
            ],
            stdout=pull_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )
        sampler.watch("pull command", pull.pid)
        spies += _start_spies(args.profile, {"pull": pull.pid})
        pull_cpu = 0.0
        pull_done: float | None = None
        deadline = time.monotonic() + args.timeout
        end: float | None = None
        while time.monotonic() < deadline:
            if pull_done is None:
                pull_cpu = cpu_seconds(pull.pid) or pull_cpu
                if pull.poll() is not None:
                    pull_done = time.time()
            if all_complete(hub_bundles(hub_db), len(files)):
                end = time.time()
                break
            if a.process.poll() is not None:
                raise RuntimeError(f"agent A exited: see {a.log_file}")
            time.sleep(0.1)
        if end is None:
            raise TimeoutError(f"the study was not complete at the hub in {args.timeout} s")
        if pull_done is None:
            pull.wait(timeout=60)
            pull_done = time.time()
        pull_log.close()
        cpu1 = {n: cpu_seconds(p) for n, p in pids.items()}
        r["load_after"] = os.getloadavg()
        _stop_spies(spies)
        r["pull_rc"] = pull.returncode
        r["pull_output"] = (work / "pull.log").read_text(errors="replace")[-1500:]
        r["cpu_s"] = {}
        for n in pids:
            before, after = cpu0[n], cpu1[n]
            r["cpu_s"][n] = after - before if before is not None and after is not None else None
        r["cpu_s"]["pull command"] = pull_cpu
        r["t0"], r["end"], r["pull_done"] = t0, end, pull_done
        r["total_s"] = end - t0
        r["hub_bundles"] = hub_bundles(hub_db)
        _wait(
            lambda: all(o["state"] == "delivered" for o in agent_timeline(a)["outbox"]),
            60,
            "A's receipt",
        )
        r["delivered_at"] = time.time()
        r["agent"] = agent_timeline(a)
        r["log"] = log_times(a.log_file, ("instance stored", "bundle sealed", "bundle uploaded"))
        time.sleep(0.5)
        sampler.stop()
        r["rss_peak_kb"] = dict(sampler.peak_kb)
        r["rss_hwm_kb"] = dict(sampler.hwm_kb)
        r["rss_samples"] = {n: len(s) for n, s in sampler.samples.items()}
        r["rss_series_a"] = sampler.samples.get("agent A", [])

        outbox = r["agent"]["outbox"]
        r["sealed_bytes"] = sum(o["sealed_bytes"] for o in outbox)
        print(
            f"hexchange: {r['total_s']:.1f} s, sealed {r['sealed_bytes'] / 1e6:.1f} MB", flush=True
        )
        if not args.skip_b:
            started = time.time()
            try:
                _wait(
                    lambda: len(b.received_files()) >= len(files),
                    args.timeout,
                    "B's copy",
                    interval=1.0,
                )
                r["b_received"] = len(b.received_files())
            except TimeoutError:
                r["b_received"] = len(b.received_files())
            r["b_wait_s"] = time.time() - started
        # the comparisons run on a quiet machine: B's download and every loop have stopped
        federation.stop()
        print("baseline: curl ...", flush=True)
        r["baseline_s"], r["baseline_received"] = curl_baseline(
            work, federation, r["sealed_bytes"], args.baseline_runs
        )
        if not args.no_floor:
            print("floor: the same C-MOVE into bare receivers ...", flush=True)
            # the first round after the timed window is where the single reference run was
            # measured before (kept as floor_*_s, for comparison with older results)
            first = references(r, orthanc, study_uid, work, len(files), "after")
            r["floor_pynetdicom_s"], r["floor_dcmtk_s"] = first
            for _ in range(args.reference_runs - 2 if args.reference_runs > 1 else 0):
                references(r, orthanc, study_uid, work, len(files), "after")
    finally:
        _stop_spies(spies)
        sampler.stop()
        if pull is not None:
            _stop(pull)
        federation.stop()
        orthanc.stop()
    return r


# --- report -----------------------------------------------------------------------------------


def _machine() -> dict[str, str]:
    def sh(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return (out.stdout or out.stderr).strip()

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    return {
        "uname": sh("uname", "-a"),
        "nproc": sh("nproc"),
        "free": sh("free", "-h"),
        "cpu": cpu,
        "python": platform.python_version(),
        "orthanc": sh(orthanc, "--version").splitlines()[0] if Path(orthanc).exists() else "",
        "curl": sh("curl", "--version").splitlines()[0],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    return statistics.median(run[key] for run in runs) if runs else None


def _range(runs: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    return (min(run[key] for run in runs), max(run[key] for run in runs)) if runs else None


def analyse(r: dict[str, Any]) -> dict[str, Any]:
    a = r["agent"]
    outbox = a["outbox"]
    hub = r["hub_bundles"]
    t0 = r["t0"]
    base = statistics.median(r["baseline_s"])
    hex_s = r["total_s"]
    first_sealed = min(o["created_at"] for o in outbox)
    last_sealed = max(o["created_at"] for o in outbox)
    completed = sorted(t for b in hub if (t := _utc(b["completed_at"])) is not None)
    runs: list[dict[str, Any]] = r.get("reference_runs", [])
    dcmtk = _median(runs, "dcmtk_s")
    # the timeline, in seconds from the start of the pull; a large study is sent in parts, so
    # sealing and uploading overlap the receive
    timeline = [
        ("first instance in A's spool (C-FIND, association, first C-STORE)", a["first_stored"]),
        ("first bundle sealed", first_sealed),
        ("first bundle complete at the hub", completed[0] if completed else None),
        ("last instance in A's spool (end of the C-MOVE)", a["last_stored"]),
        ("last bundle sealed", last_sealed),
        ("last bundle complete at the hub (end)", r["end"]),
    ]
    return {
        "baseline_median_s": base,
        "ratio": base / hex_s,
        "hex_mb_s": r["sealed_bytes"] / 1e6 / hex_s,
        "base_mb_s": r["sealed_bytes"] / 1e6 / base,
        "receive_s": a["last_stored"] - t0,
        "receive_ratio": base / (a["last_stored"] - t0),
        "tail_s": r["end"] - a["last_stored"],
        "timeline": [(name, None if t is None else t - t0) for name, t in timeline],
        "bundles": len(hub),
        "chunks": sum(b["chunk_count"] for b in hub),
        "chunk_size": hub[0]["chunk_size"] if hub else 0,
        "pull_cli_s": r["pull_done"] - t0,
        # the fair reference: the same C-MOVE into dcmtk storescp, this run; the
        # median of its runs (the single run after the timed window is kept for comparison)
        "dcmtk_ratio": dcmtk / hex_s if dcmtk is not None else None,
        "dcmtk_receive_ratio": (dcmtk / (a["last_stored"] - t0) if dcmtk is not None else None),
        "dcmtk_ratio_single": r["floor_dcmtk_s"] / hex_s if "floor_dcmtk_s" in r else None,
        "dcmtk_median_s": dcmtk,
        "dcmtk_range_s": _range(runs, "dcmtk_s"),
        "pynetdicom_median_s": _median(runs, "pynetdicom_s"),
        "pynetdicom_range_s": _range(runs, "pynetdicom_s"),
        "peak_a_mb": r["rss_peak_kb"].get("agent A", 0) / 1024,
        "hwm_a_mb": r["rss_hwm_kb"].get("agent A", 0) / 1024,
    }


def report(r: dict[str, Any], x: dict[str, Any], m: dict[str, str], command: str) -> list[str]:
    size_gb = r["study_bytes"] / 1e9
    ratio_ok = x["ratio"] >= 0.60
    mem_ok = x["hwm_a_mb"] < 200
    mem_note = (
        "" if size_gb >= 2.0 else f" (this study is {size_gb:.2f} GB, the target is for 2 GB)"
    )
    lines = [
        f"### {m['date']} — {r['study_bytes'] / 1e6:.0f} MB study",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: `{m['uname']}`; nproc {m['nproc']}; CPU {m['cpu']}; Python {m['python']}; "
        f"{m['orthanc']}; {m['curl']}.",
        "",
        "```",
        m["free"],
        "```",
        "",
        f"Study: {r['instances']} CT instances 512x512 16-bit, random pixels, "
        f"{r['study_bytes'] / 1e6:.1f} MB; loaded into Orthanc by storescu in "
        f"{r['orthanc_load_s']:.1f} s. Sealed: {r['sealed_bytes'] / 1e6:.1f} MB in "
        f"{x['chunks']} chunks of {x['chunk_size'] // 1024} KiB in {x['bundles']} bundle(s) "
        f"(part size {r['part_mib'] if r['part_mib'] is not None else 'default'} MiB; C-MOVE "
        f"over {r['move_associations'] or 'the default'} association(s)). "
        f"Quiet period {r['quiet']:g} s (a completed pull does not wait for it), agent poll "
        "0.5 s.",
        "",
        "| measure | seconds | MB/s (sealed) | ratio curl/this |",
        "|---|---:|---:|---:|",
        f"| hexchange PACS -> hub complete | {r['total_s']:.2f} | {x['hex_mb_s']:.1f} | "
        f"{x['ratio']:.3f} |",
        f"| C-MOVE alone: pull start -> last instance in A's spool | {x['receive_s']:.2f} | "
        f"{r['sealed_bytes'] / 1e6 / x['receive_s']:.1f} | {x['receive_ratio']:.3f} |",
        *[
            f"| {name} | {r[key]:.2f} | {r['sealed_bytes'] / 1e6 / r[key]:.1f} | "
            f"{x['baseline_median_s'] / r[key]:.3f} |"
            for key, name in (
                (
                    "floor_pynetdicom_s",
                    "floor: the same C-MOVE into a bare pynetdicom SCP (no fsync, no database, "
                    "nothing sealed or sent)",
                ),
                (
                    "floor_dcmtk_s",
                    "floor: the same C-MOVE into dcmtk storescp (C, no fsync)",
                ),
            )
            if key in r
        ],
        f"| curl --http1.1 -T, same bytes, median of {len(r['baseline_s'])} | "
        f"{x['baseline_median_s']:.2f} | {x['base_mb_s']:.1f} | 1 |",
        "",
        "curl runs: " + ", ".join(f"{s:.2f} s" for s in r["baseline_s"]) + ".",
        "",
        "Timeline, seconds from the start of the pull (A's state DB, the hub's index, the "
        "poll); a study larger than a part is sealed and uploaded while it arrives:",
        "",
        "| event | at s |",
        "|---|---:|",
        *[f"| {name} | {'-' if t is None else f'{t:.2f}'} |" for name, t in x["timeline"]],
        "",
        f"What the overlap leaves after the C-MOVE: {x['tail_s']:.2f} s from the last instance "
        "in the spool to the last bundle complete at the hub.",
        "",
        f"`hexchange-agent pull` itself returned after {x['pull_cli_s']:.2f} s "
        f"(exit {r['pull_rc']}).",
        "CPU seconds during the timed window: "
        + ", ".join(f"{n} {s:.1f}" for n, s in r["cpu_s"].items() if s is not None)
        + f" (wall {r['total_s']:.1f} s, {m['nproc']} CPUs). Load average (1/5/15 min) "
        f"before {_load(r['load_before'])}, after {_load(r['load_after'])} — the machine may "
        "be shared; other work on it slows the timed window, not the curl runs as much.",
        "",
        "| process | peak RSS sampled (0.2 s) MB | VmHWM MB |",
        "|---|---:|---:|",
        *[
            f"| {n} | {r['rss_peak_kb'][n] / 1024:.0f} | {r['rss_hwm_kb'].get(n, 0) / 1024:.0f} |"
            for n in r["rss_peak_kb"]
        ],
        "",
    ]
    if "b_received" in r:
        lines += [
            f"B's copy (not timed): {r['b_received']} of {r['instances']} instances received "
            f"{r['b_wait_s']:.0f} s after the hub had the bundle.",
            "",
        ]
    if x.get("dcmtk_ratio") is not None:
        lines += [
            f"Against dcmtk storescp (the issue's target: PACS -> hub within 2x the same "
            f"C-MOVE into storescp, ratio >= 0.5): ratio storescp/hexchange "
            f"{x['dcmtk_ratio']:.2f} ({'PASS' if x['dcmtk_ratio'] >= 0.5 else 'FAIL'}) "
            f"with the median of {len(r['reference_runs'])} storescp runs; "
            f"the C-MOVE into the agent alone {x['dcmtk_receive_ratio']:.2f}; with the single "
            f"run right after the timed window (as measured before) "
            f"{x['dcmtk_ratio_single']:.2f}.",
            "",
            "| reference run | load 1-min | bare pynetdicom s | storescp s |",
            "|---|---:|---:|---:|",
            *[
                f"| {run['when']} | {run['load_1min']:.1f} | {run['pynetdicom_s']:.2f} | "
                f"{run['dcmtk_s']:.2f} |"
                for run in r["reference_runs"]
            ],
            f"| median (range) | | {x['pynetdicom_median_s']:.2f} "
            f"({x['pynetdicom_range_s'][0]:.2f}-{x['pynetdicom_range_s'][1]:.2f}) | "
            f"{x['dcmtk_median_s']:.2f} "
            f"({x['dcmtk_range_s'][0]:.2f}-{x['dcmtk_range_s'][1]:.2f}) |",
            "",
        ]
    lines += [
        f"Verdict: throughput {'PASS' if ratio_ok else 'FAIL'} "
        f"(ratio {x['ratio']:.2f}; target >= 0.60; the C-MOVE alone is "
        f"{x['receive_ratio']:.2f}); memory "
        f"{'PASS' if mem_ok else 'FAIL'} (agent A VmHWM {x['hwm_a_mb']:.0f} MB; "
        f"target < 200 MB){mem_note}.",
    ]
    return lines


def append_run(path: Path, lines: list[str]) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    parts = existing.rstrip("\n").split("\n## ")
    block = "\n".join(lines)
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith(SECTION + "\n"):
            parts[i] = part.rstrip("\n") + "\n\n" + block
            break
    else:
        parts.append(f"{SECTION}\n\n{INTRO}\n\n{block}")
    path.write_text("\n## ".join(parts) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=500, help="study size (2048: issue)")
    parser.add_argument("--quiet", type=float, default=2.0, help="agent quiet period, seconds")
    parser.add_argument(
        "--chunk-kib", type=int, help="agent A [upload] chunk_size_bytes / 1024 (default 1024)"
    )
    parser.add_argument(
        "--parallel-chunks", type=int, help="agent A [upload] parallel_chunks (default 4)"
    )
    parser.add_argument(
        "--part-mib", type=float, help="agent A [pipeline] part_mib (default 64; 0: whole study)"
    )
    parser.add_argument(
        "--move-associations", type=int, help="agent A [pacs] move_associations (default 2)"
    )
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument(
        "--reference-runs",
        type=int,
        default=3,
        help="rounds of the storescp and bare pynetdicom references (one before the timed "
        "window, the rest after it; the ratio uses their median)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the C-MOVE into a bare pynetdicom SCP and into dcmtk storescp",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="longest wait, seconds")
    parser.add_argument("--skip-b", action="store_true", help="do not wait for B's copy")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-results", action="store_true", help="print only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy record A, hub and pull into this folder (PY_SPY=...)"
    )
    args = parser.parse_args()
    command = ".venv/bin/python bench/agent_bench.py " + shlex.join(sys.argv[1:])
    wall = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="hexchange-agentbench-"))
    try:
        r = run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    x = analyse(r)
    m = _machine()
    lines = report(r, x, m, command)
    lines.insert(-1, f"Whole benchmark run: {time.perf_counter() - wall:.0f} s wall.")
    lines.insert(-1, "")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"raw": r, "derived": x}, indent=1, default=str))
    if not args.no_results:
        append_run(args.results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
