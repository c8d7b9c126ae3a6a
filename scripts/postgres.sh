#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 (installs and starts it if needed).
set -euo pipefail
HOST=127.0.0.1
PORT=5432

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if ! command -v pg_ctlcluster >/dev/null || ! command -v pg_isready >/dev/null; then
  echo "installing PostgreSQL (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client
fi
if ! ready; then
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
if ! ready; then
  echo "PostgreSQL is not answering on $HOST:$PORT" >&2
  exit 1
fi
# The tests connect as postgres without a password (trust auth on the machine's loopback).
if ! psql -h "$HOST" -p "$PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  echo "cannot connect as postgres@$HOST:$PORT without a password; set FINFACTORY_TEST_PG_URL" >&2
  [ -n "${FINFACTORY_TEST_PG_URL:-}" ] || exit 1
fi
