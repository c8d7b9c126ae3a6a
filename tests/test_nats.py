"""The NATS JetStream publisher and durable consumer against real servers.

The machine's NATS server (127.0.0.1:4222) is shared: every test uses its own stream and
subject prefix and deletes the stream afterwards. The fault test starts a private
nats-server process so that it can kill and restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from finfactory.adapters.nats import (
    NatsPublisher,
    NatsSubscriber,
    decode_token,
    encode_token,
    parse_subject,
    subject_filter,
    subject_for,
)
from finfactory.events.cloudevents import (
    from_message,
    to_binary,
    to_structured_json,
)
from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.errors import ConfigurationError, ValidationError

NATS_URL = "nats://127.0.0.1:4222"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


def envelope(
    seq: int,
    aggregate: str = "acc-1",
    *,
    tenant: str = "tenant-a",
    event_type: str = "journal.posted",
    payload: dict[str, Any] | None = None,
) -> EventEnvelope:
    return EventEnvelope(
        id=str(uuid.uuid4()),
        event_type=event_type,
        schema_version=1,
        payload=payload if payload is not None else {"n": seq, "memo": f"ü {aggregate}"},
        recorded_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        trace_id=uuid.uuid4().hex,
        tenant_id=tenant,
        source="ledger",
        aggregate_type="journal",
        aggregate_id=aggregate,
        aggregate_sequence=seq,
        correlation_id=f"corr-{seq}",
        causation_id=None if seq % 2 else f"cmd-{seq}",
        position=1000 + seq,
    )


class Names:
    """A unique stream name and subject prefix per test; the streams are deleted after."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"fft{tag}"
        self.stream = f"FFT_{tag.upper()}"
        self.created: list[str] = [self.stream]

    def another(self) -> tuple[str, str]:
        tag = uuid.uuid4().hex[:10]
        self.created.append(f"FFT_{tag.upper()}")
        return f"fft{tag}", f"FFT_{tag.upper()}"


async def _delete_streams(names: list[str]) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        for name in names:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jsm().delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
def names() -> Iterator[Names]:
    created = Names()
    yield created
    asyncio.run(_delete_streams(created.created))


async def stream_messages(nc: NatsClient, stream: str) -> list[Any]:
    jsm = nc.jsm()
    info = await jsm.stream_info(stream)
    return [
        await jsm.get_msg(stream, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
        if info.state.messages
    ]


# -- subjects ------------------------------------------------------------------------------


def test_subject_tokens_are_escaped_reversibly() -> None:
    assert encode_token("tenant-a") == "tenant-a"
    assert encode_token("acme.ph") == "acme%2Eph"
    assert encode_token("a b*>%\tü") == "a%20b%2A%3E%25%09%C3%BC"
    for tenant in ("acme.ph", "a b*>%", "ümlaut", "x..y", ">", "%2E", "tab\there"):
        token = encode_token(tenant)
        assert not set(token) & set(". *>\t"), token
        assert decode_token(token) == tenant
        subject = subject_for("finfactory", tenant, "card.authorization.approved")
        assert subject == f"finfactory.{token}.card.authorization.approved"
        assert parse_subject("finfactory", subject) == (tenant, "card.authorization.approved")
    assert subject_filter("ff") == "ff.*.>"
    assert subject_filter("ff", "acme.ph") == "ff.acme%2Eph.>"
    assert subject_filter("ff", event_type="journal.>") == "ff.*.journal.>"
    assert subject_filter("ff", "t", "journal.posted") == "ff.t.journal.posted"
    for bad_type in ("journal..posted", ".journal", "journal.", ""):
        with pytest.raises(ValidationError):
            subject_for("ff", "t", bad_type)
    for bad_token in ("%", "%2", "%G0", "%C0%A0", ""):
        with pytest.raises(ValidationError):
            decode_token(bad_token)


def test_bad_settings_are_configuration_errors() -> None:
    async def scenario() -> None:
        for kwargs in (
            {"subject_prefix": "ff.*"},
            {"subject_prefix": "ff..x"},
            {"subject_prefix": ""},
            {"stream": "A.B"},
            {"mode": "xml"},
            {"ack_timeout": 0},
        ):
            with pytest.raises(ConfigurationError):
                await NatsPublisher.connect(NATS_URL, **kwargs)
        with pytest.raises(ConfigurationError):
            await NatsSubscriber.connect(NATS_URL, durable="a.b", subjects="x.>", handler=print)

    run(scenario)


# -- stream check and creation -------------------------------------------------------------


def test_stream_is_checked_and_created_when_allowed(names: Names) -> None:
    async def scenario() -> None:
        with pytest.raises(ConfigurationError, match="does not exist"):
            await NatsPublisher.connect(
                NATS_URL, subject_prefix=names.prefix, stream=names.stream, create_stream=False
            )
        publisher = await NatsPublisher.connect(
            NATS_URL, subject_prefix=names.prefix, stream=names.stream
        )
        info = await publisher.client.jsm().stream_info(names.stream)
        assert info.config.subjects == [f"{names.prefix}.>"]
        assert info.config.duplicate_window == pytest.approx(120)
        await publisher.close()
        assert publisher.client.is_closed

        # It exists now: found without creating, and checked.
        again = await NatsPublisher.connect(
            NATS_URL, subject_prefix=names.prefix, stream=names.stream, create_stream=False
        )
        await again.close()
        with pytest.raises(ConfigurationError, match="shorter than the 600s"):
            await NatsPublisher.connect(
                NATS_URL,
                subject_prefix=names.prefix,
                stream=names.stream,
                duplicate_window=timedelta(minutes=10),
            )
        # A stream that does not capture the prefix is refused, not silently used.
        other_prefix, other_stream = names.another()
        nc = await nats.connect(NATS_URL)
        await nc.jsm().add_stream(
            name=other_stream, subjects=[f"{other_prefix}.only-this"], duplicate_window=300
        )
        with pytest.raises(ConfigurationError, match="do not cover"):
            await NatsPublisher.connect(NATS_URL, subject_prefix=other_prefix, stream=other_stream)
        # A wildcard that covers the prefix is accepted.
        await nc.jsm().update_stream(
            name=other_stream, subjects=[f"{other_prefix}.*.>"], duplicate_window=300
        )
        covered = await NatsPublisher.connect(
            NATS_URL, subject_prefix=f"{other_prefix}.x", stream=other_stream, create_stream=False
        )
        await covered.close()
        await nc.close()

    run(scenario)


# -- publishing ----------------------------------------------------------------------------


def test_binary_mode_subject_headers_dedup_and_round_trip(names: Names) -> None:
    events = [
        envelope(1, "acc-1"),
        envelope(2, "acc-1"),
        envelope(1, "acc-2", tenant="acme.ph *x>"),
        envelope(1, "acc-3", event_type="card.authorization.approved"),
    ]

    async def scenario() -> None:
        publisher = await NatsPublisher.connect(
            NATS_URL, subject_prefix=names.prefix, stream=names.stream, mode="binary"
        )
        assert publisher.channel == "nats"
        outcomes = await publisher.publish(events)
        assert [(o.event_id, o.ok) for o in outcomes] == [(e.id, True) for e in events]

        messages = await stream_messages(publisher.client, names.stream)
        assert len(messages) == len(events)
        for event, msg in zip(events, messages, strict=True):
            expected_subject = subject_for(names.prefix, event.tenant_id, event.event_type)
            assert msg.subject == expected_subject
            assert parse_subject(names.prefix, msg.subject) == (event.tenant_id, event.event_type)
            headers = dict(msg.headers)
            assert headers.pop("Nats-Msg-Id") == event.id
            headers.pop("Nats-Expected-Stream", None)
            ce_headers, body = to_binary(event, binding="nats")
            assert headers == ce_headers  # every attribute as ce-<name>, nothing else
            assert "content-type" not in {h.lower() for h in headers}
            assert msg.data == body
            assert json.loads(msg.data) == event.payload
            assert from_message(msg.headers, msg.data, "nats") == event
        assert messages[2].subject == f"{names.prefix}.acme%2Eph%20%2Ax%3E.journal.posted"

        # The relay re-publishes after a crash: JetStream drops them as duplicates.
        again = await publisher.publish(events)
        assert all(o.ok for o in again)
        info = await publisher.client.jsm().stream_info(names.stream)
        assert info.state.messages == len(events)
        assert await publisher.publish([]) == []
        await publisher.close()

    run(scenario)


def test_structured_mode_is_the_default(names: Names) -> None:
    events = [envelope(1, "acc-9"), envelope(2, "acc-9")]

    async def scenario() -> None:
        publisher = await NatsPublisher.connect(
            NATS_URL, subject_prefix=names.prefix, stream=names.stream, channel="nats-structured"
        )
        assert publisher.mode == "structured"
        assert publisher.channel == "nats-structured"
        assert all(o.ok for o in await publisher.publish(events))
        assert all(o.ok for o in await publisher.publish(events))
        messages = await stream_messages(publisher.client, names.stream)
        assert len(messages) == 2
        for event, msg in zip(events, messages, strict=True):
            assert msg.headers["content-type"] == "application/cloudevents+json"
            assert msg.headers["Nats-Msg-Id"] == event.id
            assert not any(h.startswith("ce-") for h in msg.headers)
            assert msg.data == to_structured_json(event)
            assert from_message(msg.headers, msg.data, "nats") == event
        await publisher.close()

    run(scenario)


def test_too_large_is_final_and_holds_back_its_aggregate(names: Names) -> None:
    big = {"blob": "x" * 6000}

    async def scenario() -> None:
        nc = await nats.connect(NATS_URL)
        jsm = nc.jsm()
        await jsm.add_stream(
            name=names.stream,
            subjects=[f"{names.prefix}.>"],
            duplicate_window=120,
            max_msg_size=4096,
        )
        publisher = await NatsPublisher.connect(
            NATS_URL, subject_prefix=names.prefix, stream=names.stream, create_stream=False
        )
        # Known limit: refused before sending; the aggregate's next event is not sent.
        batch = [
            envelope(1, "a"),
            envelope(2, "a", payload=big),
            envelope(3, "a"),
            envelope(1, "b"),
        ]
        outcomes = await publisher.publish(batch)
        assert [o.ok for o in outcomes] == [True, False, False, True]
        assert outcomes[1].retryable is False
        assert "exceeds" in (outcomes[1].error or "")
        assert outcomes[2].retryable is True
        assert "held back" in (outcomes[2].error or "")
        assert (await jsm.stream_info(names.stream)).state.messages == 2

        # The limit changed under a running publisher: JetStream refuses it (code 10054)
        # and that is reported as final too, not as a timeout.
        await jsm.update_stream(
            name=names.stream,
            subjects=[f"{names.prefix}.>"],
            duplicate_window=120,
            max_msg_size=1024,
        )
        middling = {"blob": "y" * 2000}
        started = time.monotonic()
        outcomes = await publisher.publish([envelope(1, "c", payload=middling), envelope(1, "d")])
        assert time.monotonic() - started < 2
        assert [o.ok for o in outcomes] == [False, True]
        assert outcomes[0].retryable is False
        assert "10054" in (outcomes[0].error or "")
        await publisher.close()
        await nc.close()

    run(scenario)


# -- durable consumer ----------------------------------------------------------------------


def handled_ok(calls: list[tuple[str, str]]) -> set[str]:
    return {event_id for kind, event_id in calls if kind == "ok"}


def test_durable_consumer_acks_after_the_handler_and_redelivers_after_a_nak(
    names: Names,
) -> None:
    a1, a2, a3, b1 = envelope(1, "A"), envelope(2, "A"), envelope(3, "A"), envelope(1, "B")
    stream_seq = {a1.id: 1, a2.id: 2, a3.id: 3, b1.id: 4}

    async def scenario() -> None:
        publisher = await NatsPublisher.connect(
            NATS_URL, subject_prefix=names.prefix, stream=names.stream
        )
        assert all(o.ok for o in await publisher.publish([a1, a2, a3, b1]))
        jsm = publisher.client.jsm()
        calls: list[tuple[str, str]] = []
        failed_at: list[float] = []
        redelivered_at: list[float] = []

        delivered: set[str] = set()

        async def handler(event: EventEnvelope) -> None:
            if event.id not in delivered:  # (a rare duplicate may come after the ack)
                delivered.add(event.id)
                info = await jsm.consumer_info(names.stream, "billing")
                # Not acked while the handler runs: the ack floor is below this message.
                assert info.ack_floor.stream_seq < stream_seq[event.id]
            if event.id == a2.id and not failed_at:
                failed_at.append(time.monotonic())
                calls.append(("fail", event.id))
                raise RuntimeError("handler's transaction rolled back")
            if event.id == a2.id:
                redelivered_at.append(time.monotonic())
            calls.append(("ok", event.id))

        subscriber = await NatsSubscriber.connect(
            NATS_URL,
            durable="billing",
            subjects=subject_filter(names.prefix),
            handler=handler,
            nak_delay=timedelta(milliseconds=300),
            fetch_timeout=0.3,
        )
        assert subscriber.stream == names.stream
        stop = asyncio.Event()
        task = asyncio.create_task(subscriber.run(stop))
        # Hang guard only. Redelivery normally follows the nak delay; if a nak is lost the
        # message still comes back after the consumer's ack wait (30 s).
        deadline = time.monotonic() + 45
        everything = {a1.id, a2.id, a3.id, b1.id}
        while not everything <= handled_ok(calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

        assert calls[:3] == [("ok", a1.id), ("fail", a2.id), ("ok", b1.id)]
        # a3 was held back behind a2 (naked without calling the handler), then both came
        # back and were handled. JetStream does not promise the order of redeliveries, and
        # delivery is at least once (a handled message may rarely come again, which is what
        # the inbox is for), so this asserts "each handled", not "each exactly once".
        assert handled_ok(calls[3:]) >= {a2.id, a3.id}
        assert all(kind == "ok" for kind, _ in calls[3:])
        assert subscriber.stats.handled == len(calls) - 1
        assert subscriber.stats.failed == 1
        info = await jsm.consumer_info(names.stream, "billing")
        assert info.ack_floor.stream_seq == 4
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
        # Redelivered no sooner than the nak delay asked for.
        assert redelivered_at[0] - failed_at[0] >= 0.25
        await subscriber.close()

        # Durable: a new subscriber with the same name gets nothing already acked, then
        # exactly the new events; a message that is no CloudEvent is terminated, not retried.
        seen: list[str] = []

        def sync_handler(event: EventEnvelope) -> None:  # runs in a worker thread
            seen.append(event.id)

        again = await NatsSubscriber.connect(
            NATS_URL,
            durable="billing",
            subjects=subject_filter(names.prefix),
            handler=sync_handler,
            fetch_timeout=0.3,
        )
        assert await again.run_once() == 0
        js = publisher.client.jetstream()
        await js.publish(f"{names.prefix}.tenant-a.junk", b"not a cloudevent")
        a4 = envelope(4, "A")
        assert all(o.ok for o in await publisher.publish([a4]))
        assert await again.run_once() == 1
        assert seen == [a4.id]
        assert again.stats.invalid == 1
        assert await again.run_once() == 0
        info = await jsm.consumer_info(names.stream, "billing")
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
        await again.close()
        await publisher.close()

    run(scenario)


# -- a private server we may kill ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(port: int, store: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [NATS_SERVER, "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {proc.returncode}") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_server_killed_and_restarted_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    port = _free_port()
    store = tmp_path / "jetstream"
    url = f"nats://127.0.0.1:{port}"
    server = _start_server(port, store)
    first = [envelope(i, f"agg-{i % 3}") for i in range(1, 11)]
    second = [envelope(i, f"agg-{i % 3}") for i in range(11, 21)]

    async def publish_until_ok(publisher: NatsPublisher, events: list[EventEnvelope]) -> int:
        attempts = 0
        deadline = time.monotonic() + 20
        while True:
            attempts += 1
            outcomes = await publisher.publish(events)
            if all(o.ok for o in outcomes):
                return attempts
            assert all(o.retryable for o in outcomes if not o.ok)
            assert time.monotonic() < deadline, outcomes
            await asyncio.sleep(0.2)

    async def scenario() -> None:
        nonlocal server
        publisher = await NatsPublisher.connect(
            url,
            subject_prefix="ff",
            stream="FAULTS",
            ack_timeout=1.0,
            connect_options={"reconnect_time_wait": 0.2},
        )
        assert all(o.ok for o in await publisher.publish(first))

        _stop(server)  # the broker dies
        outcomes = await publisher.publish(second)  # no exception escapes
        assert [o.ok for o in outcomes] == [False] * len(second)
        assert all(o.retryable for o in outcomes)
        assert [o.event_id for o in outcomes] == [e.id for e in second]

        server = _start_server(port, store)  # same port, same store
        assert await publish_until_ok(publisher, second) >= 1
        # The relay may re-send what it already had acked: dropped as duplicates.
        assert all(o.ok for o in await publisher.publish(first + second))

        nc = await nats.connect(url)
        messages = await stream_messages(nc, "FAULTS")
        ids = [m.headers["Nats-Msg-Id"] for m in messages]
        assert sorted(ids) == sorted(e.id for e in first + second)  # none lost, none twice
        decoded = [from_message(m.headers, m.data, "nats") for m in messages]
        assert {e.id: e for e in decoded} == {e.id: e for e in first + second}
        await nc.close()
        await publisher.close()

    try:
        run(scenario)
    finally:
        _stop(server)
