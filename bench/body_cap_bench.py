"""Body-cap benchmark: the hub's memory under 20 concurrent oversized requests.

    .venv/bin/python bench/body_cap_bench.py [--mib 16] [--clients 20] [--write]

Runs the real hub (both listeners, real TLS) in a child process twice, side by side in one
run: as built (`hub.api.limits` body caps installed) and with the caps switched off (the
behaviour before issue 14: FastAPI reads a JSON body whole before validating it). Against
each, 20 clients at once POST an oversized body (`--mib` MiB) to the unauthenticated
enrollment route, half with a Content-Length, half chunked, each sending as fast as the hub
reads. The hub's resident memory is sampled every 10 ms (psutil); the result is the peak over
the idle baseline, and the ratio capped/uncapped. `--write` appends a section to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from certs.tls import client_ssl_context  # noqa: E402
from hub.bootstrap import init_hub  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from tests.ports import free_port  # noqa: E402

CHILD = """
import asyncio, sys
from hub.api import limits
from hub.server import serve
from hub.settings import HubSettings
if sys.argv[2] == "uncapped":
    limits.install = lambda app, **kw: None
asyncio.run(serve(HubSettings.model_validate_json(sys.argv[1])))
"""
PIECE = b"x" * (256 * 1024)


def _attack(port: int, context: ssl.SSLContext, total: int, chunked: bool) -> str:
    head = "POST /api/v1/enroll HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n"
    head += "transfer-encoding: chunked\r\n\r\n" if chunked else f"content-length: {total}\r\n\r\n"
    sent = 0
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=60) as plain,
            context.wrap_socket(plain, server_hostname="localhost") as sock,
        ):
            sock.sendall(head.encode())
            while sent < total:
                piece = b"%x\r\n%s\r\n" % (len(PIECE), PIECE) if chunked else PIECE
                sock.sendall(piece)
                sent += len(PIECE)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(200)
            return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    except (OSError, ssl.SSLError) as exc:
        return f"closed after {sent >> 20} MiB ({type(exc).__name__})"


def run_variant(settings: HubSettings, variant: str, mib: int, clients: int) -> dict[str, object]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.model_dump_json(), variant],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", settings.public_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        proc = psutil.Process(child.pid)
        time.sleep(0.5)
        baseline = proc.memory_info().rss
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        context = client_ssl_context(settings.ca_cert_file)
        outcomes: list[str] = []
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=lambda i=i: outcomes.append(
                    _attack(settings.public_port, context, mib << 20, chunked=i % 2 == 1)
                )
            )
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        stop.set()
        sampler.join()
        return {
            "variant": variant,
            "baseline_mib": baseline / 2**20,
            "peak_mib": peak / 2**20,
            "growth_mib": (peak - baseline) / 2**20,
            "seconds": elapsed,
            "outcomes": sorted(set(o.split(" (")[0] for o in outcomes)),
        }
    finally:
        child.terminate()
        child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=16, help="size of each oversized body")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="hexchange-bodycap-") as tmp:
        for variant in ("capped", "uncapped"):
            settings = HubSettings(
                data_dir=Path(tmp) / variant, node_port=free_port(), public_port=free_port()
            )
            init_hub(settings)
            results.append(run_variant(settings, variant, args.mib, args.clients))
    capped, uncapped = results
    ratio = float(capped["growth_mib"]) / max(float(uncapped["growth_mib"]), 0.01)  # type: ignore[arg-type]
    lines = [
        f"- {r['variant']}: RSS idle {r['baseline_mib']:.0f} MiB, peak {r['peak_mib']:.0f} MiB "
        f"(+{r['growth_mib']:.1f} MiB) in {r['seconds']:.1f} s; clients saw: "
        f"{', '.join(r['outcomes'])}"  # type: ignore[arg-type]
        for r in results
    ]
    lines.append(f"- growth capped / uncapped = {ratio:.3f}")
    report = "\n".join(lines)
    print(report)
    if args.write:
        uname = platform.uname()
        section = (
            f"\n## body caps (issue 14)\n\n"
            f"Machine: `{uname.system} {uname.node} {uname.release} {uname.machine}` · nproc "
            f"{os.cpu_count()} · Python {platform.python_version()} · "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Other jobs shared the machine. "
            f"Command: `.venv/bin/python bench/body_cap_bench.py --mib {args.mib} --clients "
            f"{args.clients} --write`.\n\n{args.clients} concurrent POST /api/v1/enroll, each "
            f"{args.mib} MiB (half Content-Length, half chunked), against the real hub in a "
            f"child process; resident memory sampled every 10 ms. Target: memory stays flat.\n\n"
            f"{report}\n"
        )
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write(section)


if __name__ == "__main__":
    main()
