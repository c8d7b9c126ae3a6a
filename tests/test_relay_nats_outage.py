"""Issue 3, end to end: NATS is killed while the outbox relay runs, then started again, and
every event still arrives in the stream exactly once, in order per aggregate.

The test starts its own nats-server (JetStream, a temporary store directory, a free port)
so it can SIGKILL it and start it again on the same port and store. Ledger postings keep
committing events from a thread the whole time. The kill hits a batch in flight: the
publisher talks to the server through a small TCP relay that drops the server's replies for
that batch, so the server has stored it but the relay never hears so and must publish it
again after the restart; JetStream's de-duplication by ``Nats-Msg-Id`` keeps it once.

Nothing here relies on a sleep being long enough: every wait polls for a condition and has
a generous limit that only detects a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import nats
import pytest
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.nats import NatsPublisher
from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.events.cloudevents import from_message
from finfactory.events.envelope import EventEnvelope
from finfactory.events.publishing import PublishOutcome
from finfactory.events.relay import OutboxRelay, RelayConfig, RelayStats
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import SystemClock, UuidGenerator
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from tests.conftest import context

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
HANG = 30.0  # only to detect a hang; never asserted as a duration
CTX = context("outage-tenant")

pytestmark = pytest.mark.skipif(
    not Path(NATS_SERVER).exists(), reason="nats-server is not installed"
)

_T = TypeVar("_T")
AggregateKey = tuple[str, str, str]  # tenant, aggregate type, aggregate id


# -- a private nats-server we may kill -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateNats:
    """One nats-server process with JetStream on ``port``, its store in ``store``."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.proc = proc
        deadline = time.monotonic() + HANG
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start listening") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no flush, connections simply drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=HANG)


@pytest.fixture
def private_nats() -> Iterator[PrivateNats]:
    store = Path(tempfile.mkdtemp(prefix="ff-nats-outage-"))
    server = PrivateNats(store / "jetstream")
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(store, ignore_errors=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class AckEater:
    """A TCP relay between the publisher and the server. While ``swallow`` is set it drops
    everything the server sends (JetStream's acks), the way a dying broker's last replies
    get lost, while what the client sends still goes through."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.swallow = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def listen(self) -> None:
        """Accept connections (again, on the same port after :meth:`stop_listening`)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections while the server is down, as the server itself would."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the server is down: the client will try again
            await _close(writer)
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, downstream=False),
            self._pump(up_reader, writer, downstream=True),
        )
        self._writers.difference_update((writer, up_writer))

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                if downstream and self.swallow:
                    continue
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            await _close(dst)

    async def close(self) -> None:
        await self.stop_listening()
        for writer in list(self._writers):
            await _close(writer)


class KillMidBatch:
    """The relay's publisher: a :class:`NatsPublisher`, except that once armed it takes the
    next batch of at least five events, lets the server store all of it while its acks are
    lost on the way back, and SIGKILLs the server. The relay cannot know the batch is in
    the stream, so it must publish it again after the restart (JetStream drops those as
    duplicates by ``Nats-Msg-Id``)."""

    def __init__(self, inner: NatsPublisher, server: PrivateNats, proxy: AckEater) -> None:
        self.inner = inner
        self.server = server
        self.proxy = proxy
        self.armed = False
        self.killed = asyncio.Event()
        self.batch: list[EventEnvelope] = []
        self.outcomes: list[PublishOutcome] = []
        self.stream_seqs: range = range(0)  # where the server stored the batch
        self._open = asyncio.Event()  # cleared while the kill is being arranged
        self._open.set()
        self._in_flight = 0

    @property
    def channel(self) -> str:
        return self.inner.channel

    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        if self.armed and self._open.is_set() and len(events) >= 5:
            self.armed = False
            self._open.clear()
            try:
                return await self._kill_during(events)
            finally:
                self._open.set()
        await self._open.wait()
        self._in_flight += 1
        try:
            return await self.inner.publish(events)
        finally:
            self._in_flight -= 1

    async def _kill_during(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        await until(lambda: self._in_flight == 0, "other publishes to finish")
        nc = await nats.connect(self.server.url, allow_reconnect=False)  # not via the proxy
        try:
            jsm = nc.jsm()
            before = (await jsm.stream_info(self.inner.stream)).state.last_seq
            self.proxy.swallow = True
            task = asyncio.ensure_future(self.inner.publish(events))
            deadline = time.monotonic() + HANG
            while (await jsm.stream_info(self.inner.stream)).state.last_seq < before + len(events):
                assert time.monotonic() < deadline, "the batch was never stored"
                await asyncio.sleep(0.001)
        finally:
            await nc.close()
        assert not task.done()  # no ack came back
        self.server.kill()
        await self.proxy.stop_listening()
        self.killed.set()
        await until(lambda: not self.inner.client.is_connected, "the client to notice")
        self.proxy.swallow = False
        self.batch = list(events)
        self.stream_seqs = range(before + 1, before + len(events) + 1)
        self.outcomes = await task
        return self.outcomes

    async def close(self) -> None:
        await self.inner.close()


# -- writing events ------------------------------------------------------------------------


class Poster:
    """Posts batches of ledger journals between a few accounts: a journal.posted per journal
    and a balance.updated per account the batch touches."""

    def __init__(self, storage: Storage, accounts: int = 6) -> None:
        self.ledger = LedgerService(storage, default_policy(), SystemClock(), UuidGenerator())
        self.accounts = [
            self.ledger.open_account(
                CTX, c.OpenAccount(code=f"acc-{i}", currency="PHP", type="asset")
            ).id
            for i in range(accounts)
        ]
        self.journals = 0
        self.lock = threading.Lock()

    def post(self, count: int) -> None:
        """One transaction with ``count`` journals."""
        with self.lock:
            first, self.journals = self.journals, self.journals + count
        amount = Money("1.25", "PHP")
        journals = []
        for i in range(first, first + count):
            debit = self.accounts[i % len(self.accounts)]
            credit = self.accounts[(i * 5 + 1) % len(self.accounts)]
            if credit == debit:
                credit = self.accounts[(i + 1) % len(self.accounts)]
            journals.append(
                c.PostJournal(
                    reference=f"outage-{i}",
                    legs=[
                        c.Leg(account_id=debit, direction="debit", amount=amount),
                        c.Leg(account_id=credit, direction="credit", amount=amount),
                    ],
                )
            )
        self.ledger.post_journals(CTX, c.PostJournals(journals=journals))


class Writer:
    """A thread that keeps posting small batches until stopped; counts the batches."""

    def __init__(self, poster: Poster) -> None:
        self.poster = poster
        self.batches = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outage-writer", daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.poster.post(3)
                self.batches += 1
                self._stop.wait(0.01)
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(HANG)
        assert not self._thread.is_alive(), "the writer thread hangs"
        assert self.errors == [], self.errors


# -- helpers -------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], what: str, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


async def until_stats(
    relay: OutboxRelay, condition: Callable[[RelayStats], bool], what: str
) -> RelayStats:
    deadline = time.monotonic() + HANG
    while True:
        stats = await asyncio.to_thread(relay.stats)
        if condition(stats):
            return stats
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {stats}"
        await asyncio.sleep(0.05)


def run(coro_fn: Callable[[], Awaitable[_T]], timeout: float) -> _T:
    async def guarded() -> _T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(guarded())


def outbox(storage: Storage) -> list[EventEnvelope]:
    with storage.read() as uow:
        return uow.kernel.read_events(0, 1_000_000)


async def read_stream(url: str, stream: str) -> list[tuple[int, EventEnvelope]]:
    """Every message of ``stream`` in stream order as (stream sequence, envelope decoded
    from the CloudEvent); the ``Nats-Msg-Id`` header is checked to be the event id."""
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=5)
    try:
        jsm = nc.jsm()
        info = await jsm.stream_info(stream)
        state = info.state
        assert not state.num_deleted  # sequences are contiguous: nothing was removed
        events: list[tuple[int, EventEnvelope]] = []
        if not state.messages:
            return events
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await jsm.get_msg(stream, seq)
            headers = msg.headers or {}
            event = from_message(headers, msg.data or b"", "nats")
            assert headers.get("Nats-Msg-Id") == event.id
            events.append((seq, event))
        assert len(events) == state.messages
        return events
    finally:
        await nc.close()


def key(event: EventEnvelope) -> AggregateKey:
    return (event.tenant_id, event.aggregate_type, event.aggregate_id)


# -- the scenario --------------------------------------------------------------------------


def outage_scenario(
    storage: Storage, server: PrivateNats, *, listen: bool, concurrency: int
) -> None:
    poster = Poster(storage)
    # A backlog of 10 x (10 journals + 6 accounts' balances) = 160 ledger events (+ 6 opened).
    for _ in range(10):
        poster.post(10)
    backlog = len(outbox(storage))
    assert backlog >= 166

    tag = uuid.uuid4().hex[:10]
    prefix, stream = f"ffout{tag}", f"FFOUT_{tag.upper()}"
    server.start()
    writer = Writer(poster)

    async def scenario() -> tuple[OutboxRelay, KillMidBatch, RelayStats, int, int]:
        proxy = AckEater(server.port)
        await proxy.listen()
        publisher = await NatsPublisher.connect(
            proxy.url,
            subject_prefix=prefix,
            stream=stream,
            channel=f"nats-{tag}",
            ack_timeout=1.0,
            connect_options={"reconnect_time_wait": 0.1, "connect_timeout": 1},
        )
        killer = KillMidBatch(publisher, server, proxy)
        relay = OutboxRelay(
            storage,
            killer,
            RelayConfig(
                batch_size=10,
                poll_interval=0.05,
                backoff_base=0.01,
                backoff_max=0.25,
                concurrency=concurrency,
                listen=listen,
            ),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            writer.start()
            # Mid-run: some of the backlog is out, the writer is adding more.
            await until(lambda: relay.published >= 40 and writer.batches >= 1, "a running relay")
            killer.armed = True
            await asyncio.wait_for(killer.killed.wait(), HANG)
            killed_at_published = relay.published
            failed_before = relay.failed_attempts
            batches_at_kill = writer.batches
            # The relay keeps failing (backing off) while events keep committing.
            await until(lambda: relay.failed_attempts >= failed_before + 30, "failed publishes")
            await until(lambda: writer.batches >= batches_at_kill + 10, "posts during the outage")
            await asyncio.to_thread(server.start)  # same port, same store directory
            await proxy.listen()
            await until(lambda: publisher.client.is_connected, "the client to reconnect")
            batches_at_restart = writer.batches
            await until(lambda: writer.batches >= batches_at_restart + 3, "posts after restart")
            await asyncio.to_thread(writer.stop)
            stats = await until_stats(relay, lambda s: s.lag == 0, "the relay to catch up")
        finally:
            stop.set()
            await task
            await publisher.close()
            await proxy.close()
        return relay, killer, stats, killed_at_published, batches_at_kill

    try:
        relay, killer, stats, killed_at_published, batches_at_kill = run(scenario, 3 * HANG)
        stored = run(lambda: read_stream(server.url, stream), HANG)
    finally:
        with contextlib.suppress(AssertionError):
            writer.stop()

    events = outbox(storage)
    arrived = [e for _, e in stored]
    # Batches of 3 journals: 3 journal.posted and at least 2 balance.updated each.
    assert len(events) >= backlog + 5 * (1 + 10 + 3)
    # The outage really happened in the middle of the run, with a batch in flight whose
    # events the server stored but never acknowledged, so the relay published them again.
    assert 0 < killed_at_published < backlog
    assert batches_at_kill > 0
    assert relay.failed_attempts >= 30
    assert len(killer.batch) >= 5
    assert [o.ok for o in killer.outcomes] == [False] * len(killer.batch)
    seq_of = {e.id: seq for seq, e in stored}
    assert [seq_of[e.id] for e in killer.batch] == list(killer.stream_seqs)

    # Nothing dead-lettered, nothing waiting, nothing left behind.
    assert relay.dead_lettered == 0
    assert relay.dead_letters(include_resolved=True) == []
    assert (stats.lag, stats.dead_letters, stats.waiting) == (0, 0, 0)

    # Every outbox event is in the stream exactly once (JetStream dropped re-publishes by
    # Nats-Msg-Id), and nothing else is.
    counts = Counter(e.id for e in arrived)
    assert [i for i, n in counts.items() if n > 1] == []
    assert set(counts) == {e.id for e in events}
    assert len(arrived) == len(events)
    assert {e.id: e for e in arrived} == {e.id: e for e in events}

    # Per aggregate, stream order is aggregate_sequence order (and nothing is missing).
    in_stream: dict[AggregateKey, list[int]] = defaultdict(list)
    in_outbox: dict[AggregateKey, list[int]] = defaultdict(list)
    for e in arrived:
        in_stream[key(e)].append(e.aggregate_sequence)
    for e in events:
        in_outbox[key(e)].append(e.aggregate_sequence)
    out_of_order = {k: seqs for k, seqs in in_stream.items() if seqs != sorted(in_outbox[k])}
    assert out_of_order == {}
    accounts = {k: seqs for k, seqs in in_stream.items() if k[1] == "ledger_account"}
    assert len(accounts) == len(poster.accounts)
    for seqs in accounts.values():  # opened at 1, one balance update per posting after
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) > 30


@pytest.mark.postgres
def test_nats_killed_mid_run_and_restarted_every_event_arrives_once_in_order_postgres(
    pg_clean: sa.Engine, private_nats: PrivateNats
) -> None:
    outage_scenario(SqlStorage(pg_clean), private_nats, listen=True, concurrency=4)


def test_nats_killed_mid_run_and_restarted_every_event_arrives_once_in_order_sqlite(
    sqlite_engine: sa.Engine, private_nats: PrivateNats
) -> None:
    outage_scenario(SqlStorage(sqlite_engine), private_nats, listen=False, concurrency=2)
