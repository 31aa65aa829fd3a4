#!/usr/bin/env bash
# One command: install what the tests need (Debian packages, .venv, PostgreSQL running),
# then lint, type-check and run the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
    echo "==> starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || echo "==> PostgreSQL is not reachable: the postgresql tests will fail"

echo "==> real ultrasound test files (PyPI deid-data sdist, cached outside the repository)"
.venv/bin/python tools/fetch_deid_data.py >/dev/null 2>&1 \
  || echo "==> could not fetch deid-data: its tests will be skipped"

echo "==> ruff (lint and format)"
.venv/bin/ruff check wire deidentify certs node_agent hub tests scripts tools bench
.venv/bin/ruff format --check wire deidentify certs node_agent hub tests scripts tools bench
echo "==> mypy --strict (wire, deidentify, certs, hub, node_agent)"
.venv/bin/mypy wire deidentify certs hub node_agent
echo "==> import-linter (package boundaries: pyproject.toml [tool.importlinter])"
.venv/bin/lint-imports
echo "==> pytest"
exec .venv/bin/pytest "$@"
