#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, ruff, mypy --strict, pytest (SQLite,
# in-memory and PostgreSQL). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/postgres.sh
bash scripts/services.sh
V="$ROOT/.venv/bin"
echo "== ruff";  "$V/ruff" check finfactory tests examples benchmarks
"$V/ruff" format --check finfactory tests examples benchmarks
echo "== mypy --strict"; "$V/mypy"
echo "== pytest"; "$V/pytest" "$@"
