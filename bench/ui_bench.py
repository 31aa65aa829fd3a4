"""Web UI fleet page at 1,000 sites: page load p50/p95, beside the JSON fleet API in one run.

    .venv/bin/python bench/ui_bench.py                  # 1,000 sites, 60 loads each
    .venv/bin/python bench/ui_bench.py --sites 50 --loads 10   # quick check of the script
    .venv/bin/python bench/ui_bench.py --write          # also append to bench/RESULTS.md

Makes a fresh hub (SQLite), loads the sites straight into its database (each with a
certificate and a last heartbeat, as enrolled agents leave them, a tenth of them stale), runs
`hexchange-hub serve` as its own process on loopback, signs a network admin in through the
sign-in page (session cookie) and times full GETs of /ui/fleet (HTML, every site) one after
another, interleaved with GET /api/v1/fleet (JSON, same rows) with an API token. "Page load"
here is the server's answer in full over TLS; the browser's rendering is not included.
Target (issue 13): p95 < 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from bench.hub_process import wait_for_hub  # noqa: E402
from certs.tls import client_ssl_context  # noqa: E402
from hub.bootstrap import init_hub  # noqa: E402
from hub.models import Organization, Site  # noqa: E402
from hub.principals import Principal, Role  # noqa: E402
from hub.services import build_services  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from hub.users import service as users  # noqa: E402
from tests.ports import free_port  # noqa: E402

PASSWORD = "bench password not secret"
ORGS = 10


def _certificate_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-site")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load(settings: HubSettings, sites: int) -> dict[str, str]:
    """Sites in ORGS organizations; returns the network admin's API token."""
    services = build_services(settings)
    pem = _certificate_pem()
    now = dt.datetime.now(dt.UTC)
    with services.session() as session:
        for o in range(ORGS):
            session.add(Organization(id=f"org-{o:02d}", name=f"Organization {o}"))
        session.commit()
        for i in range(sites):
            beat = {
                "agent_version": "0.1.0", "queue_depth": i % 40, "oldest_item_age_s": 12.5,
                "bytes_pending": i * 12345, "disk_free_bytes": 2**36, "policy_version": 1,
                "last_error": None if i % 7 else "upload: <connection reset> by peer",
                "held_studies": 0, "partial_studies": 0, "quarantined_instances": i % 3,
                "inbound_waiting": 1,
            }  # fmt: skip
            seen = now - dt.timedelta(minutes=30 if i % 10 == 0 else 0, seconds=i % 30)
            session.add(
                Site(
                    org=f"org-{i % ORGS:02d}", site=f"site-{i:04d}", name=f"Clinic {i}",
                    certificate_serial=f"{i + 1:x}", certificate_pem=pem, enrolled_at=now,
                    last_seen_at=seen, last_heartbeat=json.dumps(beat),
                )
            )  # fmt: skip
        session.commit()
        view = users.create_user(
            session, Principal.cli(), services.passwords, username="bench-admin",
            role="network-admin", org=None, password=PASSWORD,
        )  # fmt: skip
        who = Principal(kind="user", name=view.username, role=Role.NETWORK_ADMIN, org=None,
                        user_id=view.id)  # fmt: skip
        token, _ = users.create_api_token(session, who, name="bench", ttl_days=1)
    services.close()
    return {"token": token}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(base: str, context: object, token: str, sites: int, loads: int) -> dict[str, object]:
    page = httpx.Client(base_url=base, verify=context, timeout=30)  # type: ignore[arg-type]
    api = httpx.Client(base_url=base, verify=context, timeout=30,  # type: ignore[arg-type]
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    signed = page.post("/ui/login", data={"username": "bench-admin", "password": PASSWORD})
    assert signed.status_code == 303, signed.text
    timings: dict[str, list[float]] = {"ui": [], "api": []}
    size = {"ui": 0, "api": 0}
    for _ in range(3):  # warm up connections and caches
        page.get("/ui/fleet")
        api.get("/api/v1/fleet")
    for _ in range(loads):
        for kind, client, path in (("ui", page, "/ui/fleet"), ("api", api, "/api/v1/fleet")):
            started = time.perf_counter()
            response = client.get(path)
            timings[kind].append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:200]
            size[kind] = len(response.content)
    rows = page.get("/ui/fleet").text.count("data-site=")
    assert rows == sites, f"the page shows {rows} sites, not {sites}"
    page.close()
    api.close()
    out: dict[str, object] = {}
    for kind, values in timings.items():
        out[kind] = {
            "p50_ms": round(_percentile(values, 0.50) * 1000, 1),
            "p95_ms": round(_percentile(values, 0.95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
            "bytes": size[kind],
        }
    p95 = {k: v["p95_ms"] for k, v in out.items() if isinstance(v, dict)}
    out["ratio_p95_ui_over_api"] = round(p95["ui"] / p95["api"], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=60)
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hexchange-ui-bench-"))
    settings = HubSettings(
        data_dir=workdir / "hub", database_url=f"sqlite:///{workdir / 'hub.db'}",
        node_port=free_port(), public_port=free_port(),
    )  # fmt: skip
    init_hub(settings)
    secrets_ = load(settings, args.sites)
    env = {**os.environ, "HEXCHANGE_HUB_DATABASE_URL": settings.database_url}
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/hexchange-hub"), "serve", "--data-dir", str(settings.data_dir),
         "--node-port", str(settings.node_port), "--public-port", str(settings.public_port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"https://127.0.0.1:{settings.public_port}"
        context = client_ssl_context(settings.ca_cert_file)
        wait_for_hub(base, context)
        result = measure(base, context, secrets_["token"], args.sites, args.loads)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": (
            f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "sites": args.sites,
        "loads": args.loads,
        **result,
    }
    print(json.dumps(report, indent=2))
    if args.write:
        ui, api = result["ui"], result["api"]
        assert isinstance(ui, dict) and isinstance(api, dict)
        verdict = "PASS" if ui["p95_ms"] < 1000 else "FAIL"
        with (REPO / "bench" / "RESULTS.md").open("a") as out:
            out.write(
                f"\n## web UI fleet page (issue 13)\n\nMachine: {report['machine']} · "
                f"{report['when']} UTC. Other jobs shared the machine. Command: "
                f"`.venv/bin/python bench/ui_bench.py --sites {args.sites} --loads {args.loads}"
                f" --write`.\n\n{args.sites} sites (SQLite, each with a certificate and a last "
                f"heartbeat), `hexchange-hub serve` on loopback, one network admin, "
                f"{args.loads} sequential full GETs each, interleaved. Target: p95 < 1 s.\n\n"
                f"- /ui/fleet (HTML, {ui['bytes'] // 1024} KiB): p50 {ui['p50_ms']} ms, "
                f"p95 {ui['p95_ms']} ms, max {ui['max_ms']} ms — {verdict}\n"
                f"- /api/v1/fleet (JSON, {api['bytes'] // 1024} KiB): p50 {api['p50_ms']} ms, "
                f"p95 {api['p95_ms']} ms, max {api['max_ms']} ms\n"
                f"- p95 page / p95 API = {result['ratio_p95_ui_over_api']}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
