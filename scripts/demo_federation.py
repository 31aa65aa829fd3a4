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
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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
