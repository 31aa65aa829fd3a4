"""Agent memory, end to end, for one large multi-frame instance shared de-identified (issue 15:
"agent RSS < 200 MB throughout, including a single 2 GB multi-frame instance sent
de-identified with pixel scrubbing").

`bench/multiframe_bench.py` measures the de-identification step alone, in a child process.
This bench measures the running agent as a whole, with real processes on loopback:

1. One multi-frame instance of `--gib` (Enhanced MR, 1024 x 1024 8-bit, identifying text burned
   into every 50th frame; `multiframe_bench.make_instance`, written frame by frame).
2. A hub, archive B (org-b) and clinic A (org-a) whose sharing rule sends to org-b
   **de-identified** (the default pixel policy: every frame screened, OCR on detected lines,
   text blanked) start via `tests/federation.py`.
3. dcmtk `storescu` sends the instance to A's SCP; then the bench waits until the hub's index
   shows A's bundle complete (received, de-identified with the pixel scrub, sealed, uploaded).
4. VmRSS of agent A and of every process it started (tesseract, the learned text detector's
   worker) is sampled every 0.2 s, with the kernel's high-water mark (VmHWM) of A and of
   each child; B's copy is checked for the burned-in name's
   absence from the header (the pixel check is the scrubber's own tests').

    .venv/bin/python bench/agent_multiframe_bench.py [--gib 2] [--learned off] [--write]

`--write` appends the result to bench/RESULTS.md. Needs ~4x `--gib` of temporary disk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from agent_bench import (  # noqa: E402
    RssSampler,
    _status_kb,
    all_complete,
    hub_bundles,
)
from multiframe_bench import SIDE, make_instance  # noqa: E402

from tests.federation import Federation  # noqa: E402

SECTION = "agent de-identification of one large multi-frame instance"
RESULTS = ROOT / "bench" / "RESULTS.md"


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid` (tesseract, started per batch of detected lines)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        kids = []
        for task in Path(f"/proc/{parent}/task").glob("*"):  # every thread's: the agent's
            try:  # workers start tesseract and the text detector from their own threads
                kids += [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
        found += kids
        queue += kids
    return found


def run(gib: float, work: Path, timeout: float, learned: str) -> dict[str, object]:
    frames = max(1, round(gib * (1 << 30) / (SIDE * SIDE)))
    source = work / "modality" / "cine.dcm"
    source.parent.mkdir(parents=True)
    started = time.perf_counter()
    make_instance(source, frames)
    size = source.stat().st_size
    print(f"instance: {frames} frames, {size / (1 << 30):.2f} GiB", flush=True)

    federation = Federation(work / "fed", quiet_period=1.0)
    sampler = RssSampler(0.2)
    child_peak_kb = 0
    child_hwm_kb: dict[int, int] = {}  # pid -> VmHWM: the text detector worker, tesseract
    try:
        federation.start_hub()
        b = federation.add_agent("org-b", "archive")
        a = federation.add_agent(
            "org-a",
            "clinic-a",
            destinations=[("org-b", "deidentified")],
            inbound=False,
            start=False,
        )
        with a.config_file.open("a") as config:  # [deidentify] is the file's last section
            config.write(f'pixel_learned = "{learned}"\n')
        federation.start_agent(a)
        assert a.process is not None
        time.sleep(2.0)  # the policy and the recipients arrive
        sampler.watch("agent A", a.process.pid)
        sampler.start()
        t0, t0_wall = time.perf_counter(), time.time()
        sent = subprocess.run(
            ["/usr/bin/storescu", "-aet", "MODALITY", "-aec", a.ae_title,
             "127.0.0.1", str(a.dicom_port), str(source)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "TCP_NODELAY": "1"},
        )  # fmt: skip
        if sent.returncode != 0:
            raise RuntimeError(f"storescu failed: {sent.stderr[-2000:]}")
        stored_s = time.perf_counter() - t0
        print(f"storescu: {stored_s:.1f} s; waiting for the hub ...", flush=True)
        hub_db = federation.hub_dir / "hub.db"
        deadline = time.monotonic() + timeout
        while not all_complete(hub_bundles(hub_db), 1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not complete at the hub in {timeout} s (see {a.log_file})")
            if a.process.poll() is not None:
                raise RuntimeError(f"agent A exited: see {a.log_file}")
            for pid in _children(a.process.pid):
                child_peak_kb = max(child_peak_kb, _status_kb(pid, "VmRSS") or 0)
                child_hwm_kb[pid] = max(child_hwm_kb.get(pid, 0), _status_kb(pid, "VmHWM") or 0)
            time.sleep(0.2)
        total_s = time.perf_counter() - t0
        hwm_kb = _status_kb(a.process.pid, "VmHWM") or 0
        sampler.stop()
        quarantined = "quarantin" in a.log_file.read_text(errors="replace")
        federation.wait_for(lambda: len(b.received_files()) >= 1, timeout, "B's copy")
        received = b.received_files()[0]
        header = received.read_bytes()[:65536]
        leaked = any(w in header for w in (b"QUIGLEY", b"8812345670", b"Marlow"))
    finally:
        sampler.stop()
        federation.stop()
    return {
        "frames": frames,
        "bytes": size,
        "generate_s": t0 - started,
        "storescu_s": stored_s,
        "total_s": total_s,
        "agent_peak_mib": sampler.peak_kb.get("agent A", 0) / 1024,
        "agent_hwm_mib": hwm_kb / 1024,
        "child_peak_mib": child_peak_kb / 1024,
        "child_hwm_mib": max(child_hwm_kb.values(), default=0) / 1024,
        "learned": learned,
        "quarantined": quarantined,
        "b_bytes": received.stat().st_size,
        "identity_in_b_header": leaked,
        "rss_timeline_mib": _timeline(sampler.samples.get("agent A", []), t0_wall),
    }


def _timeline(samples: list[tuple[float, int]], start: float, points: int = 12) -> str:
    """The agent's RSS over the timed window, as `seconds:MiB` at a few evenly spaced samples."""
    if not samples:
        return ""
    step = max(1, len(samples) // points)
    picked = [*samples[::step], samples[-1]]
    return " ".join(f"{t - start:.0f}s:{kb / 1024:.0f}" for t, kb in picked)


def _write(result: dict[str, object], command: str) -> None:
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    hwm = float(result["agent_hwm_mib"])  # type: ignore[arg-type]
    lines = [
        "",
        f"### Whole agent, end to end ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: `{platform.platform()}` · nproc {os.cpu_count()} · Python "
        f"{platform.python_version()} · load average after {load}. Command: `{command}`.",
        "",
        f"One instance of {result['frames']} frames (1024x1024 8-bit, "
        f"{int(result['bytes']) / (1 << 30):.2f} GiB, text burned into every 50th frame), "
        "dcmtk `storescu` -> agent A's SCP -> de-identified share with the default pixel policy "
        "-> sealed -> hub complete.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| storescu -> A (C-STORE success, durable) | {result['storescu_s']:.1f} s |",
        f"| storescu start -> hub complete | {result['total_s']:.1f} s |",
        f"| agent A peak VmRSS (0.2 s samples) | {result['agent_peak_mib']:.0f} MiB |",
        f"| agent A VmHWM (kernel high-water mark) | {hwm:.0f} MiB |",
        f"| largest child (tesseract, text detector worker) VmRSS | "
        f"{result['child_peak_mib']:.0f} MiB |",
        f"| largest child VmHWM (0.2 s samples) | {result['child_hwm_mib']:.0f} MiB |",
        f"| quarantined | {'yes' if result['quarantined'] else 'no'} |",
        f"| B's copy | {int(result['b_bytes']) / (1 << 30):.2f} GiB, identity in header: "
        f"{'YES' if result['identity_in_b_header'] else 'none'} |",
        "",
        f"Target agent RSS < 200 MB (190.7 MiB): **{'met' if hwm < 190.7 else 'FAIL'}**.",
    ]
    text = RESULTS.read_text()
    heading = f"## {SECTION}"
    start = text.rfind(heading)
    if start < 0:
        text += "\n" + heading + "\n"
        start = text.rfind(heading)
    nxt = text.find("\n## ", start + len(heading))
    end = len(text) if nxt < 0 else nxt
    RESULTS.write_text(text[:end].rstrip("\n") + "\n" + "\n".join(lines) + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="instance size (GiB)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="longest wait, seconds")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument(
        "--learned",
        choices=("auto", "off", "every-frame"),
        default="auto",
        help="agent A's [deidentify] pixel_learned (the learned text detector; default auto)",
    )
    args = parser.parse_args()
    if shutil.which("/usr/bin/storescu") is None:
        raise SystemExit("dcmtk's storescu is missing: run scripts/setup.sh --test")
    with tempfile.TemporaryDirectory(prefix="hx-mf-agent-") as tmp:
        result = run(args.gib, Path(tmp), args.timeout, args.learned)
    for key, value in result.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    if args.write:
        _write(result, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
