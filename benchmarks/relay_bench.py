"""Outbox relay throughput and latency against nats-py publishing straight to JetStream.

Run: ``python -m benchmarks.relay_bench`` (PostgreSQL at FINFACTORY_BENCH_PG_URL, NATS with
JetStream at FINFACTORY_BENCH_NATS_URL, default nats://127.0.0.1:4222).

In one run, on the same NATS server and with file-backed streams de-duplicating on
``Nats-Msg-Id`` in both cases:

* raw: N messages the size of a typical outbox event (the headers and body of one real
  ledger event as the NATS publisher encodes it, with a unique ``Nats-Msg-Id`` each),
  published straight with nats-py JetStream async publish, acks awaited per batch.
* relay: N committed outbox events (ledger batch postings, 100 journals per call, 3 events
  per journal) published by :class:`~finfactory.events.relay.OutboxRelay` through
  :class:`~finfactory.adapters.nats.NatsPublisher`, from a backlog, until none is left.
  The ratio relay/raw compares the two.
* latency: journals posted live at a steady pace while a relay runs (LISTEN/NOTIFY wake-up)
  and a consumer in another process reads the stream; latency = the time the consumer
  receives the message - the event's ``recorded_at``. Prints p50/p99.

It prints figures and asserts nothing. The database it uses is dropped and created afresh,
and dropped again at the end; the streams it creates are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, Literal

import attrs
import nats
import sqlalchemy as sa
from moneyed import Money
from nats.js.api import DeliverPolicy, StorageType, StreamConfig

from finfactory.adapters.nats import NatsPublisher
from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.events.cloudevents import to_binary
from finfactory.events.envelope import EventEnvelope
from finfactory.events.outbox import OutboxReader
from finfactory.events.relay import OutboxRelay, RelayConfig
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import SystemClock, UuidGenerator
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService

PG_URL = os.environ.get(
    "FINFACTORY_BENCH_PG_URL",
    "postgresql+psycopg://postgres@127.0.0.1/finfactory_relay_bench",
)
NATS_URL = os.environ.get("FINFACTORY_BENCH_NATS_URL", "nats://127.0.0.1:4222")
CTX = RequestContext("bench", Actor("bench-runner", ActorKind.SERVICE, frozenset({"admin"})))
JOURNALS_PER_CALL = 100
# A post_journals call between two accounts: a journal.posted per journal, and one
# balance.updated per account for the call.
BALANCE_EVENTS_PER_CALL = 2


def events_per_call(journals: int) -> int:
    return journals + BALANCE_EVENTS_PER_CALL


Mode = Literal["binary", "structured"]
MODES: tuple[Mode, ...] = ("binary", "structured")


# -- database ----------------------------------------------------------------------------
def _admin(url: str) -> tuple[sa.Engine, str]:
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return admin, str(target.database)


def fresh_pg(url: str) -> sa.Engine:
    admin, name = _admin(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    engine = create_engine(url, pool_size=10, max_overflow=10)
    migrate(engine)
    return engine


def drop_pg(url: str) -> None:
    admin, name = _admin(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def open_pair(ledger: LedgerService, tag: str) -> tuple[str, str]:
    cash = ledger.open_account(CTX, c.OpenAccount(code=f"cash-{tag}", currency="PHP", type="asset"))
    wallet = ledger.open_account(
        CTX,
        c.OpenAccount(
            code=f"wallet-{tag}",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    )
    return cash.id, wallet.id


def journals(count: int, cash: str, wallet: str, prefix: str) -> c.PostJournals:
    amount = Money("1.25", "PHP")
    return c.PostJournals(
        journals=[
            c.PostJournal(
                reference=f"{prefix}-{i}",
                legs=[
                    c.Leg(account_id=cash, direction="debit", amount=amount),
                    c.Leg(account_id=wallet, direction="credit", amount=amount),
                ],
            )
            for i in range(count)
        ]
    )


def outbox_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM ff_outbox").scalar_one())


def seed(ledger: LedgerService, events: int, tag: str) -> None:
    """Commit at least ``events`` outbox events: journals posted 100 per call."""
    cash, wallet = open_pair(ledger, tag)
    remaining = events
    call = 0
    while remaining > 0:
        size = max(1, min(JOURNALS_PER_CALL, remaining - BALANCE_EVENTS_PER_CALL))
        ledger.post_journals(
            CTX, journals(size, cash, wallet, f"{tag}-{call}"), idempotency_key=f"{tag}-{call}"
        )
        remaining -= events_per_call(size)
        call += 1


# -- messages ----------------------------------------------------------------------------
def nats_message(event: EventEnvelope) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as NatsPublisher sends ``event`` in binary mode."""
    headers, body = to_binary(event, binding="nats")
    return {**headers, "Nats-Msg-Id": headers["ce-id"]}, body


def wire_size(headers: dict[str, str], body: bytes) -> int:
    return len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 12


def typical_message(engine: sa.Engine) -> tuple[dict[str, str], bytes]:
    """The median-sized message among a sample of real outbox events."""
    sample = OutboxReader(SqlStorage(engine)).read(0, 600)
    messages = sorted((nats_message(e) for e in sample), key=lambda m: wire_size(*m))
    return messages[len(messages) // 2]


# -- NATS --------------------------------------------------------------------------------
async def make_stream(nc: Any, name: str, subjects: str) -> None:
    await nc.jsm().add_stream(
        StreamConfig(name=name, subjects=[subjects], duplicate_window=120, storage=StorageType.FILE)
    )


async def delete_streams(names: Sequence[str]) -> None:
    nc = await nats.connect(NATS_URL)
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jsm().delete_stream(name)
    await nc.close()


async def stream_count(name: str) -> int:
    nc = await nats.connect(NATS_URL)
    info = await nc.jsm().stream_info(name)
    await nc.close()
    return int(info.state.messages)


async def raw_publish(
    message: tuple[dict[str, str], bytes], n: int, batch: int, stream: str, prefix: str
) -> float:
    """msgs/s of nats-py JetStream async publish, acks awaited per ``batch``."""
    headers, body = message
    subject = f"{prefix}.bench.journal.posted"
    nc = await nats.connect(NATS_URL)
    await make_stream(nc, stream, f"{prefix}.>")
    js = nc.jetstream(publish_async_max_pending=max(batch, 4000))
    ids = [str(uuid.uuid4()) for _ in range(n)]
    started = time.perf_counter()
    for start in range(0, n, batch):
        futures = [
            await js.publish_async(subject, body, headers={**headers, "Nats-Msg-Id": msg_id})
            for msg_id in ids[start : start + batch]
        ]
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await nc.close()
    stored = await stream_count(stream)
    if stored != n:
        print(f"  warning: raw stream holds {stored} messages, expected {n}")
    return n / elapsed


def relay_config(batch: int | None, concurrency: int | None, *, listen: bool) -> RelayConfig:
    """The relay's default configuration unless overridden."""
    config = RelayConfig(listen=listen)
    if batch is not None:
        config = attrs.evolve(config, batch_size=batch)
    if concurrency is not None:
        config = attrs.evolve(config, concurrency=concurrency)
    return config


async def relay_throughput(
    engine: sa.Engine, n: int, stream: str, prefix: str, mode: Mode, config: RelayConfig
) -> float:
    """events/s of the relay draining a backlog of ``n`` committed events."""
    publisher = await NatsPublisher.connect(
        NATS_URL, subject_prefix=prefix, stream=stream, mode=mode, channel=f"bench-{mode}"
    )
    relay = OutboxRelay(SqlStorage(engine), publisher, config, SystemClock())
    published = 0
    started = time.perf_counter()
    while True:
        count = await relay.run_once()
        published += count
        if count == 0:
            break
    elapsed = time.perf_counter() - started
    await publisher.close()
    stored = await stream_count(stream)
    if published != n or stored != n:
        print(f"  warning: relay published {published}, stream holds {stored}, expected {n}")
    return published / elapsed


# -- latency -----------------------------------------------------------------------------
def consume(url: str, subject: str, expected: int, conn: Connection, timeout: float) -> None:
    """Consumer process: receive ``expected`` messages, send back their latencies (s)."""

    async def main() -> list[float]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        latencies: list[float] = []
        done = asyncio.Event()

        async def on_message(msg: Any) -> None:
            received = time.time()
            headers = msg.headers or {}
            stamp = headers["ce-time"] if "ce-time" in headers else json.loads(msg.data)["time"]
            recorded = datetime.fromisoformat(stamp).timestamp()
            latencies.append(received - recorded)
            if len(latencies) >= expected:
                done.set()

        await js.subscribe(
            subject, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        conn.send("ready")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        await nc.close()
        return latencies

    conn.send(asyncio.run(main()))
    conn.close()


def produce(
    url: str, accounts: tuple[str, str], calls: int, per_call: int, interval: float
) -> None:
    """Producer process (the application): post ``per_call`` journals every ``interval``."""
    engine = create_engine(url)
    ledger = LedgerService(SqlStorage(engine), default_policy(), SystemClock(), UuidGenerator())
    started = time.perf_counter()
    for call in range(calls):
        pause = started + call * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        ledger.post_journals(
            CTX, journals(per_call, *accounts, f"live-{call}"), idempotency_key=f"live-{call}"
        )
    engine.dispose()


async def relay_latency(
    engine: sa.Engine,
    url: str,
    events: int,
    per_call: int,
    interval: float,
    stream: str,
    prefix: str,
    config: RelayConfig,
) -> tuple[list[float], float]:
    """Latencies of ``events`` events posted live by another process while a relay runs."""
    ledger = LedgerService(SqlStorage(engine), default_policy(), SystemClock(), UuidGenerator())
    accounts = open_pair(ledger, "live")
    publisher = await NatsPublisher.connect(
        NATS_URL, subject_prefix=prefix, stream=stream, channel="bench-live"
    )
    relay = OutboxRelay(SqlStorage(engine), publisher, config, SystemClock())
    while await relay.run_once():  # the backlog and the account openings, before measuring
        pass

    calls = math.ceil(events / events_per_call(per_call))
    expected = calls * events_per_call(per_call)
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    consumer = spawn.Process(target=consume, args=(NATS_URL, f"{prefix}.>", expected, theirs, 60))
    consumer.start()
    await asyncio.to_thread(ours.recv)  # subscribed

    stop = asyncio.Event()
    runner = asyncio.create_task(relay.run(stop))
    while not relay.listening:
        await asyncio.sleep(0.01)
    producer = spawn.Process(target=produce, args=(url, accounts, calls, per_call, interval))
    started = time.perf_counter()
    producer.start()
    await asyncio.to_thread(producer.join)
    rate = expected / (time.perf_counter() - started)
    latencies: list[float] = await asyncio.to_thread(ours.recv)
    stop.set()
    await runner
    await publisher.close()
    consumer.join(10)
    if len(latencies) != expected:
        print(f"  warning: consumer received {len(latencies)} of {expected} events")
    return latencies, rate


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- report ------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--ack-batch", type=int, default=500, help="raw publish: acks per batch")
    parser.add_argument("--batch-size", type=int, help="relay batch (RelayConfig default)")
    parser.add_argument("--concurrency", type=int, help="relay partitions in flight")
    parser.add_argument("--latency-events", type=int, default=6_000)
    parser.add_argument("--latency-journals-per-call", type=int, default=10)
    parser.add_argument("--latency-interval", type=float, default=0.02, help="seconds per call")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    streams = [f"BENCH_{tag}_{k}" for k in ("WARM", "RAW", "RAWCE", "BIN", "STRUCT", "LIVE")]
    warm, raw_stream, rawce_stream, bin_stream, struct_stream, live_stream = streams
    config = relay_config(args.batch_size, args.concurrency, listen=False)
    live_config = relay_config(args.batch_size, args.concurrency, listen=True)

    engine = fresh_pg(args.pg_url)
    try:
        ledger = LedgerService(SqlStorage(engine), default_policy(), SystemClock(), UuidGenerator())
        started = time.perf_counter()
        seed(ledger, args.events, "backlog")
        n = outbox_count(engine)
        print(
            f"seeded {n:,} outbox events in {time.perf_counter() - started:.1f}s "
            f"({JOURNALS_PER_CALL} journals per post_journals call: a journal.posted each"
            f" and {BALANCE_EVENTS_PER_CALL} balance.updated per call)"
        )
        with engine.connect() as conn:  # start the measurements from a quiet database
            conn.exec_driver_sql("CHECKPOINT")
        time.sleep(1)
        headers, body = typical_message(engine)
        size = wire_size(headers, body)
        print(
            f"typical event as NATS binary-mode CloudEvent: {size} bytes "
            f"({len(body)} body + {len(headers)} headers)"
        )
        same_size: tuple[dict[str, str], bytes] = ({}, b"x" * (size - 60))  # + Nats-Msg-Id

        batch = args.ack_batch
        asyncio.run(raw_publish(same_size, 2_000, batch, warm, f"w{tag}"))  # warm-up
        raw = asyncio.run(raw_publish(same_size, n, batch, raw_stream, f"r{tag}"))
        raw_ce = asyncio.run(raw_publish((headers, body), n, batch, rawce_stream, f"c{tag}"))
        print(f"(a) nats-py JetStream async publish, acks per {batch}, {n:,} msgs of {size} B:")
        print(f"      body + Nats-Msg-Id only         {raw:>9,.0f} msgs/s")
        print(f"      same ce- headers and body        {raw_ce:>9,.0f} msgs/s")
        print(
            f"(b) outbox relay PostgreSQL -> NATS, {n:,} events, "
            f"batch {config.batch_size}, concurrency {config.concurrency}:"
        )
        for mode, stream in zip(MODES, (bin_stream, struct_stream), strict=True):
            rate = asyncio.run(relay_throughput(engine, n, stream, f"{mode[0]}{tag}", mode, config))
            print(
                f"      {mode + ' mode':<16} {rate:>9,.0f} events/s   ratio to (a): "
                f"{rate / raw:.2f}   to (a) with ce- headers: {rate / raw_ce:.2f}"
            )

        latencies, rate = asyncio.run(
            relay_latency(
                engine,
                args.pg_url,
                args.latency_events,
                args.latency_journals_per_call,
                args.latency_interval,
                live_stream,
                f"l{tag}",
                live_config,
            )
        )
        if latencies:
            print(
                f"(c) commit-to-consumer latency (structured mode, relay woken by NOTIFY), "
                f"{len(latencies):,} events posted live by another process at "
                f"~{rate:,.0f} events/s:"
            )
            print(
                f"      p50 {percentile(latencies, 0.5) * 1000:.1f} ms   "
                f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms   "
                f"max {max(latencies) * 1000:.1f} ms   "
                f"mean {statistics.fmean(latencies) * 1000:.1f} ms"
            )
    finally:
        engine.dispose()
        asyncio.run(delete_streams(streams))
        drop_pg(args.pg_url)


if __name__ == "__main__":
    main()
