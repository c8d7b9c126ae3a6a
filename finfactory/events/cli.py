"""``finfactory-relay``: run the outbox relay from a database to a broker.

Examples::

    finfactory-relay --database-url postgresql+psycopg://app@db/app --broker nats://127.0.0.1:4222
    finfactory-relay --database-url sqlite:///app.db --broker memory:// --once

Brokers:

* ``memory://`` publishes to an in-process broker and prints every event it accepts as one
  CloudEvents JSON line on stdout (demos and tests). ``memory://?delay=0.05`` waits that
  many seconds per batch, to watch a catch-up.
* ``nats://host:port``: NATS JetStream (:class:`finfactory.adapters.nats.NatsPublisher`).
* ``kafka://host:port``: Kafka (:class:`finfactory.adapters.kafka.KafkaPublisher`); several
  bootstrap servers as ``kafka://host1:9092,host2:9092``.

``--channel`` renames the destination (cursors are kept per channel). While a backlog is
being caught up, progress (published, remaining, rate) goes to stderr every second.

SIGINT/SIGTERM stop the relay cleanly: no new batch starts, batches in flight finish and
their cursors commit. A second signal abandons the batches in flight instead (their cursors
do not move; they are published again next time). ``--once`` publishes what is pending and
exits: status 0, or 3 when some partition is left behind after a failed publish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import re
import signal
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from finfactory.events.cloudevents import to_structured_json
from finfactory.events.envelope import EventEnvelope
from finfactory.events.publishing import Publisher, PublishOutcome
from finfactory.events.relay import OutboxRelay, RelayConfig, RelayStats

STARTUP_TIMEOUT = 30.0  # seconds to reach the broker at start
EXIT_LEFT_BEHIND = 3
PROGRESS_EVERY = 1.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 7d, 12h, 30m: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finfactory-relay",
        description="Publish committed outbox events to a broker, at least once, in order.",
    )
    parser.add_argument("--database-url", required=True, help="SQLAlchemy database URL")
    parser.add_argument(
        "--broker", required=True, help="memory://, nats://host:port or kafka://host:port"
    )
    parser.add_argument("--channel", help="destination name the cursors are kept under")
    parser.add_argument("--batch-size", type=_positive_int, default=500)
    parser.add_argument("--poll-interval", type=_positive_float, default=1.0, metavar="S")
    parser.add_argument("--concurrency", type=_positive_int, default=4)
    parser.add_argument("--max-attempts", type=_positive_int, default=10)
    parser.add_argument(
        "--once", action="store_true", help="publish what is pending now, then exit"
    )
    parser.add_argument(
        "--purge-older-than",
        type=parse_duration,
        metavar="AGE",
        help="delete published outbox rows older than AGE (7d, 12h...)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


class _Renamed:
    """A publisher under another channel name."""

    def __init__(self, inner: Publisher, channel: str) -> None:
        self._inner = inner
        self._channel = channel

    @property
    def channel(self) -> str:
        return self._channel

    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        return await self._inner.publish(events)

    async def close(self) -> None:
        await self._inner.close()


def _print_event(message: Any) -> None:
    sys.stdout.write(to_structured_json(message.event).decode() + "\n")
    sys.stdout.flush()


async def open_publisher(url: str, channel: str | None = None) -> Publisher:
    """A publisher for a broker URL (see the module docs)."""
    parts = urlsplit(url)
    publisher: Any
    if parts.scheme == "memory":
        from finfactory.testing.brokers import InMemoryBroker, InMemoryPublisher

        delay = float(parse_qs(parts.query).get("delay", ["0"])[0])
        return InMemoryPublisher(
            InMemoryBroker(), channel or "memory", latency=delay, on_publish=_print_event
        )
    if parts.scheme == "nats":
        nats = importlib.import_module("finfactory.adapters.nats")
        try:
            # The client reconnects forever once connected; the first connection must not.
            publisher = await asyncio.wait_for(
                nats.NatsPublisher.connect(url), timeout=STARTUP_TIMEOUT
            )
        except TimeoutError:
            raise ValueError(
                f"no NATS server answered at {url} within {STARTUP_TIMEOUT:.0f} s"
            ) from None
    elif parts.scheme == "kafka":
        kafka = importlib.import_module("finfactory.adapters.kafka")
        publisher = kafka.KafkaPublisher(parts.netloc)
    else:
        raise ValueError(f"unsupported broker URL {url!r}: use memory://, nats:// or kafka://")
    return publisher if channel is None else _Renamed(publisher, channel)


def _progress_line(stats: RelayStats, rate: float) -> str:
    line = f"published {stats.published}, remaining {stats.lag}, {rate:.0f} events/s"
    if stats.dead_letters or stats.waiting:
        line += f", {stats.dead_letters} dead letters ({stats.waiting} waiting behind them)"
    if stats.retrying:
        line += f", {len(stats.retrying)} partition(s) retrying"
    return f"[{stats.channel}] {line}"


async def _report_progress(relay: OutboxRelay, done: asyncio.Event) -> None:
    """Every second while there is a backlog: published / remaining / rate, on stderr."""
    last_count, last_time = relay.published, time.monotonic()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), PROGRESS_EVERY)
        if done.is_set():
            return
        stats = await asyncio.to_thread(relay.stats)
        now = time.monotonic()
        rate = (stats.published - last_count) / max(now - last_time, 1e-9)
        last_count, last_time = stats.published, now
        if stats.lag or rate:
            print(_progress_line(stats, rate), file=sys.stderr, flush=True)


async def _serve(args: argparse.Namespace) -> int:
    from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine

    engine = create_engine(args.database_url)
    publisher = await open_publisher(args.broker, args.channel)
    config = RelayConfig(
        batch_size=args.batch_size,
        poll_interval=args.poll_interval,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        retention=None if args.once else args.purge_older_than,
    )
    relay = OutboxRelay(SqlStorage(engine), publisher, config)
    stop = asyncio.Event()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    work = asyncio.current_task()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            print(
                f"{signal.Signals(signum).name}: stopping after the batches in flight"
                " (signal again to abandon them)",
                file=sys.stderr,
                flush=True,
            )
            stop.set()
        elif work is not None:
            work.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    reporter = asyncio.create_task(_report_progress(relay, done))
    started = time.monotonic()
    try:
        if args.once:
            await relay.run_once(stop)
            if args.purge_older_than is not None and not stop.is_set():
                await relay.purge_published(args.purge_older_than)
        else:
            await relay.run(stop)
    finally:
        done.set()
        await asyncio.gather(reporter, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await publisher.close()
    stats = await asyncio.to_thread(relay.stats)
    engine.dispose()
    elapsed = time.monotonic() - started
    print(
        _progress_line(stats, stats.published / max(elapsed, 1e-9)) + " (overall)",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_LEFT_BEHIND if args.once and stats.retrying else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("finfactory").setLevel(args.log_level.upper())
    try:
        return asyncio.run(_serve(args))
    except asyncio.CancelledError:
        print("abandoned the batches in flight; they will be published again", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        print(f"finfactory-relay: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
