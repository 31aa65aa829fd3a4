"""Run a local Hexchange federation and send one synthetic CT study across it.

Steps, each printed with the time it took:
1. hub: create the CA, TLS certificate, receipt key and SQLite database; serve both listeners
2. enroll "Regional Archive" (org-b) and "Rural Clinic A" (org-a) with one-time tokens
3. generate a synthetic CT study (fake patient) and send it to agent A with dcmtk storescu
4. agent A: quiet period -> seal to org B's key -> upload over mutual TLS -> hub receipt
5. agent B: delivery -> verify sender -> decrypt -> store in B's local folder
6. check: pixel data byte-identical; the patient's name is nowhere in the hub's files
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from certs.tls import client_ssl_context  # noqa: E402
from tests.factories.dicom import make_ct_study, pixel_bytes  # noqa: E402
from tests.federation import Federation, storescu  # noqa: E402


class Steps:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = self.start

    def done(self, text: str) -> None:
        now = time.monotonic()
        print(f"  [{now - self.last:6.2f}s] {text}", flush=True)
        self.last = now


def hub_files_contain(hub_dir: Path, needles: list[str]) -> list[str]:
    found = []
    for path in hub_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}" for n in needles if n.encode() in data]
    return found


def admin_client(fed: Federation, password: str) -> httpx.Client:
    """The network admin signed in over the public API, holding a personal API token."""
    client = httpx.Client(
        base_url=f"https://127.0.0.1:{fed.public_port}",
        verify=client_ssl_context(fed.ca_file),
        timeout=10,
    )
    login = client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
    login.raise_for_status()
    made = client.post(
        "/api/v1/me/tokens",
        json={"name": "demo", "ttl_days": 1},
        headers={"X-CSRF-Token": login.json()["csrf_token"]},
    )
    made.raise_for_status()
    client.cookies.clear()
    client.headers["Authorization"] = f"Bearer {made.json()['token']}"
    return client


def fleet_seen(admin: httpx.Client, site: str) -> bool:
    rows = admin.get("/api/v1/fleet").json()
    return any(r["site"] == site and r["last_seen_at"] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "demo-data")
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument(
        "--keep-running", action="store_true", help="leave hub and agents running until Ctrl-C"
    )
    args = parser.parse_args()

    if shutil.which("storescu") is None:
        print("storescu (Debian package dcmtk) is missing: run scripts/setup.sh", file=sys.stderr)
        return 2
    shutil.rmtree(args.data, ignore_errors=True)
    steps = Steps()
    fed = Federation(args.data, quiet_period=2.0)
    try:
        fed.start_hub()
        steps.done(
            f"hub up: node API :{fed.node_port} (mutual TLS), public API "
            f":{fed.public_port}, SQLite + local blobs in {fed.hub_dir}"
        )
        password_file = args.data / "admin-password.txt"
        password_file.write_text(secrets.token_urlsafe(18) + "\n")
        password_file.chmod(0o600)
        fed.hub_cli(
            "user", "add", "--username", "admin", "--role", "network-admin",
            "--display-name", "Demo network admin", "--password-file", str(password_file),
        )  # fmt: skip
        admin = admin_client(fed, password_file.read_text().strip())
        steps.done(
            f"network admin made (hexchange-hub user add): sign in at https://127.0.0.1:"
            f"{fed.public_port} as 'admin', password in {password_file}"
        )
        b = fed.add_agent("org-b", "archive", org_name="Regional Archive")
        steps.done(
            f"agent org-b/archive (Regional Archive) enrolled and running, DICOM "
            f"{b.ae_title}@127.0.0.1:{b.dicom_port}"
        )
        a = fed.add_agent(
            "org-a", "clinic-a", org_name="Rural Clinic A", destinations=[("org-b", "identified")]
        )
        steps.done(
            f"agent org-a/clinic-a (Rural Clinic A) enrolled and running, DICOM "
            f"{a.ae_title}@127.0.0.1:{a.dicom_port}; policy: identified to org-b"
        )
        study = make_ct_study(args.data / "modality", instances=args.instances)
        steps.done(f"synthetic CT study generated: {args.instances} instances, fake patient")
        result = storescu(a.dicom_port, a.ae_title, study.files)
        if result.returncode != 0:
            print(result.stderr.decode(), file=sys.stderr)
            return 1
        steps.done(
            f"storescu sent {len(study.files)} instances to agent A (C-STORE success "
            "only after each instance was fsynced)"
        )
        fed.wait_for(
            lambda: len(b.received_files()) == args.instances, 120, "the study to arrive at org B"
        )
        steps.done(
            f"study arrived at org B: {len(b.received_files())} instances in {b.received_dir}"
        )
        sent = pixel_bytes(study.files)
        got = pixel_bytes(b.received_files())
        identical = sent == got
        leaks = hub_files_contain(fed.hub_dir, study.identifying_strings)
        steps.done(
            f"pixel data byte-identical: {'yes' if identical else 'NO'}; patient "
            f"identity in hub files: {leaks or 'none'}"
        )
        fed.wait_for(lambda: fleet_seen(admin, "clinic-a"), 60, "agent A's first heartbeat")
        rows = admin.get("/api/v1/fleet").json()
        steps.done(
            "fleet over the admin API: "
            + "; ".join(
                f"{r['org']}/{r['site']} seen, queue {r['queue_depth']}, "
                f"policy v{r['policy_version_current']}"
                for r in rows
            )
        )
        print(
            f"total {time.monotonic() - steps.start:.1f}s. Inspect: "
            f".venv/bin/hexchange-hub bundles --data-dir {fed.hub_dir} ; "
            f".venv/bin/hexchange-agent status -c {a.config_file}"
        )
        if args.keep_running:
            print("federation running; Ctrl-C to stop")
            while True:
                time.sleep(1)
        return 0 if identical and not leaks else 1
    except KeyboardInterrupt:
        return 0
    finally:
        fed.stop()


if __name__ == "__main__":
    sys.exit(main())
