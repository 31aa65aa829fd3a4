"""Hub API latency at fleet scale on PostgreSQL: fleet, bundle search and audit query.

    .venv/bin/python bench/hub_bench.py                 # 500 sites, 30 days, 1 M bundles
    .venv/bin/python bench/hub_bench.py --quick         # small, to check the script

Builds a fresh PostgreSQL database (127.0.0.1:5432, user postgres) with the hub's own
migrations, loads it with COPY (sites in 10 organizations, heartbeat history at the hub's
5-minute resolution, bundles with deliveries, audit events), runs `hexchange-hub serve` as its
own process on loopback, and sends requests from N concurrent clients (threads, each its own
TLS connection and an API token) for a fixed time. Prints p50/p99 per endpoint and writes a
JSON report; the database is dropped afterwards. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.hub_process import wait_for_hub  # noqa: E402
from certs.tls import client_ssl_context  # noqa: E402
from hub.bootstrap import init_hub  # noqa: E402
from hub.principals import Principal, Role  # noqa: E402
from hub.services import build_services  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from hub.users import service as users  # noqa: E402
from tests.ports import free_port  # noqa: E402

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
ORGS = 10
PASSWORD = "bench password not secret"


def _copy(conn: psycopg.Connection, table: str, columns: list[str], rows: object) -> int:
    count = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        ) as copy,
    ):
        for row in rows:  # type: ignore[attr-defined]
            copy.write_row(row)
            count += 1
    conn.commit()
    return count


def load(url_db: str, sites: int, days: int, bundles: int, audit_events: int) -> dict[str, int]:
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    orgs = [f"org-{i:02d}" for i in range(ORGS)]
    site_ids = [(orgs[i % ORGS], f"site-{i:03d}") for i in range(sites)]
    beat = json.dumps(
        {"agent_version": "0.1.0", "queue_depth": 3, "oldest_item_age_s": 12.5,
         "bytes_pending": 123456, "disk_free_bytes": 10**11, "last_error": None,
         "policy_version": 4, "held_studies": 1, "partial_studies": 0,
         "quarantined_instances": 0, "inbound_waiting": 2}, separators=(",", ":"),
    )  # fmt: skip
    counts: dict[str, int] = {}
    with psycopg.connect(url_db) as conn:
        counts["organization"] = _copy(
            conn, "organization", ["id", "name", "created_at"], ((o, o, now) for o in orgs)
        )
        counts["site"] = _copy(
            conn, "site",
            ["org", "site", "name", "enrolled_at", "last_seen_at", "last_heartbeat"],
            ((o, s, s, now - dt.timedelta(days=days), now, beat) for o, s in site_ids),
        )  # fmt: skip
        steps = days * 24 * 12  # one history row per 5 minutes

        def beats() -> object:
            for o, s in site_ids:
                for k in range(steps):
                    yield (o, s, now - dt.timedelta(minutes=5 * k), beat)

        counts["siteheartbeat"] = _copy(
            conn, "siteheartbeat", ["org", "site", "at", "payload"], beats()
        )

        ids: list[str] = []

        def bundle_rows() -> object:
            for _ in range(bundles):
                o, s = site_ids[rng.randrange(sites)]
                to = orgs[rng.randrange(ORGS)]
                bid = secrets.token_hex(16)
                ids.append(bid + "|" + to)
                created = now - dt.timedelta(seconds=rng.randrange(days * 86400))
                mod = rng.choice(["CT", "MR", "US", "CR"])
                yield (bid, o, s, "identified", json.dumps([to]), json.dumps([mod]),
                       json.dumps({"modalities": [mod]}), 40, 50_000_000, 12, 4 << 20,
                       "0" * 64, "1", "complete", created, created)  # fmt: skip

        counts["bundle"] = _copy(
            conn, "bundle",
            ["bundle_id", "sender_org", "sender_site", "mode", "recipients", "modalities", "facts",
             "instance_count", "payload_bytes", "chunk_count", "chunk_size", "header_digest",
             "signer_serial", "state", "created_at", "completed_at"],
            bundle_rows(),
        )  # fmt: skip
        counts["delivery"] = _copy(
            conn, "delivery", ["bundle_id", "recipient_org", "state", "created_at"],
            ((i.split("|")[0], i.split("|")[1], "acked", now) for i in ids),
        )  # fmt: skip

        def audit_rows() -> object:
            for seq in range(1, audit_events + 1):
                o = orgs[rng.randrange(ORGS)]
                at = now - dt.timedelta(seconds=(audit_events - seq) * days * 86400 // audit_events)
                yield (seq, at, "user:someone", "GET /api/v1/orgs/{org}/fleet",
                       f"/api/v1/orgs/{o}/fleet", "status 200", o, "127.0.0.1", "success",
                       "0" * 64, "0" * 64)  # fmt: skip

        counts["auditevent"] = _copy(
            conn, "auditevent",
            ["seq", "at", "actor", "action", "subject", "detail", "org", "address", "outcome",
             "prev_hash", "hash"],
            audit_rows(),
        )  # fmt: skip
        conn.execute(
            "UPDATE audithead SET seq = %s, hash = %s WHERE id = 1", (audit_events, "0" * 64)
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--bundles", type=int, default=1_000_000)
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="20 sites, 2 days, 20k bundles")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--db", default=None, help="reuse a database kept by --keep-db")
    args = parser.parse_args(argv)
    if args.quick:
        args.sites, args.days, args.bundles, args.audit_events, args.seconds = (
            20,
            2,
            20_000,
            20_000,
            5,
        )

    name = args.db or f"hexchange_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(**PG, dbname="postgres", autocommit=True)
    if args.db is None:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    raw_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="hexchange-hub-bench-"))
    proc = None
    try:
        settings = HubSettings(
            data_dir=workdir / "hub",
            database_url=url,
            node_port=free_port(),
            public_port=free_port(),
        )
        init_hub(settings)
        started = time.perf_counter()
        counts = {}
        if args.db is None:
            counts = load(raw_url, args.sites, args.days, args.bundles, args.audit_events)
        load_s = time.perf_counter() - started
        print(f"loaded in {load_s:.0f} s: {counts}", flush=True)
        services = build_services(settings)
        tokens = {}
        with services.session() as session:
            run = secrets.token_hex(3)
            for role, org in (("network-admin", None), ("org-admin", "org-03")):
                view = users.create_user(
                    session, Principal.cli(), services.passwords, username=f"bench-{role}-{run}",
                    role=role, org=org, password=PASSWORD,
                )  # fmt: skip
                who = Principal(kind="user", name=view.username, role=Role(role), org=org,
                                user_id=view.id)  # fmt: skip
                tokens[role], _ = users.create_api_token(session, who, name="bench", ttl_days=1)
        services.close()
        env = {**os.environ, "HEXCHANGE_HUB_DATABASE_URL": url}
        proc = subprocess.Popen(
            [str(REPO / ".venv/bin/hexchange-hub"), "serve", "--data-dir", str(settings.data_dir),
             "--node-port", str(settings.node_port), "--public-port", str(settings.public_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        base = f"https://127.0.0.1:{settings.public_port}"
        context = client_ssl_context(settings.ca_cert_file)
        wait_for_hub(base, context)
        week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).isoformat()
        targets = {
            "fleet (org admin, 50 sites)": ("org-admin", "/api/v1/orgs/org-03/fleet", {}),
            "fleet (network admin, all sites)": ("network-admin", "/api/v1/fleet", {}),
            "bundle search (org, newest 100)": (
                "org-admin", "/api/v1/orgs/org-03/bundles", {"direction": "sent", "limit": 100}
            ),
            "bundle search (org, modality, 7 days)": (
                "org-admin", "/api/v1/orgs/org-03/bundles",
                {"modality": "MR", "since": week_ago},
            ),
            "audit query (org, newest 100)": (
                "org-admin", "/api/v1/orgs/org-03/audit", {"limit": 100}
            ),
        }  # fmt: skip
        results = _load_test(base, context, tokens, targets, args.clients, args.seconds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep_db or args.db:  # a reused database is kept too
            print(f"database kept: --db {name}")
        else:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.python_version()}",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": counts,
        "load_seconds": round(load_s, 1),
        "endpoints": results,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load_test(
    base: str, context: object, tokens: dict[str, str],
    targets: dict[str, tuple[str, str, dict[str, object]]], clients: int, seconds: float,
) -> dict[str, dict[str, float]]:  # fmt: skip
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    errors: dict[str, int] = {name: 0 for name in targets}
    lock = threading.Lock()
    names = list(targets)
    stop_at = time.monotonic() + seconds

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base, verify=context, timeout=30) as client:  # type: ignore[arg-type]
            i = offset
            while time.monotonic() < stop_at:
                name = names[i % len(names)]
                role, path, params = targets[name]
                t0 = time.perf_counter()
                response = client.get(
                    path, params=params, headers={"Authorization": f"Bearer {tokens[role]}"}
                )
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if response.status_code == 200:
                        latencies[name].append(elapsed)
                    else:
                        errors[name] += 1
                i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        name: {
            "requests": len(values),
            "errors": errors[name],
            "p50_ms": round(_percentile(values, 0.50), 1) if values else -1,
            "p99_ms": round(_percentile(values, 0.99), 1) if values else -1,
        }
        for name, values in latencies.items()
    }


if __name__ == "__main__":
    raise SystemExit(main())
