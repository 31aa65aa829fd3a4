"""DICOMweb per-request cost of this source tree against a baseline tree, in one run.

`bench/dicomweb_bench.py --baseline DIR` (DIR: another checkout, e.g. `git archive main`)
loads the database once, then starts `hexchange-hub serve` from each tree in turn on the same
database and files (one hub at a time, `PYTHONPATH` naming the tree), alternating the order
each round, and measures each hub the same way: QIDO-RS under `--clients` clients (p50/p99,
requests/s) and WADO-RS instance retrieval against the static file server (4 clients,
alternating with the static server), and the hub process's CPU seconds per request (from
/proc: user + system time of the hub over the phase, divided by the requests it answered).
The summary gives each figure of this tree divided by the baseline's, per round.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.hub_process import wait_for_hub
from certs.tls import client_ssl_context
from hub.settings import HubSettings

REPO = Path(__file__).resolve().parent.parent
_MAIN = "import sys; from hub.cli import main; sys.exit(main())"


def _descendants(pid: int) -> list[int]:
    found = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children = [int(c) for c in fh.read().split()]
        except FileNotFoundError:
            continue
        for child in children:
            found += _descendants(child)
    return found


def hub_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (the hub's
    worker processes with `--workers`; Linux /proc)."""
    total = 0
    for one in _descendants(pid):
        try:
            with open(f"/proc/{one}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def start_hub(
    tree: Path, settings: HubSettings, url: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "HEXCHANGE_HUB_DATABASE_URL": url, "PYTHONPATH": str(tree),
        **(extra_env or {}),
    }  # fmt: skip
    command = [
        sys.executable, "-c", _MAIN, "serve", "--data-dir", str(settings.data_dir),
        "--node-port", str(settings.node_port), "--public-port", str(settings.public_port),
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_hub(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def measure(
    proc: subprocess.Popen[bytes],
    base: str,
    context: object,
    token: str,
    sample: list[str],
    urls: tuple[list[str], list[str]],
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    """One hub: QIDO-RS, then WADO-RS alternating with the static server (2 rounds)."""
    from bench.dicomweb_bench import fetch_rate, run_qido

    run_qido(base, context, token, sample, clients, 3.0)  # warm up
    before = hub_cpu_seconds(proc.pid)
    qido = run_qido(base, context, token, sample, clients, seconds)
    spent = hub_cpu_seconds(proc.pid) - before
    answered = sum(level["requests"] for level in qido.values())
    qido["hub_cpu_ms_per_request"] = round(spent * 1000 / max(answered, 1), 2)
    qido["per_s"] = round(answered / seconds, 1)
    hub_urls, static_urls = urls
    auth = {"Authorization": f"Bearer {token}"}
    rounds, cpu = [], []
    for _ in range(2):
        static_rate = fetch_rate(static_urls, {}, context, 4, seconds / 2)[0]
        before = hub_cpu_seconds(proc.pid)
        hub_rate = fetch_rate(hub_urls, auth, context, 4, seconds / 2)[0]
        spent = hub_cpu_seconds(proc.pid) - before
        cpu.append(spent * 1000 / max(hub_rate * seconds / 2, 1))
        rounds.append((static_rate, hub_rate))
    static_best = max(r[0] for r in rounds)
    hub_best = max(r[1] for r in rounds)
    wado = {
        "static_per_s": round(static_best, 1),
        "hub_per_s": round(hub_best, 1),
        "ratio": round(hub_best / static_best, 3),
        "rounds": [[round(s, 1), round(h, 1)] for s, h in rounds],
        "hub_cpu_ms_per_request": round(statistics.mean(cpu), 2),
    }
    return {"qido": qido, "wado": wado}


def compare(
    baseline: Path,
    settings: HubSettings,
    url: str,
    token: str,
    sample: list[str],
    urls: tuple[list[str], list[str]],
    clients: int,
    seconds: float,
    rounds: int = 2,
    envs: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Alternate the two hubs (baseline, this; then this, baseline; ...). `envs`: extra
    environment of each ("baseline", "this"), e.g. HEXCHANGE_HUB_WORKERS."""
    from bench.dicomweb_bench import NAME

    public = f"https://127.0.0.1:{settings.public_port}"
    base = f"{public}/dicomweb/collections/{NAME}"
    context = client_ssl_context(settings.ca_cert_file)
    trees = {"baseline": baseline.resolve(), "this": REPO}
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "this": []}
    for n in range(rounds):
        order = ["baseline", "this"] if n % 2 == 0 else ["this", "baseline"]
        for label in order:
            proc = start_hub(trees[label], settings, url, (envs or {}).get(label))
            try:
                wait_for_hub(public, context)
                result = measure(proc, base, context, token, sample, urls, clients, seconds)
            finally:
                stop_hub(proc)
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            runs[label].append(result)
            print(f"{label} (round {n + 1}): {result}", flush=True)
            time.sleep(1)
    return {
        "trees": {k: str(v) for k, v in trees.items()},
        "envs": envs or {},
        "runs": runs,
        "ratios": ratios(runs),
    }


def ratios(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, float]]:
    """This tree / baseline, per round (below 1: less time or CPU; above 1: more per second)."""
    out = []
    for this, base in zip(runs["this"], runs["baseline"], strict=True):
        q, b = this["qido"], base["qido"]
        out.append(
            {
                "qido_cpu_per_request": round(
                    q["hub_cpu_ms_per_request"] / b["hub_cpu_ms_per_request"], 2
                ),
                "qido_per_s": round(q["per_s"] / b["per_s"], 2),
                "study_p50": round(q["study"]["p50_ms"] / b["study"]["p50_ms"], 2),
                "study_p99": round(q["study"]["p99_ms"] / b["study"]["p99_ms"], 2),
                "series_p50": round(q["series"]["p50_ms"] / b["series"]["p50_ms"], 2),
                "series_p99": round(q["series"]["p99_ms"] / b["series"]["p99_ms"], 2),
                "wado_cpu_per_request": round(
                    this["wado"]["hub_cpu_ms_per_request"] / base["wado"]["hub_cpu_ms_per_request"],
                    2,
                ),
                "wado_ratio_to_static": round(this["wado"]["ratio"] / base["wado"]["ratio"], 2),
            }
        )
    return out
