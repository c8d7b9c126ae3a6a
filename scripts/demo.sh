#!/usr/bin/env bash
# The main job on the embedded default (SQLite): the reference e-wallet's scripted scenario,
# driven through its HTTP API (onboarding and KYC, wallets, QR Ph payments, transfers, limits),
# printing balances, the events emitted and the audit verification.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "$ROOT/.venv/bin/python" -m examples.ewallet "$@"
