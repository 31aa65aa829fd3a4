"""De-identification benchmark: hexchange vs plain pydicom read+write vs PyPI peers, one run.

    .venv/bin/python bench/deid_bench.py [--corpus bench/corpus] [--scale 1.0] [--workers 2]
                                         [--tools plain,hexchange,dicognito,...] [--results FILE]

Run by hand, never in tests. Generates the corpus (`bench/corpus.py`) when missing. Every tool
runs in a fresh subprocess on the same files with a warm page cache (the corpus is read once
first); outputs go to a temporary folder per tool, all removed after the last tool ran (not
between tools: see SETTLE_SECONDS), and dirty pages are synced between tools, outside the
timings. Timings exclude interpreter start and imports, include
everything else (for hexchange: the process pool, reading, apply, verify and writing).

* plain      - `pydicom.dcmread(f).save_as(out)`, one process (the reference).
* hexchange  - `deidentify.cli.process_batch` (what `hexchange-deid` runs), `--workers`
               processes, Basic profile, verification included.
* hexchange-pydicom - the same with the fast header path off (`fast=False`: pydicom datasets,
               `engine.apply`, `verify.verify`), for comparison.
* deid       - pydicom-deid `replace_identifiers` with its default recipe, one process.
* dicognito  - `Anonymizer().anonymize(ds)` then `save_as`, one process.
* dicom-anonymizer - `dicomanonymizer.anonymize(in, out, {}, True)` per file, one process.

Peers are optional: a peer that is not installed or fails is recorded as such. A simple
correctness probe counts outputs whose header still holds the patient's family name, patient ID
or accession number (bytes before Pixel Data).

Writes (or replaces) the "deidentify" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOOLS = ("plain", "hexchange", "hexchange-pydicom", "deid", "dicognito", "dicom-anonymizer")
SECRET = b"bench-secret-0123456789abcdef-0123456789abcdef"
SECTION = "## deidentify"
# ext4 without a journal (as on the benchmark VM) skips inodes freed in the last 60 s when it
# allocates new ones, scanning past each: right after thousands of files were deleted, every
# file creation costs up to ~1 ms more. So no output is deleted until every tool has run, and
# the run starts with a pause after syncing (the deletions of an earlier run age out).
SETTLE_SECONDS = 65.0


def _files(corpus: Path) -> list[Path]:
    return sorted(corpus.glob("*.dcm"))


# --- one tool, run inside its own subprocess --------------------------------------------------


def _run_plain(files: list[Path], out: Path, workers: int) -> dict[str, Any]:
    from pydicom import dcmread

    start = time.perf_counter()
    for f in files:
        dcmread(f).save_as(out / f.name)
    return {"seconds": time.perf_counter() - start, "processes": 1}


def _run_hexchange(files: list[Path], out: Path, workers: int, fast: bool = True) -> dict[str, Any]:
    from deidentify.cli import process_batch

    jobs = [(f, f.name) for f in files]
    start = time.perf_counter()
    outcomes = process_batch(
        jobs, out, out.parent / "quarantine", [], SECRET, workers=workers, fast=fast
    )
    seconds = time.perf_counter() - start
    quarantined = [o for o in outcomes if o.quarantined]
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": seconds,
        "processes": workers,
        "quarantined": len(quarantined),
        "quarantine_reasons": sorted({o.reason for o in quarantined}),
        "worker_peak_rss_mb": children / 1024,
    }


def _run_deid(files: list[Path], out: Path, workers: int) -> dict[str, Any]:
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    recipe = DeidRecipe()
    start = time.perf_counter()
    replace_identifiers(
        dicom_files=[str(f) for f in files],
        deid=recipe,
        save=True,
        output_folder=str(out),
        overwrite=True,
    )
    return {"seconds": time.perf_counter() - start, "processes": 1}


def _run_dicognito(files: list[Path], out: Path, workers: int) -> dict[str, Any]:
    from dicognito.anonymizer import Anonymizer
    from pydicom import dcmread

    anonymizer = Anonymizer()
    start = time.perf_counter()
    for f in files:
        ds = dcmread(f)
        anonymizer.anonymize(ds)
        ds.save_as(out / f.name)
    return {"seconds": time.perf_counter() - start, "processes": 1}


def _run_dicom_anonymizer(files: list[Path], out: Path, workers: int) -> dict[str, Any]:
    from dicomanonymizer import anonymize

    start = time.perf_counter()
    for f in files:
        anonymize(str(f), str(out / f.name), {}, True)
    return {"seconds": time.perf_counter() - start, "processes": 1}


def _run_hexchange_pydicom(files: list[Path], out: Path, workers: int) -> dict[str, Any]:
    return _run_hexchange(files, out, workers, fast=False)


RUNNERS: dict[str, Callable[[list[Path], Path, int], dict[str, Any]]] = {
    "plain": _run_plain,
    "hexchange": _run_hexchange,
    "hexchange-pydicom": _run_hexchange_pydicom,
    "deid": _run_deid,
    "dicognito": _run_dicognito,
    "dicom-anonymizer": _run_dicom_anonymizer,
}


def _leaks(out: Path) -> int:
    """Outputs whose header (bytes before Pixel Data) holds a fake patient's name or IDs."""
    needles = [b"Bench", b"MRN-482133", b"ACC"]
    leaked = 0
    for path in out.rglob("*"):
        if not path.is_file() or path.suffix in (".json",):
            continue
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
        head = head.split(b"\xe0\x7f\x10\x00", 1)[0]
        if any(n in head for n in needles):
            leaked += 1
    return leaked


def run_one(tool: str, corpus: Path, workers: int, tmp: Path) -> dict[str, Any]:
    """Run `tool` into `tmp`/out (an empty folder the driver removes after every tool ran)."""
    files = _files(corpus)
    out = tmp / "out"
    out.mkdir()
    result = RUNNERS[tool](files, out, workers)
    written = [p for p in out.rglob("*") if p.is_file()]
    result["written"] = len(written)
    result["leaks"] = _leaks(out)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# --- the driver --------------------------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def _machine() -> dict[str, str]:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "uname": " ".join(platform.uname()),
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "pydicom": _version("pydicom"),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _warm(files: list[Path]) -> None:
    for f in files:
        with f.open("rb") as fh:
            while fh.read(1 << 22):
                pass


def _subprocess(tool: str, corpus: Path, workers: int, tmp: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--run-one", tool, "--corpus", str(corpus)]
    cmd += ["--workers", str(workers), "--out", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _table(results: dict[str, dict[str, Any]], count: int, size_mb: float) -> list[str]:
    plain = results.get("plain", {}).get("seconds")
    rows = [
        "| tool | version | processes | seconds | instances/s | MB/s | x plain time | "
        "written | header leaks | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    dists = {
        "plain": "pydicom",
        "hexchange": "hexchange",
        "hexchange-pydicom": "hexchange",
        "deid": "deid",
        "dicognito": "dicognito",
        "dicom-anonymizer": "dicom-anonymizer",
    }
    for tool, r in results.items():
        version = _version(dists[tool])
        if "error" in r:
            rows.append(f"| {tool} | {version or '-'} | - | - | - | - | - | - | - | {r['error']} |")
            continue
        secs = r["seconds"]
        ratio = f"{secs / plain:.2f}" if plain else "-"
        rss = r.get("worker_peak_rss_mb", r.get("rss_mb", 0))
        rss_text = f"{rss:.0f}" + (" (per worker)" if "worker_peak_rss_mb" in r else "")
        rows.append(
            f"| {tool} | {version} | {r['processes']} | {secs:.2f} | {count / secs:.0f} | "
            f"{size_mb / secs:.0f} | {ratio} | {r['written']} | {r['leaks']} | {rss_text} |"
        )
    return rows


def _write_results(path: Path, section: list[str]) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if SECTION in text:
        before, rest = text.split(SECTION, 1)
        after = rest.split("\n## ", 1)
        tail = "\n## " + after[1] if len(after) > 1 else ""
        text = before.rstrip("\n") + "\n\n" + "\n".join(section) + "\n" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "bench" / "corpus")
    parser.add_argument("--scale", type=float, default=1.0, help="corpus size when generated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        help="seconds to wait after syncing, before the first tool (see the module docstring)",
    )
    parser.add_argument("--run-one", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.corpus, args.workers, args.out)))
        return 0

    files = _files(args.corpus)
    if not files:
        from bench.corpus import generate

        generate(args.corpus, args.scale)
        files = _files(args.corpus)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"corpus: {len(files)} instances, {size_mb:.0f} MB ({args.corpus})", flush=True)
    _warm(files)

    results: dict[str, dict[str, Any]] = {}
    work = Path(tempfile.mkdtemp(prefix="deid-bench-"))
    try:
        os.sync()
        time.sleep(args.settle)
        for tool in [t.strip() for t in args.tools.split(",") if t.strip()]:
            os.sync()
            tmp = work / tool
            tmp.mkdir()
            results[tool] = _subprocess(tool, args.corpus, args.workers, tmp)
            print(tool, json.dumps(results[tool]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    machine = _machine()
    kinds: dict[str, int] = {}
    for f in files:
        kinds[f.name.split("-")[0]] = kinds.get(f.name.split("-")[0], 0) + 1
    section = [
        SECTION,
        "",
        f"Run: `.venv/bin/python bench/deid_bench.py --workers {args.workers}` "
        f"({machine['date']}).",
        "",
        f"Machine: `{machine['uname']}`; nproc {machine['nproc']}; memory {machine['memory']}; "
        f"CPU {machine['cpu'] or 'unknown'}; Python {machine['python']}, "
        f"pydicom {machine['pydicom']}.",
        "",
        f"Corpus (`bench/corpus.py`): {len(files)} instances, {size_mb:.0f} MB - "
        + ", ".join(f"{k.upper()} {v}" for k, v in sorted(kinds.items()))
        + " (CT 512x512 16-bit, MR 256x256 16-bit, US multi-frame RGB 640x480x8, "
        "CR 2000x2500 16-bit); warm page cache.",
        "",
        *_table(results, len(files), size_mb),
        "",
        "x plain time: wall time relative to the plain pydicom read+write of the same files "
        "(lower is faster; the target for hexchange is <= 0.45). Header leaks: outputs whose "
        "header still holds the fake patient's family name, patient ID or accession number. "
        "hexchange verifies every output (quarantine on failure) and streams Pixel Data file "
        "to file; its RSS is the peak of the largest pool worker. hexchange takes the fast "
        "header path (`deidentify.fastpath`: raw header bytes parsed once, kept elements "
        "written back as read, verification on the output header bytes, Pixel Data copied "
        "with copy_file_range) and falls back to the pydicom path (hexchange-pydicom) for "
        "anything it does not handle; both write the same bytes. Outputs are kept until every "
        "tool has run and the run starts "
        f"{args.settle:.0f} s after a sync: on this VM's ext4 (no journal) creating a file "
        "right after thousands were deleted costs up to ~1 ms more, which otherwise penalises "
        "whichever tool runs after another one's outputs were removed.",
    ]
    for tool, r in results.items():
        if r.get("quarantined"):
            section.append(f"\n{tool}: {r['quarantined']} quarantined ({r['quarantine_reasons']}).")
    _write_results(args.results, section)
    print("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
