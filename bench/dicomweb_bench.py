"""DICOMweb of research collections on PostgreSQL: QIDO-RS latency at scale, indexing while
queries run, and WADO-RS throughput against a plain static file server, in one run.

Builds a fresh PostgreSQL database (127.0.0.1:5432, user postgres) with the hub's schema and
one collection holding `--instances` synthetic index rows (10 instances in 2 series per study,
loaded with COPY; realistic de-identified values: modality, dates 2015-2025, body part,
descriptions), starts `hexchange-hub serve` as its own process, and measures:

* QIDO-RS study level and series level, p50/p99 under `--clients` concurrent clients, a
  patient-less research mix: modality, date range, body part, description wildcard, paging;
* indexing throughput: real de-identified instances through the hub's batched ingest path
  (`add_batch`: verification, blob store, index, one transaction per batch; with `--processes
  N` verified in N processes, as `collection_ingest_processes`) in a separate process while
  the queries run;
* WADO-RS instance retrieval vs the same files served by Python's ThreadingHTTPServer (same
  TLS), 4 clients, alternating rounds; the ratio is hub / static.

    .venv/bin/python bench/dicomweb_bench.py                 # 1M instances
    .venv/bin/python bench/dicomweb_bench.py --instances 10000000
    .venv/bin/python bench/dicomweb_bench.py --quick         # 20k instances, a smoke run
    .venv/bin/python bench/dicomweb_bench.py --baseline /tmp/main-tree  # this tree vs another
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.server
import io
import json
import multiprocessing
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from sqlmodel import select  # noqa: E402

from bench.hub_process import wait_for_hub  # noqa: E402
from certs.tls import client_ssl_context, server_ssl_context  # noqa: E402
from hub.bootstrap import init_hub  # noqa: E402
from hub.collections import service as collections  # noqa: E402
from hub.collections.blobs import InstanceFiles  # noqa: E402
from hub.collections.keys import FileKeyProvider  # noqa: E402
from hub.collections.models import Collection  # noqa: E402
from hub.collections.store import Source, add_instance  # noqa: E402
from hub.principals import Principal, Role  # noqa: E402
from hub.services import build_services  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from hub.sites import service as sites  # noqa: E402
from hub.users import service as users  # noqa: E402
from tests.factories.collections import deidentified_study, key_file, part10  # noqa: E402
from tests.ports import free_port  # noqa: E402

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
NAME = "bench"
MODALITIES = ["CT", "CT", "CT", "MR", "MR", "CR", "US", "PT"]
BODY_PARTS = ["CHEST", "HEAD", "ABDOMEN", "PELVIS", "KNEE", "SPINE", "BREAST", "HEART"]
WORDS = ["CHEST", "HEAD", "ANGIO", "CONTRAST", "FOLLOW UP", "SCREENING", "TRAUMA", "LOW DOSE"]
PASSWORD = "bench password, not a secret"


def _date(rng: random.Random) -> str:
    day = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(11 * 365))
    return day.strftime("%Y%m%d")


def load(raw_url: str, collection_id: int, instances: int, seed: int = 7) -> dict[str, Any]:
    """COPY studies, series and instances (10 per study, 2 series); returns counts and some
    study UIDs for the queries."""
    rng = random.Random(seed)
    studies = max(1, instances // 10)
    sample: list[str] = []
    started = time.perf_counter()
    study_cols = [
        "collection_id",
        "study_uid",
        "study_date",
        "study_time",
        "accession",
        "study_id",
        "description",
        "patient_id",
        "patient_name",
        "patient_sex",
        "modalities",
        "series_count",
        "instance_count",
        "attributes",
    ]
    series_cols = [
        "collection_id",
        "study_uid",
        "series_uid",
        "modality",
        "series_number",
        "description",
        "body_part",
        "series_date",
        "series_time",
        "instance_count",
        "attributes",
    ]
    instance_cols = [
        "collection_id",
        "study_uid",
        "series_uid",
        "sop_uid",
        "sop_class_uid",
        "instance_number",
        "transfer_syntax",
        "rows",
        "columns",
        "frames",
        "digest",
        "size",
        "source",
        "added_at",
        "attributes",
    ]

    def copy_stmt(table: str, cols: list[str]) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        )

    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(raw_url) as conn, conn.cursor() as cur:
        # three sequential COPYs (one COPY at a time per connection)
        series_rows: list[tuple[Any, ...]] = []
        instance_plan: list[tuple[str, str, int]] = []
        with cur.copy(copy_stmt("collection_study", study_cols)) as st:
            for n in range(studies):
                uid = f"2.25.{10**20 + n}"
                modality = rng.choice(MODALITIES)
                date = _date(rng)
                description = f"{modality} {rng.choice(WORDS)}"
                pid = f"P{rng.randrange(10**9):09d}"
                attrs = json.dumps(
                    {
                        "0020000D": {"vr": "UI", "Value": [uid]},
                        "00080020": {"vr": "DA", "Value": [date]},
                        "00081030": {"vr": "LO", "Value": [description]},
                        "00100020": {"vr": "LO", "Value": [pid]},
                        "00100010": {"vr": "PN", "Value": [{"Alphabetic": pid}]},
                        "00120062": {"vr": "CS", "Value": ["YES"]},
                    }
                )
                st.write_row(
                    (
                        collection_id,
                        uid,
                        date,
                        "101010",
                        f"A{n}",
                        str(n % 10**6),
                        description,
                        pid,
                        pid,
                        rng.choice("MF"),
                        f"\\{modality}\\",
                        2,
                        10,
                        attrs,
                    )
                )
                if len(sample) < 5000 and rng.random() < 0.05:
                    sample.append(uid)
                for s in range(2):
                    series_uid = f"{uid}.{s + 1}"
                    body = rng.choice(BODY_PARTS)
                    series_rows.append(
                        (
                            collection_id,
                            uid,
                            series_uid,
                            modality,
                            s + 1,
                            f"{body} {rng.choice(WORDS)}",
                            body,
                            date,
                            "101010",
                            5,
                            json.dumps({"0020000E": {"vr": "UI", "Value": [series_uid]}}),
                        )
                    )
                    instance_plan.append((uid, series_uid, 5))
        print(f"studies copied: {studies} in {time.perf_counter() - started:.0f} s", flush=True)
        with cur.copy(copy_stmt("collection_series", series_cols)) as se:
            for row in series_rows:
                se.write_row(row)
        del series_rows
        print(f"series copied in {time.perf_counter() - started:.0f} s", flush=True)
        count = 0
        with cur.copy(copy_stmt("collection_instance", instance_cols)) as ins:
            for study_uid, series_uid, per_series in instance_plan:
                for i in range(per_series):
                    if count >= instances:
                        break
                    sop = f"{series_uid}.{i + 1}"
                    ins.write_row(
                        (
                            collection_id,
                            study_uid,
                            series_uid,
                            sop,
                            "1.2.840.10008.5.1.4.1.1.2",
                            i + 1,
                            "1.2.840.10008.1.2.1",
                            512,
                            512,
                            1,
                            secrets.token_hex(32),
                            524_288,
                            "bench",
                            now,
                            json.dumps({"00080018": {"vr": "UI", "Value": [sop]}}),
                        )
                    )
                    count += 1
        print(f"instances copied: {count} in {time.perf_counter() - started:.0f} s", flush=True)
        conn.commit()
        cur.execute("ANALYZE collection_study")
        cur.execute("ANALYZE collection_series")
        cur.execute("ANALYZE collection_instance")
        conn.commit()
    return {
        "studies": studies,
        "series": 2 * studies,
        "instances": count,
        "load_seconds": round(time.perf_counter() - started, 1),
        "sample": sample,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def qido_queries(rng: random.Random, sample: list[str]) -> tuple[str, str, dict[str, Any]]:
    """One query of the research mix: (level, path, params)."""
    year = rng.randrange(2015, 2026)
    month = rng.randrange(1, 13)
    modality = rng.choice(MODALITIES)
    kind = rng.randrange(8)
    if kind == 0:
        return (
            "study",
            "/studies",
            {"ModalitiesInStudy": modality, "StudyDate": f"{year}0101-{year}1231", "limit": 50},
        )
    if kind == 1:
        return (
            "study",
            "/studies",
            {"StudyDate": f"{year}{month:02d}01-{year}{month:02d}28", "limit": 50},
        )
    if kind == 2:
        return "study", "/studies", {"StudyDescription": f"*{rng.choice(WORDS)}*", "limit": 50}
    if kind == 3:
        return (
            "study",
            "/studies",
            {"ModalitiesInStudy": modality, "limit": 50, "offset": 50 * rng.randrange(10)},
        )
    if kind == 4:
        return (
            "series",
            "/series",
            {"Modality": modality, "BodyPartExamined": rng.choice(BODY_PARTS), "limit": 50},
        )
    if kind == 5:
        return (
            "series",
            "/series",
            {
                "Modality": modality,
                "SeriesDate": f"{year}{month:02d}01-{year}{month:02d}28",
                "limit": 50,
            },
        )
    if kind == 6:
        return "series", f"/studies/{rng.choice(sample)}/series", {}
    return (
        "series",
        "/series",
        {"BodyPartExamined": rng.choice(BODY_PARTS), "limit": 50, "offset": 50 * rng.randrange(10)},
    )


def run_qido(
    base: str, context: object, token: str, sample: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"study": [], "series": []}
    errors: dict[str, int] = {"study": 0, "series": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/dicom+json"}
        with httpx.Client(base_url=base, verify=context, timeout=60) as client:  # type: ignore[arg-type]
            while time.monotonic() < stop_at:
                level, path, params = qido_queries(rng, sample)
                t0 = time.perf_counter()
                response = client.get(path, params=params, headers=headers)
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if response.status_code in (200, 204):
                        latencies[level].append(elapsed)
                    else:
                        errors[level] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        level: {
            "requests": len(v),
            "errors": errors[level],
            "p50_ms": round(_percentile(v, 0.5), 1),
            "p99_ms": round(_percentile(v, 0.99), 1),
            "per_s": round(len(v) / seconds, 1),
        }
        for level, v in latencies.items()
    }


def _indexer(db_url: str, data_dir: str, files: list[bytes], seconds: float, out: Any) -> None:
    """A separate process: add_instance (verify, blob, index) as fast as it goes."""
    from sqlmodel import Session, select

    from hub.db import make_engine

    engine = make_engine(db_url)
    store = InstanceFiles(Path(data_dir) / "collections")
    done = 0
    started = time.monotonic()
    stop_at = started + seconds
    with Session(engine) as session:
        row = session.exec(select(Collection).where(Collection.name == NAME)).one()
        while time.monotonic() < stop_at and done < len(files):
            add_instance(session, store, row, files[done], Source("bench"))
            done += 1
    out.put((done, time.monotonic() - started))


def _batch_indexer(
    db_url: str,
    data_dir: str,
    files: list[bytes],
    seconds: float,
    out: Any,
    batch: int,
    profile: str = "",
    processes: int = 0,
) -> None:
    """A separate process: the worker's batched path (`hub.collections.batch.add_batch`:
    verify, files written in a thread pool with one folder fsync per batch, one transaction
    per batch) as fast as it goes; counts only committed batches."""
    import cProfile
    import pstats
    from concurrent.futures import ThreadPoolExecutor

    from sqlmodel import Session, select

    from hub.collections.batch import add_batch
    from hub.collections.bundles import WRITER_THREADS
    from hub.db import make_engine

    engine = make_engine(db_url)
    store = InstanceFiles(Path(data_dir) / "collections")
    done = 0
    started = time.monotonic()
    stop_at = started + seconds
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    with Session(engine) as session, ThreadPoolExecutor(WRITER_THREADS) as pool:
        row = session.exec(select(Collection).where(Collection.name == NAME)).one()
        if processes:  # as the worker with collection_ingest_processes: batches in a pool
            from collections import deque

            from hub.collections.bundles import MAX_IN_FLIGHT
            from hub.collections.processes import batch_in_process, start_pool

            procs = start_pool(db_url, store.root, processes)
            procs.submit(time.sleep, 0).result()  # the pool's interpreters are up
            started = time.monotonic()
            stop_at = started + seconds
            flying: Any = deque()
            while time.monotonic() < stop_at and done < len(files):
                part = files[done : done + batch]
                flying.append(procs.submit(batch_in_process, row.id or 0, part, Source("b")))
                done += len(part)
                while len(flying) >= MAX_IN_FLIGHT:
                    flying.popleft().result()
            for future in flying:
                future.result()
            procs.shutdown()
        while time.monotonic() < stop_at and done < len(files):
            part = files[done : done + batch]
            add_batch(session, store, row, part, Source("bench"), pool)
            done += len(part)
    if profiler:
        profiler.disable()
        with open(profile, "w") as fh:
            pstats.Stats(profiler, stream=fh).sort_stats("tottime").print_stats(25)
    out.put((done, time.monotonic() - started))


def _run_indexer(
    kind: str,
    url: str,
    data_dir: Path,
    files: list[bytes],
    seconds: float,
    batch: int,
    profile: str = "",
) -> float:
    """Instances/s of one indexer process (committed instances over its own elapsed time)."""
    queue: Any = multiprocessing.Queue()
    if kind == "old":
        args: tuple[Any, ...] = (url, str(data_dir), files, seconds, queue)
        proc = multiprocessing.Process(target=_indexer, args=args)
    else:
        processes = int(kind.removeprefix("new").removeprefix("-") or 0)
        args = (url, str(data_dir), files, seconds, queue, batch, profile, processes)
        proc = multiprocessing.Process(target=_batch_indexer, args=args)
    proc.start()
    done, elapsed = queue.get()
    proc.join()
    return float(done / elapsed)


def decrypt_rate(files: list[bytes]) -> float:
    """Instances/s through the worker's first step: open a bundle sealed to a collection key
    (HPKE unwrap, AES-GCM chunks, payload framing), in this process."""
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from wire.envelope import RecipientKey, open_data_key, open_stream, seal
    from wire.manifest import ManifestDraft, new_bundle_id
    from wire.payload import PiecesReader, read_payload, write_payload

    key = X25519PrivateKey.generate()
    payload = io.BytesIO()
    write_payload(payload, [(f"{i}.dcm", io.BytesIO(d), len(d)) for i, d in enumerate(files)])
    chunks: dict[int, bytes] = {}

    class Sink:
        def write_chunk(self, index: int, data: bytes) -> None:
            chunks[index] = data

    draft = ManifestDraft(
        bundle_id=new_bundle_id(), sender_org="org-r", sender_site="s", recipients=["org-r"],
        mode="deidentified", instance_count=len(files), modalities=["CT"],
        created_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    payload.seek(0)
    header = seal(
        payload, Sink(), draft=draft, recipients=[RecipientKey("k1", key.public_key())],
        signing_key=generate_private_key(SECP256R1()), signer_key_id="1",
    )  # fmt: skip
    started = time.perf_counter()
    data_key = open_data_key(header, key_id="k1", private_key=key)
    pieces = (chunks[i] for i in range(header.manifest.chunk_count))
    count = sum(1 for _ in read_payload(PiecesReader(open_stream(header, data_key, pieces))))  # type: ignore[arg-type]
    return count / (time.perf_counter() - started)


def fresh_instances(count: int) -> list[bytes]:
    """`count` de-identified CT instances (64x64) with distinct UIDs, from one template."""
    template = dcmread(io.BytesIO(deidentified_study(1).files[0]))
    made = []
    study, series = generate_uid(), generate_uid()
    for n in range(count):
        if n % 50 == 0:
            study, series = generate_uid(), generate_uid()
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = n % 50 + 1
        made.append(part10(template))
    return made


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def static_server(root: Path, settings: HubSettings) -> tuple[http.server.ThreadingHTTPServer, int]:
    port = free_port()
    handler = lambda *a, **kw: _Quiet(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    context = server_ssl_context(settings.server_cert_file, settings.server_key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def fetch_rate(
    urls: list[str], headers: dict[str, str], context: object, clients: int, seconds: float
) -> tuple[float, float]:
    """Instances/s and MB/s fetching random URLs with `clients` threads."""
    counts = [0] * clients
    sizes = [0] * clients
    stop_at = time.monotonic() + seconds

    def worker(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(verify=context, timeout=60) as client:  # type: ignore[arg-type]
            while time.monotonic() < stop_at:
                response = client.get(rng.choice(urls), headers=headers)
                assert response.status_code == 200, response.status_code
                counts[k] += 1
                sizes[k] += len(response.content)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds, sum(sizes) / seconds / 1e6


def ingest_phases(
    args: argparse.Namespace,
    url: str,
    settings: HubSettings,
    base: str,
    context: object,
    token: str,
    sample: list[str],
    loaded: dict[str, Any],
) -> dict[str, Any]:
    """Old path and batched path, alone then while QIDO runs, in alternation (same run)."""
    seconds = args.seconds
    data_dir = settings.data_dir
    rates: dict[str, float] = {}
    started = time.perf_counter()
    fresh = fresh_instances(int(seconds * 700))
    print(f"made {len(fresh)} instances in {time.perf_counter() - started:.0f} s", flush=True)
    rates["decrypt_alone"] = round(decrypt_rate(fresh[:2000]), 1)
    offset = 0

    def take(n: int) -> list[bytes]:
        nonlocal offset
        if offset + n > len(fresh):  # new UIDs for each phase: never duplicates
            fresh.extend(fresh_instances(offset + n - len(fresh)))
        part = fresh[offset : offset + n]
        offset += n
        return part

    kinds = ["old", "new"] + ([f"new-{args.processes}"] if args.processes else [])
    for kind in kinds:
        want = int(seconds * (60 if kind == "old" else 700))
        profile = str(args.profile) if args.profile and kind == "new" else ""
        rate = _run_indexer(kind, url, data_dir, take(want), seconds, args.batch, profile)
        rates[f"{kind}_alone"] = round(rate, 1)
        print(f"{kind} path alone: {rates[f'{kind}_alone']}/s", flush=True)
    busy: dict[str, Any] = {}
    for kind in kinds:
        want = int(seconds * (60 if kind == "old" else 700))
        files = take(want)
        result: dict[str, float] = {}
        indexer = threading.Thread(
            target=lambda k=kind, f=files, r=result: r.update(
                n=_run_indexer(k, url, data_dir, f, seconds, args.batch)
            )
        )
        indexer.start()
        busy[kind] = run_qido(base, context, token, sample, args.clients, seconds)
        indexer.join()
        rates[f"{kind}_during_queries"] = round(result["n"], 1)
        print(f"{kind} path while QIDO: {rates[f'{kind}_during_queries']}/s; {busy[kind]}")
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.python_version()}",
        "load_average": os.getloadavg(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loaded": loaded,
        "indexing_per_s": rates,
        "ratio_alone": round(rates["new_alone"] / max(rates["old_alone"], 0.1), 1),
        "ratio_during_queries": round(
            rates["new_during_queries"] / max(rates["old_during_queries"], 0.1), 1
        ),
        "qido_while_indexing": busy,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def _tree_indexer(
    tree: Path, url: str, data_dir: Path, files: list[bytes], seconds: float, batch: int
) -> tuple[float, float]:
    """(instances/s, CPU ms per instance) of `bench/ingest_indexer.py` run with `tree`'s hub
    package."""
    with tempfile.NamedTemporaryFile(suffix=".dcms") as fh:
        for data in files:  # each file: its length (4 bytes, big-endian), then its bytes
            fh.write(len(data).to_bytes(4, "big") + data)
        fh.flush()
        out = subprocess.run(
            [sys.executable, str(REPO / "bench/ingest_indexer.py"), url, str(data_dir),
             fh.name, str(seconds), str(batch)],
            env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree,
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    done = max(int(result["done"]), 1)
    return float(result["done"] / result["elapsed"]), float(result["cpu"] * 1000 / done)


def ingest_against_baseline(
    args: argparse.Namespace,
    url: str,
    settings: HubSettings,
    base: str,
    context: object,
    token: str,
    sample: list[str],
    loaded: dict[str, Any],
) -> dict[str, Any]:
    """`--ingest-only --baseline TREE`: the batched path of both trees, alone then while
    QIDO runs (this tree's hub), alternating the order each round."""
    trees = {"baseline": args.baseline.resolve(), "this": REPO}
    want = int(args.seconds * 600)
    started = time.perf_counter()
    fresh = fresh_instances(want * 4 * args.rounds)
    print(f"made {len(fresh)} instances in {time.perf_counter() - started:.0f} s", flush=True)
    rates: dict[str, dict[str, list[float]]] = {
        label: {"alone": [], "during_queries": []} for label in trees
    }
    cpu_ms: dict[str, dict[str, list[float]]] = {
        label: {"alone": [], "during_queries": []} for label in trees
    }
    busy: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    offset = 0
    for phase in ("alone", "during_queries"):
        for n in range(args.rounds):
            for label in ["baseline", "this"] if n % 2 == 0 else ["this", "baseline"]:
                files, offset = fresh[offset : offset + want], offset + want
                result: dict[str, tuple[float, float]] = {}

                def index(
                    tree: Path = trees[label],
                    part: list[bytes] = files,
                    out: dict[str, tuple[float, float]] = result,
                ) -> None:
                    out["rate"] = _tree_indexer(
                        tree, url, settings.data_dir, part, args.seconds, args.batch
                    )

                if phase == "alone":
                    index()
                else:
                    indexer = threading.Thread(target=index)
                    indexer.start()
                    time.sleep(1.5)  # the indexer's interpreter is up
                    busy[label].append(
                        run_qido(base, context, token, sample, args.clients, args.seconds - 2)
                    )
                    indexer.join()
                rate, cpu = result["rate"]
                rates[label][phase].append(round(rate, 1))
                cpu_ms[label][phase].append(round(cpu, 2))
                print(f"{label} {phase} round {n + 1}: {rate:.1f}/s, {cpu:.2f} ms CPU", flush=True)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.python_version()}",
        "load_average": os.getloadavg(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loaded": loaded,
        "trees": {k: str(v) for k, v in trees.items()},
        "indexing_per_s": rates,
        "indexer_cpu_ms_per_instance": cpu_ms,
        "cpu_ratios_this_to_baseline": {
            phase: [
                round(t / max(b, 0.01), 2)
                for t, b in zip(cpu_ms["this"][phase], cpu_ms["baseline"][phase], strict=True)
            ]
            for phase in ("alone", "during_queries")
        },
        "ratios_this_to_baseline": {
            phase: [
                round(t / max(b, 0.1), 2)
                for t, b in zip(rates["this"][phase], rates["baseline"][phase], strict=True)
            ]
            for phase in ("alone", "during_queries")
        },
        "qido_while_indexing": busy,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def compare_trees(
    args: argparse.Namespace,
    settings: HubSettings,
    url: str,
    token: str,
    sample: list[str],
    wado_files: list[Any],
    loaded: dict[str, Any],
) -> dict[str, Any]:
    """`--baseline`: both trees' hubs in alternation on the same data (dicomweb_compare)."""
    from bench.dicomweb_compare import compare

    server, port = static_server(settings.data_dir / "collections", settings)
    base = f"https://127.0.0.1:{settings.public_port}/dicomweb/collections/{NAME}"
    hub_urls, static_urls = [], []
    for made in wado_files:
        for sop, data in zip(made.sop_uids, made.files, strict=True):
            hub_urls.append(
                f"{base}/studies/{made.study_uid}/series/{made.series_uid}/instances/{sop}"
            )
            digest = hashlib.sha256(data).hexdigest()
            static_urls.append(f"https://127.0.0.1:{port}/{digest[:2]}/{digest}.dcm")
    try:
        result = compare(
            args.baseline, settings, url, token, sample, (hub_urls, static_urls),
            args.clients, args.seconds, args.rounds,
            {"this": _env_pairs(args.hub_env), "baseline": _env_pairs(args.baseline_env)},
        )  # fmt: skip
    finally:
        server.shutdown()
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.python_version()}",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loaded": loaded,
        "instance_bytes": len(wado_files[0].files[0]),
        **result,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--wado-instances", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20k instances, 5 s")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--ingest-only", action="store_true",
        help="only indexing: the old per-instance path and the worker's batched path, alone "
        "and while QIDO queries run (no WADO)",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=500, help="instances per batch (new path)")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile of the batch path")
    parser.add_argument(
        "--processes", type=int, default=0,
        help="also the batched path in N processes (collection_ingest_processes)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, default=None,
        help="another source tree (e.g. `git archive main`): run its hub and this tree's in "
        "alternation on the same data and compare per-request cost (bench/dicomweb_compare.py)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: rounds")
    parser.add_argument(
        "--hub-env", action="append", default=[], metavar="KEY=VALUE",
        help="environment of this tree's hub (repeatable), e.g. HEXCHANGE_HUB_WORKERS=2",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-env", action="append", default=[], metavar="KEY=VALUE",
        help="with --baseline: environment of the baseline's hub (repeatable); --baseline . "
        "with different --hub-env/--baseline-env compares two settings of this tree",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.seconds, args.wado_instances = 20_000, 5.0, 20

    name = f"hexchange_dicomweb_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(**PG, dbname="postgres", autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    raw_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="hexchange-dicomweb-bench-"))
    proc = None
    report: dict[str, Any] = {}
    try:
        settings = HubSettings(
            data_dir=workdir / "hub",
            database_url=url,
            node_port=free_port(),
            public_port=free_port(),
        )
        init_hub(settings)
        services = build_services(settings)
        run = secrets.token_hex(3)
        with services.session() as session:
            cli = Principal.cli()
            sites.create_org(session, cli, "org-r", "Research")
            collections.create(
                session,
                cli,
                FileKeyProvider(key_file(settings)),
                services.signing_key,
                name=NAME,
                org="org-r",
                profile=["retain-long-full-dates"],
            )
            collection = session.exec(select(Collection)).one()
            collection_id = collection.id or 0
            view = users.create_user(
                session,
                cli,
                services.passwords,
                username=f"reader-{run}",
                role="researcher",
                org="org-r",
                password=PASSWORD,
            )
            collections.grant(session, cli, NAME, view.username)
            who = Principal(
                kind="user", name=view.username, role=Role.RESEARCHER, org="org-r", user_id=view.id
            )
            token, _ = users.create_api_token(session, who, name="bench", ttl_days=1)
            # WADO files: real 512x512 instances through the real path
            wado_files = []
            for _ in range(max(1, args.wado_instances // 10)):
                made = deidentified_study(10, size=512)
                wado_files.append(made)
                files = InstanceFiles(settings.data_dir / "collections")
                for data in made.files:
                    add_instance(session, files, collection, data, Source("bench"))
        services.close()
        loaded = load(raw_url, collection_id, args.instances)
        sample = loaded.pop("sample")
        print(f"loaded: {loaded}", flush=True)

        if args.baseline and not args.ingest_only:
            report = compare_trees(args, settings, url, token, sample, wado_files, loaded)
            return 0

        env = {**os.environ, "HEXCHANGE_HUB_DATABASE_URL": url, **_env_pairs(args.hub_env)}
        proc = subprocess.Popen(
            [
                str(REPO / ".venv/bin/hexchange-hub"),
                "serve",
                "--data-dir",
                str(settings.data_dir),
                "--node-port",
                str(settings.node_port),
                "--public-port",
                str(settings.public_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        public = f"https://127.0.0.1:{settings.public_port}"
        base = f"{public}/dicomweb/collections/{NAME}"
        context = client_ssl_context(settings.ca_cert_file)
        wait_for_hub(public, context)

        run_qido(base, context, token, sample, args.clients, 3.0)  # warm up
        if args.ingest_only and args.baseline:
            report = ingest_against_baseline(
                args, url, settings, base, context, token, sample, loaded
            )
            return 0
        if args.ingest_only:
            report = ingest_phases(args, url, settings, base, context, token, sample, loaded)
            return 0
        qido = run_qido(base, context, token, sample, args.clients, args.seconds)
        print(f"QIDO-RS alone: {qido}", flush=True)

        # the hub's own ingest path (`add_batch`, as its collection-ingest worker runs it),
        # in its own process; far more instances than it indexes in the time
        fresh = fresh_instances(int(args.seconds * 700))
        queue: Any = multiprocessing.Queue()
        indexer = multiprocessing.Process(
            target=_batch_indexer,
            args=(url, str(settings.data_dir), fresh, args.seconds, queue, args.batch),
            kwargs={"processes": args.processes},
        )
        indexer.start()
        qido_busy = run_qido(base, context, token, sample, args.clients, args.seconds)
        indexer.join()
        indexed = queue.get()[0]
        print(f"QIDO-RS while indexing: {qido_busy}; indexed {indexed}", flush=True)

        # WADO-RS vs static files (the same bytes), alternating rounds
        server, port = static_server(settings.data_dir / "collections", settings)
        hub_urls, static_urls = [], []
        for made in wado_files:
            for sop, data in zip(made.sop_uids, made.files, strict=True):
                hub_urls.append(
                    f"{base}/studies/{made.study_uid}/series/{made.series_uid}/instances/{sop}"
                )
                digest = hashlib.sha256(data).hexdigest()
                static_urls.append(f"https://127.0.0.1:{port}/{digest[:2]}/{digest}.dcm")
        auth = {"Authorization": f"Bearer {token}"}
        rounds = []
        for _ in range(2):
            static_rate = fetch_rate(static_urls, {}, context, 4, args.seconds / 2)
            hub_rate = fetch_rate(hub_urls, auth, context, 4, args.seconds / 2)
            rounds.append((static_rate, hub_rate))
        server.shutdown()
        static_best = max(r[0][0] for r in rounds)
        hub_best = max(r[1][0] for r in rounds)
        size = len(wado_files[0].files[0])
        report = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {os.cpu_count()} cores {platform.python_version()}",
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "loaded": loaded,
            "qido": qido,
            "qido_while_indexing": qido_busy,
            "indexing_per_s": round(indexed / args.seconds, 1),
            "wado": {
                "instance_bytes": size,
                "static_per_s": round(static_best, 1),
                "hub_per_s": round(hub_best, 1),
                "ratio": round(hub_best / static_best, 3),
                "rounds": [[round(s[0], 1), round(h[0], 1)] for s, h in rounds],
            },
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()
    print(json.dumps(report, indent=2))
    if args.json and report:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
