"""The outbox relay: at least once, in order per partition, nothing skipped; retries, dead
letters, crashes, several relays, LISTEN/NOTIFY, retention, stats and the command line."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.events.envelope import EventEnvelope
from finfactory.events.partitions import RELAY_PARTITIONS, partition_of
from finfactory.events.publishing import PublishOutcome
from finfactory.events.relay import OutboxRelay, RelayConfig
from finfactory.kernel.ports import Storage
from finfactory.testing import (
    InMemoryBroker,
    InMemoryPublisher,
    ManualClock,
    SimulatedCrash,
)

HANG = 30.0  # only to detect a hang; never asserted as a duration
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
KIND = "thing"
ROOT = Path(__file__).resolve().parent.parent

_T = TypeVar("_T")


def run(coro: Awaitable[_T]) -> _T:
    async def guarded() -> _T:
        return await asyncio.wait_for(coro, HANG)

    return asyncio.run(guarded())


class Events:
    """Makes outbox envelopes with unique ids and per-aggregate sequences (thread-safe)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._sequences: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def make(self, aggregate: str, *, at: datetime = T0) -> EventEnvelope:
        with self._lock:
            n = next(self._ids)
            self._sequences[aggregate] += 1
            sequence = self._sequences[aggregate]
        return EventEnvelope(
            id=f"00000000-0000-4000-8000-{n:012d}",
            event_type="test.happened",
            schema_version=1,
            payload={"n": n, "aggregate": aggregate, "sequence": sequence},
            recorded_at=at,
            trace_id=TRACE,
            tenant_id="tenant-a",
            source="test",
            aggregate_type=KIND,
            aggregate_id=aggregate,
            aggregate_sequence=sequence,
            correlation_id="corr",
            causation_id=None,
        )

    def write(
        self, storage: Storage, aggregates: Iterable[str], *, at: datetime = T0
    ) -> list[EventEnvelope]:
        """One transaction with one event per entry of ``aggregates``."""
        events = [self.make(a, at=at) for a in aggregates]
        with storage.transaction() as uow:
            uow.kernel.append_events(events)
        return events


def outbox(storage: Storage) -> list[EventEnvelope]:
    with storage.read() as uow:
        return uow.kernel.read_events(0, 1_000_000)


def partition(event: EventEnvelope) -> int:
    return partition_of(event.aggregate_type, event.aggregate_id)


def neighbours(aggregate: str, count: int) -> list[str]:
    """Other aggregate ids in the same relay partition as ``aggregate``."""
    home = partition_of(KIND, aggregate)
    found = (f"{aggregate}-n{i}" for i in itertools.count())
    return list(itertools.islice((a for a in found if partition_of(KIND, a) == home), count))


def config(**changes: object) -> RelayConfig:
    settings: dict[str, object] = {
        "batch_size": 7,
        "poll_interval": 0.05,
        "backoff_base": 0.005,
        "backoff_max": 0.02,
        "max_attempts": 3,
        "concurrency": 2,
        "listen": False,
    }
    settings.update(changes)
    return RelayConfig(**settings)  # type: ignore[arg-type]


def consume_once(broker: InMemoryBroker) -> list[EventEnvelope]:
    """What a consumer deduplicating by event id acts on, in delivery order."""
    seen: set[str] = set()
    effects: list[EventEnvelope] = []

    def handle(event: EventEnvelope) -> None:
        if event.id not in seen:
            seen.add(event.id)
            effects.append(event)

    broker.consumer().drain(handle)
    return effects


def assert_partition_order(events: Sequence[EventEnvelope]) -> None:
    """Within each partition, arrival order is position order (no duplicates allowed)."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    for e in events:
        by_partition[partition(e)].append(e.position or 0)
    for p, positions in by_partition.items():
        assert positions == sorted(set(positions)), f"partition {p} out of order"


def assert_aggregate_order(events: Sequence[EventEnvelope]) -> None:
    """Each aggregate's events arrive as 1, 2, 3... (first occurrences)."""
    by_aggregate: dict[str, list[int]] = defaultdict(list)
    for e in events:
        by_aggregate[e.aggregate_id].append(e.aggregate_sequence)
    for aggregate, sequences in by_aggregate.items():
        assert sequences == list(range(1, len(sequences) + 1)), aggregate


async def until(condition: Callable[[], bool], what: str, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


# -- every backend ----------------------------------------------------------------------------


def test_every_committed_event_is_published_once_in_position_order(storage: Storage) -> None:
    events = Events()
    aggregates = [f"agg-{i}" for i in range(20)]
    for k in range(10):
        events.write(storage, aggregates[k : k + 11])
    written = outbox(storage)
    clock = ManualClock(T0 + timedelta(minutes=5))
    broker = InMemoryBroker()
    relay = OutboxRelay(storage, InMemoryPublisher(broker), config(), clock)

    before = relay.stats()
    assert before.lag == len(written) == 110
    assert before.oldest_unpublished_age == timedelta(minutes=5)
    assert before.published == 0

    assert run(relay.run_once()) == 110
    arrived = broker.events()
    assert broker.duplicates() == {}
    assert [e.id for e in sorted(arrived, key=lambda e: e.position or 0)] == [e.id for e in written]
    assert_partition_order(arrived)
    assert_aggregate_order(arrived)
    by_id = {e.id: e for e in written}
    assert all(e == by_id[e.id] for e in arrived)  # envelopes arrive intact
    cursors = relay.cursors()
    assert len(cursors) == RELAY_PARTITIONS
    for p, last in cursors.items():
        assert last == max((e.position or 0 for e in written if partition(e) == p), default=0)

    after = relay.stats()
    assert (after.lag, after.oldest_unpublished_age, after.published) == (0, None, 110)
    assert after.rate > 0
    assert (after.dead_letters, after.waiting, after.failed_attempts) == (0, 0, 0)

    assert run(relay.run_once()) == 0
    more = events.write(storage, ["agg-3", "new-1", "agg-3"])
    assert relay.stats().lag == 3
    assert run(relay.run_once()) == 3
    assert sorted(e.id for e in broker.events()[-3:]) == sorted(e.id for e in more)
    assert_aggregate_order(broker.events())
    assert broker.duplicates() == {}


def test_broker_down_retries_with_backoff_and_catches_up(storage: Storage) -> None:
    events = Events()
    events.write(storage, ["warm-up"])
    broker = InMemoryBroker()
    stamps: list[float] = []

    class Timed(InMemoryPublisher):
        async def publish(self, batch: Sequence[EventEnvelope]) -> list[PublishOutcome]:
            if self.is_down:
                stamps.append(time.monotonic())
            return await super().publish(batch)

    publisher = Timed(broker)
    cfg = config(backoff_base=0.01, backoff_max=0.08, backoff_jitter=0.0, max_attempts=2)
    relay = OutboxRelay(storage, publisher, cfg)
    assert run(relay.run_once()) == 1  # the broker has been seen working

    publisher.down()
    events.write(storage, ["solo"])

    async def outage_then_recovery() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await until(lambda: len(stamps) >= 5, "five retries")
        stats = relay.stats()
        assert stats.published == 1
        assert stats.lag == 1
        assert stats.retrying == (partition_of(KIND, "solo"),)
        assert stats.dead_letters == 0  # an outage is not the event's fault
        publisher.up()
        await broker.wait_for(2, timeout=HANG)
        stop.set()
        await task

    run(outage_then_recovery())
    gaps = [b - a for a, b in itertools.pairwise(stamps[:5])]
    for gap, expected in zip(gaps, [0.01, 0.02, 0.04, 0.08], strict=True):
        assert gap >= expected * 0.9, (gaps, "backoff doubles up to backoff_max")
    assert relay.failed_attempts >= 5 > cfg.max_attempts
    assert relay.dead_letters() == []
    assert [e.aggregate_id for e in broker.events()] == ["warm-up", "solo"]
    assert relay.stats().lag == 0
    assert relay.stats().retrying == ()


def test_a_down_broker_costs_a_few_calls_per_round_not_one_per_partition(
    storage: Storage,
) -> None:
    events = Events()
    written = events.write(storage, [f"agg-{i}" for i in range(40)])
    assert len({partition(e) for e in written}) > 10
    broker = InMemoryBroker()
    publisher = InMemoryPublisher(broker)
    publisher.down()
    relay = OutboxRelay(storage, publisher, config(concurrency=2))
    assert run(relay.run_once()) == 0
    assert publisher.calls <= 2  # the workers' first batches, then the round ends
    publisher.up()

    async def recover() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await broker.wait_for(len(written), timeout=HANG)
        stop.set()
        await task

    run(recover())
    assert broker.duplicates() == {}
    assert relay.dead_letters() == []


def test_poison_event_is_dead_lettered_its_aggregate_waits_and_requeue_restores_order(
    storage: Storage,
) -> None:
    events = Events()
    shared = neighbours("victim", 2)  # same partition as the poisoned aggregate
    plan = ["victim", shared[0], "victim", "other-1", shared[1], "victim", "other-2", "victim"]
    written = events.write(storage, plan)
    poisoned = written[2]  # victim #2
    broker = InMemoryBroker()
    publisher = InMemoryPublisher(broker)
    publisher.poison(poisoned.id, error="message rejected: schema mismatch")
    relay = OutboxRelay(storage, publisher, config(max_attempts=3))

    async def until_dead() -> None:
        while relay.stats().dead_letters == 0:
            await relay.run_once()
            await asyncio.sleep(0.01)

    run(until_dead())
    positions = {e.id: e.position for e in outbox(storage)}
    letters = relay.dead_letters()
    dead = [x for x in letters if x.blocked_by is None]
    assert [x.event_id for x in dead] == [poisoned.id]
    assert dead[0].attempts == 3
    assert dead[0].reason == "message rejected: schema mismatch"
    waiting = [x for x in letters if x.blocked_by is not None]
    assert [x.event_id for x in waiting] == [written[5].id, written[7].id]
    assert {x.blocked_by for x in waiting} == {positions[poisoned.id]}
    assert all(x.attempts == 0 for x in waiting)
    assert all(x.resolved_at is None for x in letters)

    # everything else flowed, the neighbours in the same partition included
    effects = consume_once(broker)
    expected = {e.id for i, e in enumerate(written) if i not in (2, 5, 7)}
    assert {e.id for e in effects} == expected
    stats = relay.stats()
    assert (stats.lag, stats.dead_letters, stats.waiting) == (0, 1, 2)

    # a new event of the blocked aggregate waits too; others still flow
    late = events.write(storage, ["victim", "other-1"])
    run(relay.run_once())
    assert late[0].id not in {e.id for e in broker.events()}
    assert late[1].id in {e.id for e in broker.events()}
    assert relay.stats().waiting == 3

    # requeue while the broker still refuses: nothing moves, the refused one stays first
    assert run(relay.requeue(KIND, "victim")) == 0
    assert [x.event_id for x in relay.dead_letters() if x.blocked_by is None] == [poisoned.id]

    publisher.cure(poisoned.id)
    assert run(relay.requeue(KIND, "victim")) == 4
    assert relay.dead_letters() == []
    assert len(relay.dead_letters(include_resolved=True)) == 4
    victim = [e for e in consume_once(broker) if e.aggregate_id == "victim"]
    assert [e.aggregate_sequence for e in victim] == [1, 2, 3, 4, 5]

    # and the aggregate flows normally again
    newest = events.write(storage, ["victim"])
    assert run(relay.run_once()) == 1
    assert broker.events()[-1].id == newest[0].id
    stats = relay.stats()
    assert (stats.lag, stats.dead_letters, stats.waiting) == (0, 0, 0)


def test_non_retryable_refusal_is_dead_at_once_and_discard_skips_it(storage: Storage) -> None:
    events = Events()
    written = events.write(storage, ["big", "fine", "big", "fine"])
    broker = InMemoryBroker()
    publisher = InMemoryPublisher(broker)
    publisher.poison(written[0].id, error="message too large", retryable=False)
    relay = OutboxRelay(storage, publisher, config(max_attempts=50))

    assert run(relay.run_once()) == 2
    letters = relay.dead_letters()
    assert [(x.event_id, x.attempts, x.blocked_by is None) for x in letters] == [
        (written[0].id, 1, True),
        (written[2].id, 0, False),
    ]
    assert run(relay.discard(KIND, "big")) == 2
    assert relay.dead_letters() == []
    later = events.write(storage, ["big"])
    assert run(relay.run_once()) == 1
    assert [e.id for e in broker.events()] == [written[1].id, written[3].id, later[0].id]


def test_crash_between_publish_and_mark_publishes_again_and_consumer_sees_each_once(
    storage: Storage,
) -> None:
    events = Events()
    for k in range(6):
        events.write(storage, [f"agg-{(k + i) % 9}" for i in range(8)])
    written = outbox(storage)
    broker = InMemoryBroker()
    crashing = InMemoryPublisher(broker)
    crashing.crash_after_send()
    doomed = OutboxRelay(storage, crashing, config(concurrency=1))
    with pytest.raises(SimulatedCrash):
        run(doomed.run_once())
    sent_before_crash = {e.id for e in broker.events()}
    assert sent_before_crash, "the crashed batch reached the broker"
    assert all(last == 0 for last in doomed.cursors().values()), "nothing was marked"

    # a new relay process: the batch goes out again, then the rest
    relay = OutboxRelay(storage, InMemoryPublisher(broker), config())
    assert run(relay.run_once()) == len(written)
    duplicates = broker.duplicates()
    assert set(duplicates) == sent_before_crash  # the at-least-once path was taken
    assert set(duplicates.values()) == {2}
    effects = consume_once(broker)
    assert sorted(e.id for e in effects) == sorted(e.id for e in written)
    assert_aggregate_order(effects)
    assert relay.stats().lag == 0


def test_a_cancelled_relay_marks_nothing_and_releases_its_partition(storage: Storage) -> None:
    events = Events()
    events.write(storage, [f"agg-{i}" for i in range(30)])
    broker = InMemoryBroker()
    slow = OutboxRelay(storage, InMemoryPublisher(broker, latency=5.0), config())

    async def cancel_mid_publish() -> None:
        task = asyncio.create_task(slow.run_once())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_mid_publish())
    assert all(last == 0 for last in slow.cursors().values())
    relay = OutboxRelay(storage, InMemoryPublisher(broker), config())
    assert run(relay.run_once()) == 30
    assert broker.duplicates() == {}


def test_retention_purges_only_rows_every_channel_published_and_old(storage: Storage) -> None:
    events = Events()
    old_at, new_at = T0 - timedelta(days=30), T0
    aggregates = [f"agg-{i}" for i in range(24)]
    events.write(storage, aggregates, at=old_at)
    poisoned = events.write(storage, ["poisoned", "poisoned"], at=old_at)
    events.write(storage, aggregates[:8], at=new_at)
    clock = ManualClock(T0 + timedelta(hours=1))
    broker = InMemoryBroker()

    main = InMemoryPublisher(broker, channel="main")
    main.poison(poisoned[0].id, retryable=False)
    main_relay = OutboxRelay(storage, main, config(), clock)
    run(main_relay.run_once())
    assert len(main_relay.dead_letters()) == 2

    half = frozenset(range(0, RELAY_PARTITIONS, 2))
    side = OutboxRelay(storage, InMemoryPublisher(broker, channel="side"), config(), clock)
    side_half = OutboxRelay(
        storage, InMemoryPublisher(broker, channel="side"), config(partitions=half), clock
    )
    run(side_half.run_once())  # the side channel has published half the partitions

    everything = outbox(storage)
    assert run(main_relay.purge_published(timedelta(days=7))) > 0
    kept = {e.id for e in outbox(storage)}
    for e in everything:
        gone = e.id not in kept
        should_go = (
            e.recorded_at == old_at
            and partition(e) in half
            and e.aggregate_id != "poisoned"  # dead-lettered in "main"
        )
        assert gone == should_go, (e.aggregate_id, e.recorded_at, partition(e))

    # once the side channel caught up and the dead letters are resolved, the rest can go
    run(side.run_once())
    run(main_relay.discard(KIND, "poisoned"))
    run(main_relay.purge_published(timedelta(days=7)))
    assert all(e.recorded_at == new_at for e in outbox(storage))
    assert len(outbox(storage)) == 8
    assert run(main_relay.purge_published(timedelta(0))) == 8
    assert outbox(storage) == []
    assert run(main_relay.run_once()) == 0


def test_in_memory_consumer_reproduces_duplicates_reordering_and_redelivery() -> None:
    events = Events()
    broker = InMemoryBroker()
    batch = [events.make(f"agg-{i}") for i in range(6)]
    for e in batch:
        broker.store("bus.tenant-a", e)
    consumer = broker.consumer("bus.*")
    consumer.duplicate_next(1)
    consumer.reorder_next(3)
    first = consumer.fetch(3)
    assert [d.event.id for d in first] == [batch[2].id, batch[2].id, batch[1].id, batch[0].id]
    assert [d.attempt for d in first] == [1, 2, 1, 1]
    for d in first[:3]:
        d.ack()
    assert consumer.redeliver_unacked() == 1  # the ack wait of batch[0] expired
    second = consumer.fetch(10)
    assert [(d.event.id, d.attempt) for d in second] == [(batch[0].id, 2)] + [
        (e.id, 1) for e in batch[3:]
    ]
    second[1].nak()
    for d in second:
        d.ack()
    assert [(d.event.id, d.attempt) for d in consumer.fetch()] == [(batch[3].id, 2)]
    assert broker.consumer("other.>").fetch() == []


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_three_relays_share_the_work_without_publishing_anything_twice(
    pg_clean: sa.Engine,
) -> None:
    storage = SqlStorage(pg_clean)
    events = Events()
    broker = InMemoryBroker()
    active: set[int] = set()
    overlaps: list[set[int]] = []
    in_flight = [0, 0]  # now, most at once

    class Watched(InMemoryPublisher):
        async def publish(self, batch: Sequence[EventEnvelope]) -> list[PublishOutcome]:
            parts = {partition(e) for e in batch}
            if parts & active:
                overlaps.append(parts & active)
            active.update(parts)
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
            try:
                return await super().publish(batch)
            finally:
                in_flight[0] -= 1
                active.difference_update(parts)

    writers, rounds = 6, 25

    def write(n: int) -> None:
        mine = [f"w{n}-agg-{i}" for i in range(8)]
        for k in range(rounds):
            chosen = [mine[(k + j) % len(mine)] for j in range(1 + k % 3)]
            if k % 4:
                events.write(storage, chosen)
                continue
            with pg_clean.connect() as conn, conn.begin():  # a transaction that lingers
                with SqlStorage.join(conn) as uow:
                    uow.kernel.append_events([events.make(a) for a in chosen])
                time.sleep(0.003)

    total = sum(1 + k % 3 for k in range(rounds)) * writers

    async def scenario() -> list[OutboxRelay]:
        stop = asyncio.Event()
        relays = [
            OutboxRelay(
                storage,
                Watched(broker, channel="bus", latency=0.002),
                config(batch_size=10, poll_interval=0.01, concurrency=2),
            )
            for _ in range(3)
        ]
        tasks = [asyncio.create_task(r.run(stop)) for r in relays]
        await asyncio.gather(*(asyncio.to_thread(write, n) for n in range(writers)))
        await broker.wait_for(total, timeout=HANG)
        stop.set()
        await asyncio.gather(*tasks)
        return relays

    relays = run(scenario())
    assert overlaps == [], "two relays published the same partition at the same time"
    assert in_flight[1] >= 2, "the relays never worked at the same time"
    assert broker.duplicates() == {}
    arrived = broker.events()
    assert len(arrived) == total == len(outbox(storage))
    assert_partition_order(arrived)
    assert_aggregate_order(arrived)
    assert sum(r.published for r in relays) == total
    assert relays[0].stats().lag == 0


@pytest.mark.postgres
def test_an_event_committed_late_by_a_slow_transaction_is_still_published(
    pg_clean: sa.Engine,
) -> None:
    storage = SqlStorage(pg_clean)
    events = Events()
    events.write(storage, ["early"])
    broker = InMemoryBroker()
    relay = OutboxRelay(storage, InMemoryPublisher(broker), config())
    assert run(relay.run_once()) == 1

    fast_done = threading.Event()

    def fast_writer() -> None:
        events.write(storage, ["fast-1", "fast-2"])
        fast_done.set()

    with pg_clean.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            uow.kernel.append_events([events.make("slow")])
        fast = threading.Thread(target=fast_writer, daemon=True)
        fast.start()
        assert not fast_done.wait(0.3)  # it queues behind the slow transaction
        assert run(relay.run_once()) == 0  # nothing committed after "early" yet
        tx.commit()
    fast.join(HANG)
    assert not fast.is_alive()
    assert run(relay.run_once()) == 3
    assert sorted(e.aggregate_id for e in broker.events()) == ["early", "fast-1", "fast-2", "slow"]
    positions = {e.aggregate_id: e.position or 0 for e in outbox(storage)}
    assert positions["slow"] < positions["fast-1"] < positions["fast-2"]  # commit order
    assert broker.duplicates() == {}
    assert relay.stats().lag == 0


@pytest.mark.postgres
def test_listen_notify_wakes_the_relay_long_before_the_next_poll(pg_clean: sa.Engine) -> None:
    storage = SqlStorage(pg_clean)
    events = Events()
    broker = InMemoryBroker()
    relay = OutboxRelay(storage, InMemoryPublisher(broker), config(poll_interval=30.0, listen=True))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await until(lambda: relay.listening, "LISTEN")
        await asyncio.sleep(0.2)  # the relay is idle, its next poll 30 s away
        await asyncio.to_thread(events.write, storage, ["ping"])
        await broker.wait_for(1, timeout=10.0)
        stop.set()
        await task

    run(scenario())
    assert [e.aggregate_id for e in broker.events()] == ["ping"]


# -- the command line ---------------------------------------------------------------------


def _sqlite_file(path: Path) -> tuple[str, SqlStorage, sa.Engine]:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    migrate(engine)
    return url, SqlStorage(engine), engine


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "finfactory.events.cli", *args]


def _ids(stdout: str) -> list[str]:
    out = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line)["id"])
            except ValueError:
                raise AssertionError(repr(line)) from None
    return out


def test_cli_once_publishes_the_backlog_and_purges(tmp_path: Path) -> None:
    url, storage, engine = _sqlite_file(tmp_path / "once.db")
    events = Events()
    month_ago = datetime.now(UTC) - timedelta(days=30)
    for k in range(5):
        events.write(storage, [f"agg-{(k + i) % 7}" for i in range(10)], at=month_ago)
    written = [e.id for e in outbox(storage)]
    args = ["--database-url", url, "--broker", "memory://", "--batch-size", "8"]
    done = subprocess.run(
        _cli(*args, "--once", "--purge-older-than", "7d"),
        capture_output=True,
        text=True,
        timeout=HANG,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(_ids(done.stdout)) == sorted(written)
    assert "published 50, remaining 0" in done.stderr
    assert outbox(storage) == []  # published by the only channel and older than 7 days

    again = subprocess.run(
        _cli(*args, "--once"), capture_output=True, text=True, timeout=HANG, cwd=ROOT, check=False
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    engine.dispose()


def test_cli_stops_cleanly_on_sigterm_and_a_restart_finishes(tmp_path: Path) -> None:
    url, storage, engine = _sqlite_file(tmp_path / "term.db")
    events = Events()
    for k in range(30):
        events.write(storage, [f"agg-{(k + i) % 40}" for i in range(100)])
    written = outbox(storage)
    args = ["--database-url", url, "--batch-size", "20", "--poll-interval", "0.05"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            _cli(*args, "--broker", "memory://?delay=0.02"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
        )
    watchdog = threading.Timer(HANG, proc.kill)  # a hang guard
    watchdog.start()
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while len(lines) < 200:
            line = proc.stdout.readline()
            assert line, "the relay ended before it was stopped"
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()  # through the same buffer as readline, up to the exit
        proc.wait()
    finally:
        watchdog.cancel()
    errors = log.read_text()
    assert proc.returncode == 0, errors
    assert "SIGTERM: stopping" in errors
    first = _ids("".join(lines) + rest)
    assert len(first) == len(set(first))
    assert len(first) < len(written), "stopped mid-run"

    # every cursor stands exactly at what the broker acknowledged: nothing half-marked
    cursors = OutboxRelay(storage, InMemoryPublisher(InMemoryBroker())).cursors()
    marked = {e.id for e in written if (e.position or 0) <= cursors[partition(e)]}
    assert marked == set(first)

    again = subprocess.run(
        _cli(*args, "--broker", "memory://", "--once"),
        capture_output=True,
        text=True,
        timeout=HANG,
        cwd=ROOT,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    second = _ids(again.stdout)
    assert set(first).isdisjoint(second)
    assert sorted(first + second) == sorted(e.id for e in written)
    engine.dispose()
