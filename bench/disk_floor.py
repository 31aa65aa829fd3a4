"""The floor of this disk for the agent's durability promise: what writing N received
instances (~0.5 MB files) durably costs, without DICOM, hashing or parsing.

    nice -n 10 .venv/bin/python bench/disk_floor.py [--files 240] [--kib 512]
                                [--threads 1 2 4 8] [--rounds 2] [--background 0]
                                [--dir DIR] [--json FILE]

Each of `--threads` threads stands for one association and writes its share of `--files`
files one after the other, each as the spool does in the mode given:

  page-cache      write + close, no flush (what dcmtk storescp does)
  fdatasync       write, fdatasync(file)
  fsync           write, fsync(file)
  fsync+dir       write to a staged name, fsync(file), rename, fsync(folder) (the spool today)
  fdatasync+dir   the same with fdatasync(file)
  fsync+dir+row   fsync+dir, then one row committed to a per-thread SQLite connection in WAL
                  mode with synchronous=FULL (the spool's whole per-instance promise)
  fsync+dir+row-normal  the same with synchronous=NORMAL (the row's commit is not flushed)

`--background N`: N more threads write 1 MiB chunks with an fsync each during every cell, as
the agent's sealing and the hub's chunk store do while a study arrives (their writes share the
journal commits). Reports MB/s and the per-file latency (median, p90) of each mode and
thread count; the modes alternate within a round so that the machine's load falls on all of
them alike. Run on the disk the agent's data_dir lives on (default: the system temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MODES = (
    "page-cache",
    "fdatasync",
    "fsync",
    "fsync+dir",
    "fdatasync+dir",
    "fsync+dir+row",
    "fsync+dir+row-normal",
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _one(folder: Path, name: str, payload: bytes, mode: str, db: sqlite3.Connection | None) -> None:
    staged = folder / f".{name}.part"
    target = folder / name
    fd = os.open(staged if "dir" in mode else target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if mode.startswith("fdatasync"):
            os.fdatasync(fd)
        elif mode.startswith("fsync"):
            os.fsync(fd)
    finally:
        os.close(fd)
    if "dir" in mode:
        os.replace(staged, target)
        _fsync_dir(folder)
    if db is not None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO rows(name, size) VALUES (?, ?)", (name, len(payload)))
        db.execute("COMMIT")


def _background(work: Path, stop: threading.Event, index: int) -> None:
    """What the agent's pipeline and the hub do meanwhile: 1 MiB chunks written, each fsynced."""
    chunk = os.urandom(1 << 20)
    n = 0
    while not stop.is_set():
        path = work / f"background-{index}-{n % 64}.bin"
        with open(path, "wb") as handle:
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        n += 1


def run_cell(
    root: Path, mode: str, threads: int, files: int, payload: bytes, background: int = 0
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(dir=root, prefix=f"floor-{threads}-"))
    stop = threading.Event()
    noise = [
        threading.Thread(target=_background, args=(work, stop, i), daemon=True)
        for i in range(background)
    ]
    for t in noise:
        t.start()
    db_path = work / "state.db"
    if "row" in mode:
        setup = sqlite3.connect(db_path, isolation_level=None)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE rows(name TEXT PRIMARY KEY, size INTEGER)")
        setup.close()
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            folder = work / f"study{index}"
            folder.mkdir()
            db = None
            if "row" in mode:
                db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                sync = "NORMAL" if mode.endswith("normal") else "FULL"
                db.execute(f"PRAGMA synchronous={sync}")
            mine: list[float] = []
            for n in range(index, files, threads):
                t0 = time.perf_counter()
                _one(folder, f"{n}.dcm", payload, mode, db)
                mine.append(time.perf_counter() - t0)
            if db is not None:
                db.close()
            with lock:
                latencies.extend(mine)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - started
    stop.set()
    for t in noise:
        t.join()
    shutil.rmtree(work)
    if errors:
        raise errors[0]
    latencies.sort()
    return {
        "mode": mode,
        "threads": threads,
        "seconds": seconds,
        "mb_s": files * len(payload) / 1e6 / seconds,
        "files_s": files / seconds,
        "lat_ms_p50": 1000 * statistics.median(latencies),
        "lat_ms_p90": 1000 * latencies[int(0.9 * (len(latencies) - 1))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--kib", type=int, default=512)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--background",
        type=int,
        default=0,
        help="threads writing 1 MiB chunks with an fsync each meanwhile (as the agent's "
        "pipeline and the hub do during a receive)",
    )
    args = parser.parse_args()
    payload = os.urandom(args.kib * 1024)
    cells: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        for threads in args.threads:
            for mode in args.modes:
                cell = run_cell(args.dir, mode, threads, args.files, payload, args.background)
                cell["round"] = rnd
                cell["load"] = Path("/proc/loadavg").read_text().split()[0]
                cells.append(cell)
                print(
                    f"round {rnd} threads {threads} {mode:>22}: {cell['mb_s']:7.1f} MB/s "
                    f"{cell['files_s']:7.1f} files/s  per file p50 {cell['lat_ms_p50']:6.2f} ms "
                    f"p90 {cell['lat_ms_p90']:6.2f} ms  (load {cell['load']})",
                    flush=True,
                )
    print("\nmedian over rounds: MB/s | per-file p50 ms")
    print(
        "| mode | " + " | ".join(f"{t} writer{'s' if t > 1 else ''}" for t in args.threads) + " |"
    )
    print("|---|" + "---:|" * len(args.threads))
    for mode in args.modes:
        row = []
        for threads in args.threads:
            mine = [c for c in cells if c["mode"] == mode and c["threads"] == threads]
            mb = statistics.median(c["mb_s"] for c in mine)
            lat = statistics.median(c["lat_ms_p50"] for c in mine)
            row.append(f"{mb:.0f} MB/s, {lat:.1f} ms")
        print(f"| {mode} | " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(json.dumps(cells, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
