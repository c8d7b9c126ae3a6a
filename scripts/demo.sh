#!/usr/bin/env bash
# The main job on the embedded default (SQLite): a scripted ledger scenario that prints
# balances, a statement, the events emitted and the audit verification.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "$ROOT/.venv/bin/python" -m examples.ledger_demo "$@"
