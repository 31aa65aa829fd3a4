#!/usr/bin/env bash
# One command: set up, then run a local federation (hub + two agents, SQLite and local files)
# and send a synthetic CT study from "Rural Clinic A" (org A) to "Regional Archive" (org B).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> starting the demo federation (data in ./demo-data, recreated on every run)"
exec .venv/bin/python scripts/demo_federation.py "$@"
