"""Where the agent's receive time goes: the spool's work per instance, without the network.

    .venv/bin/python bench/spool_bench.py [--instances 400] [--kib 512] [--threads 1 2 4]
                                          [--profile] [--results FILE] [--no-results]

Each of `--threads` threads stands for one association: it writes a received instance into
the spool's `.incoming` folder (as pynetdicom's chunked receive does) and calls
`Spool.store_file`, which answers only when the instance is durable (header parse, sha256,
file fsync + rename, folder fsync, SQLite commit). Reports instances per second and MB/s per
thread count in one run; `--profile` adds a cProfile of the 1-thread run (cumulative seconds
per step). Run by hand on the disk the agent's data_dir lives on (the system temp folder
unless TMPDIR says otherwise).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from node_agent.spool import Spool  # noqa: E402
from node_agent.state import AgentState  # noqa: E402
from node_agent.synthetic import write_synthetic_study  # noqa: E402


def _instances(folder: Path, count: int, kib: int) -> list[bytes]:
    side = max(8, int((kib * 1024 / 2) ** 0.5))
    made = write_synthetic_study(folder, instances=count, rows=side, columns=side)
    return [p.read_bytes() for p in made.files]


def _run(work: Path, data: list[bytes], threads: int) -> tuple[float, int | None]:
    """Seconds to spool `data` from `threads` threads, and the database commits it took."""
    state = AgentState(work / "state.db")
    spool = Spool(work / "spool", state)
    incoming = work / "spool" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    shares = [data[i::threads] for i in range(threads)]

    def receive(share: list[bytes]) -> None:
        for encoded in share:
            fd, name = tempfile.mkstemp(dir=incoming, suffix=".dcm")
            with os.fdopen(fd, "wb") as handle:
                handle.write(encoded)
            spool.store_file(Path(name))

    started = time.perf_counter()
    if threads == 1:  # on this thread, so that --profile sees it
        receive(shares[0])
        return time.perf_counter() - started, _batches(spool)
    workers = [threading.Thread(target=receive, args=(s,)) for s in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, _batches(spool)


def _batches(spool: Spool) -> int | None:
    group = getattr(spool, "_commits", None)  # None: a spool without group commit
    return getattr(group, "batches", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--kib", type=int, default=512, help="size of each instance")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hx-spool-bench-"))
    lines: list[str] = []
    try:
        data = _instances(root / "source", args.instances, args.kib)
        total_mb = sum(len(d) for d in data) / 1e6
        for threads in args.threads:
            seconds, batches = _run(root / f"t{threads}", data, threads)
            commits = f", {batches} commits" if batches is not None else ""
            lines.append(
                f"- {threads} thread(s): {len(data)} instances, {total_mb:.0f} MB in "
                f"{seconds:.2f} s = {len(data) / seconds:.0f} instances/s, "
                f"{total_mb / seconds:.0f} MB/s{commits}"
            )
            print(lines[-1])
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            _run(root / "profiled", data, 1)  # the numbers: cProfile's own overhead included
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
            print(out.getvalue())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_results:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = (
            f"\n### spool receive path ({when}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"`bench/spool_bench.py --instances {args.instances} --kib {args.kib}`)\n\n"
        )
        with args.results.open("a", encoding="utf-8") as handle:
            handle.write(head + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
