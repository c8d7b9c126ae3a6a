"""The outbox relay: hands committed outbox events to a broker, at least once, in order.

How it works (see also :mod:`finfactory.events.relay_store`):

* Every outbox row belongs to one of 64 partitions (:func:`partition_of` its aggregate). A
  relay leases one partition at a time, reads the events after that partition's cursor for
  its channel (``position > last_position ORDER BY position``), awaits the publisher, then
  moves the cursor to the last event it is done with *in order*, and releases. Positions
  follow commit order, so the cursor never passes an event a slower transaction commits
  later; a crash between publishing and moving the cursor publishes the batch again
  (consumers deduplicate by event id).
* An event the publisher refuses stops the cursor in front of it; the partition is retried
  with exponential backoff (``backoff_base`` doubling up to ``backoff_max``, with jitter).
  Other partitions flow meanwhile.
* After ``max_attempts`` counted failures, or at once for a non-retryable outcome, the
  event becomes a dead letter (``ff_relay_dead_letters``, ``blocked_by`` NULL, with the
  reason) and the cursor moves past it. Later events of the same aggregate are not
  published: they are recorded as waiting (``blocked_by`` = the dead letter's position)
  until :meth:`OutboxRelay.requeue` publishes them all in order or
  :meth:`OutboxRelay.discard` gives up on them.
* A failure counts toward ``max_attempts`` only while the broker demonstrably accepts other
  events (some event of the same call was acknowledged, or the relay saw an
  acknowledgement since that event's previous failure). When everything fails the broker
  is down, not the event: the relay retries with backoff and dead-letters nothing, however
  long the outage. Attempt counts live in the relay process (a restart starts them again);
  the final count is stored with the dead letter.
* A batch that fails without a single acknowledgement ends the round (:meth:`run_once`
  returns; :meth:`run` comes back after ``poll_interval`` or the earliest backoff), so a
  down broker costs a few publish calls per round rather than one per partition.
* On PostgreSQL the relay LISTENs on ``ff_outbox`` (the kernel NOTIFYs on every commit that
  wrote events) and also polls every ``poll_interval`` seconds as a backstop.

Logs go to the ``finfactory.relay`` logger: start and stop, catch-up progress, failed
publishes, dead letters, requeue/discard and purges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.events.partitions import RELAY_PARTITIONS
from finfactory.events.publishing import Publisher, PublishOutcome
from finfactory.events.relay_store import (
    AggregateKey,
    AggregateLease,
    DeadLetter,
    PartitionBatch,
    PartitionLease,
    RelayStore,
    relay_store_for,
)
from finfactory.kernel.clock import Clock, SystemClock
from finfactory.kernel.errors import ConcurrencyError
from finfactory.kernel.ports import Storage

__all__ = ["DeadLetter", "OutboxRelay", "RelayConfig", "RelayStats"]

log = logging.getLogger("finfactory.relay")

PURGE_CHUNK = 5_000

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _partition_set(value: Iterable[int] | None) -> frozenset[int] | None:
    return None if value is None else frozenset(value)


def _valid_partitions(_instance: object, _attribute: object, value: frozenset[int] | None) -> None:
    if value is None:
        return
    if not value:
        raise ValueError("partitions must not be empty (None means all)")
    wrong = sorted(p for p in value if not 0 <= p < RELAY_PARTITIONS)
    if wrong:
        raise ValueError(f"partitions must be in 0..{RELAY_PARTITIONS - 1}, got {wrong}")


def _positive(_instance: object, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class RelayConfig:
    """How a relay works. Times are in seconds unless typed ``timedelta``.

    ``partitions`` restricts the relay to some of the 64 partitions (None: all; relays
    sharing a database share the partitions anyway, this only pins work). ``concurrency``
    is how many partitions one relay publishes at a time. ``retention`` makes :meth:`run`
    purge rows every channel has published once they are older than that, every
    ``retention_interval``.
    """

    batch_size: int = attrs.field(default=500, validator=_positive)
    poll_interval: float = attrs.field(default=1.0, validator=_positive)
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_max: float = attrs.field(default=30.0, validator=_positive)
    backoff_jitter: float = attrs.field(
        default=0.2, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    max_attempts: int = attrs.field(default=10, validator=_positive)
    partitions: frozenset[int] | None = attrs.field(
        default=None, converter=_partition_set, validator=_valid_partitions
    )
    concurrency: int = attrs.field(default=4, validator=_positive)
    listen: bool = True
    retention: timedelta | None = None
    retention_interval: float = attrs.field(default=3600.0, validator=_positive)
    progress_interval: float = attrs.field(default=10.0, validator=_positive)
    rate_window: float = attrs.field(default=60.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must be >= backoff_base")
        if self.retention is not None and self.retention < timedelta(0):
            raise ValueError("retention must not be negative")


@attrs.frozen
class RelayStats:
    """What :meth:`OutboxRelay.stats` reports for the relay's channel.

    ``lag`` counts committed events the channel has not dealt with yet (all relays of the
    channel together), ``oldest_unpublished_age`` is how long ago the oldest of them was
    recorded. ``published``, ``failed_attempts`` and ``rate`` (events/s over the last
    ``rate_window`` seconds) are this relay's since it was created. ``dead_letters`` and
    ``waiting`` count unresolved rows of the channel in ``ff_relay_dead_letters``.
    ``retrying`` lists the partitions whose last publish failed (backing off).
    """

    channel: str
    lag: int
    oldest_unpublished_age: timedelta | None
    published: int
    rate: float
    failed_attempts: int
    dead_letters: int
    waiting: int
    retrying: tuple[int, ...]


@attrs.define
class _Tries:
    count: int = 0  # failed publishes of the event
    strikes: int = 0  # failures that count toward max_attempts
    ack_mark: int = 0  # acknowledgements the relay had seen at the last failure


@attrs.define
class _Backoff:
    failures: int
    until: float


@attrs.define
class _Step:
    """The outcome of one batch: where the cursor goes and what it records on the way."""

    position: int
    letters: list[DeadLetter] = attrs.Factory(list)
    dead: list[DeadLetter] = attrs.Factory(list)
    published: int = 0
    failure: tuple[EventEnvelope, PublishOutcome, _Tries] | None = None


def _key(event: EventEnvelope) -> AggregateKey:
    return (event.aggregate_type, event.aggregate_id)


def _position(event: EventEnvelope) -> int:
    if event.position is None:
        raise ValueError(f"event {event.id} has no outbox position")
    return event.position


async def _settle(task: asyncio.Future[Any]) -> None:
    """Wait for ``task`` to end, ignoring cancellation of the waiter."""
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as lost


async def _in_thread(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run blocking store code in a worker thread. Once started it runs to its end even if
    the caller is cancelled meanwhile; the cancellation is delivered afterwards."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await _settle(task)
        raise


class _Lease(Protocol):
    def abandon(self) -> None: ...


_L = TypeVar("_L", bound=_Lease)


async def _lease_in_thread(
    fn: Callable[_P, _L | None], *args: _P.args, **kwargs: _P.kwargs
) -> _L | None:
    """:func:`_in_thread` for calls that return a lease: if the caller is cancelled while
    the lease is being taken, it is released again."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await _settle(task)
        if not task.cancelled() and task.exception() is None:
            lease = task.result()
            if lease is not None:
                await _settle(asyncio.ensure_future(asyncio.to_thread(lease.abandon)))
        raise


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class OutboxRelay:
    """Publishes the outbox to one :class:`Publisher`; progress is kept per
    ``publisher.channel``. Any number of relays may share a PostgreSQL database."""

    def __init__(
        self,
        storage: Storage,
        publisher: Publisher,
        config: RelayConfig | None = None,
        clock: Clock | None = None,
        *,
        store: RelayStore | None = None,
    ) -> None:
        self.storage = storage
        self.publisher = publisher
        self.config = config or RelayConfig()
        self.clock = clock or SystemClock()
        self.store = store or relay_store_for(storage)
        self.channel = publisher.channel
        self.partitions: tuple[int, ...] = tuple(
            sorted(self.config.partitions or range(RELAY_PARTITIONS))
        )
        self.listening = False
        self.published = 0
        self.failed_attempts = 0
        self.dead_lettered = 0
        self._prepared = False
        self._tries: dict[str, _Tries] = {}
        self._backoff: dict[int, _Backoff] = {}
        self._acks = 0
        self._history: deque[tuple[float, int]] = deque()
        self._created = time.monotonic()
        self._last_progress = 0.0
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not a secret

    # -- one pass -------------------------------------------------------------------------
    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Publish what can be published now, in every partition; return how many events
        were published. A partition backing off after a failure is skipped. With ``stop``,
        no new batch starts once it is set (batches in flight finish)."""
        await self._prepare()
        done: set[int] = set()
        busy: set[int] = set()
        published = 0
        stalled = False  # a batch failed with nothing acknowledged: the broker looks down
        started = time.monotonic()

        async def worker() -> None:
            nonlocal published, stalled
            while not stalled and (stop is None or not stop.is_set()):
                now = time.monotonic()
                candidates = [
                    p
                    for p in self.partitions
                    if p not in done and p not in busy and not self._backing_off(p, now)
                ]
                lease = await _lease_in_thread(
                    self.store.claim, self.channel, candidates, self.config.batch_size
                )
                if lease is None:
                    return
                partition = lease.batch.partition
                if partition in done or self._backing_off(partition, time.monotonic()):
                    # another worker finished or failed it since ``candidates`` was made
                    await _in_thread(lease.abandon)
                    continue
                busy.add(partition)
                try:
                    count, more, refused = await self._process(lease)
                finally:
                    busy.discard(partition)
                published += count
                stalled = stalled or refused
                if not more:
                    done.add(partition)
                await self._log_progress(published, started)

        if self.config.concurrency == 1:
            await worker()
            return published
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.config.concurrency):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            for other in failed.exceptions[1:]:
                log.error("relay worker also failed: %r", other)
            raise failed.exceptions[0] from None
        return published

    async def _process(self, lease: PartitionLease) -> tuple[int, bool, bool]:
        """Publish one leased batch and move the cursor. Returns how many were published,
        whether the partition may have more, and whether the batch failed without a single
        acknowledgement (then the round ends: a down broker costs a few calls per round,
        not one per partition)."""
        batch = lease.batch
        try:
            sendable = [e for e in batch.events if _key(e) not in batch.blocked]
            acks_before = self._acks
            outcomes = await self._publish(sendable)
            step = self._walk(batch, outcomes, acks_before)
            # before the lease is let go, so a worker that takes it next sees the backoff
            self._schedule_retry(batch.partition, step.failure)
            if step.position > batch.after:
                await _in_thread(lease.complete, step.position, step.letters, self.clock.now())
            else:
                await _in_thread(lease.abandon)
        except ConcurrencyError as err:
            await _in_thread(lease.abandon)
            log.warning("channel %s, partition %d: %s", self.channel, batch.partition, err)
            return 0, False, False
        except BaseException:
            await _in_thread(lease.abandon)
            raise
        self._account(batch, step)
        more = step.failure is None and len(batch.events) >= self.config.batch_size
        refused = step.failure is not None and not any(o.ok for o in outcomes.values())
        return step.published, more, refused

    async def _publish(self, events: Sequence[EventEnvelope]) -> dict[str, PublishOutcome]:
        if not events:
            return {}
        try:
            outcomes = await self.publisher.publish(events)
        except Exception as err:  # an adapter that raises instead of reporting outcomes
            error = f"publisher raised {type(err).__name__}: {err}"
            log.warning("channel %s: %s", self.channel, error)
            return {e.id: PublishOutcome(e.id, False, error) for e in events}
        return {outcome.event_id: outcome for outcome in outcomes}

    def _walk(
        self, batch: PartitionBatch, outcomes: dict[str, PublishOutcome], acks_before: int
    ) -> _Step:
        now = self.clock.now()
        blocked = dict(batch.blocked)
        acked = sum(1 for o in outcomes.values() if o.ok)
        self._acks += acked
        step = _Step(batch.after)
        for event in batch.events:
            key, position = _key(event), _position(event)
            root = blocked.get(key)
            if root is not None:
                step.letters.append(
                    DeadLetter(
                        self.channel,
                        position,
                        event.id,
                        *key,
                        attempts=0,
                        reason=f"waiting behind the dead letter at position {root}",
                        blocked_by=root,
                        dead_at=now,
                    )
                )
                step.position = position
                continue
            outcome = outcomes.get(event.id) or PublishOutcome(
                event.id, False, "the publisher reported no outcome"
            )
            if outcome.ok:
                self._tries.pop(event.id, None)
                step.published += 1
                step.position = position
                continue
            # A first failure counts only if the broker acknowledged something during this
            # call (here or in another partition): during a full outage nothing counts.
            tries = self._tries.setdefault(event.id, _Tries(ack_mark=acks_before))
            tries.count += 1
            self.failed_attempts += 1
            if acked or self._acks > tries.ack_mark:
                tries.strikes += 1
            tries.ack_mark = self._acks
            if outcome.retryable and tries.strikes < self.config.max_attempts:
                step.failure = (event, outcome, tries)
                break
            self._tries.pop(event.id, None)
            letter = DeadLetter(
                self.channel,
                position,
                event.id,
                *key,
                attempts=tries.count,
                reason=outcome.error or "refused by the broker",
                blocked_by=None,
                dead_at=now,
            )
            step.letters.append(letter)
            step.dead.append(letter)
            blocked[key] = position
            step.position = position
        return step

    def _account(self, batch: PartitionBatch, step: _Step) -> None:
        """Counters and log lines for a batch whose cursor move has committed."""
        if step.published:
            self.published += step.published
            self._history.append((time.monotonic(), step.published))
        for letter in step.dead:
            self.dead_lettered += 1
            log.error(
                "channel %s: event %s (%s %s, position %d) is a dead letter after %d"
                " attempt(s): %s; later events of its aggregate wait behind it",
                self.channel,
                letter.event_id,
                letter.aggregate_type,
                letter.aggregate_id,
                letter.position,
                letter.attempts,
                letter.reason,
            )
        waiting = len(step.letters) - len(step.dead)
        if waiting:
            log.warning(
                "channel %s: %d event(s) of partition %d wait behind dead letters",
                self.channel,
                waiting,
                batch.partition,
            )

    def _schedule_retry(
        self, partition: int, failure: tuple[EventEnvelope, PublishOutcome, _Tries] | None
    ) -> None:
        if failure is None:
            self._backoff.pop(partition, None)
            return
        event, outcome, tries = failure
        previous = self._backoff.get(partition)
        failures = 1 if previous is None else previous.failures + 1
        delay = self._delay(failures)
        self._backoff[partition] = _Backoff(failures, time.monotonic() + delay)
        log.warning(
            "channel %s: publishing event %s (partition %d, position %s) failed"
            " (try %d, %d of %d counted): %s; retrying the partition in %.2fs",
            self.channel,
            event.id,
            partition,
            event.position,
            tries.count,
            tries.strikes,
            self.config.max_attempts,
            outcome.error,
            delay,
        )

    def _delay(self, failures: int) -> float:
        cfg = self.config
        delay = min(cfg.backoff_max, cfg.backoff_base * 2.0 ** min(failures - 1, 60))
        return delay * (1.0 - cfg.backoff_jitter * self._rng.random())

    def _backing_off(self, partition: int, now: float) -> bool:
        backoff = self._backoff.get(partition)
        return backoff is not None and backoff.until > now

    async def _log_progress(self, published: int, started: float) -> None:
        now = time.monotonic()
        if now - max(self._last_progress, started) < self.config.progress_interval:
            return
        self._last_progress = now
        lag = await asyncio.to_thread(self.store.lag, self.channel)
        log.info(
            "channel %s catching up: %d published in %.0fs (%.0f events/s), %d behind",
            self.channel,
            published,
            now - started,
            published / max(now - started, 1e-9),
            lag.events,
        )

    # -- the loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until ``stop`` is set: wake on NOTIFY (PostgreSQL), every
        ``poll_interval`` seconds, and when a partition's backoff ends. Batches in flight
        when ``stop`` is set finish (their cursors commit) before this returns. Database
        errors are logged and retried with backoff."""
        stop = stop or asyncio.Event()
        wake = asyncio.Event()
        cfg = self.config
        log.info(
            "relay for channel %s starting: %d partitions, batch %d, concurrency %d,"
            " poll every %ss, max %d attempts",
            self.channel,
            len(self.partitions),
            cfg.batch_size,
            cfg.concurrency,
            cfg.poll_interval,
            cfg.max_attempts,
        )
        conninfo = self.store.notification_conninfo() if cfg.listen else None
        listener = None if conninfo is None else asyncio.create_task(self._listen(conninfo, wake))
        next_purge = time.monotonic()
        errors = 0
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    await self.run_once(stop)
                    if cfg.retention is not None and time.monotonic() >= next_purge:
                        next_purge = time.monotonic() + cfg.retention_interval
                        await self.purge_published(cfg.retention)
                    errors = 0
                    timeout = self._idle_timeout()
                except Exception as err:
                    errors += 1
                    timeout = self._delay(errors)
                    log.error(
                        "relay for channel %s: round failed (%s); retrying in %.1fs",
                        self.channel,
                        err,
                        timeout,
                        exc_info=True,
                    )
                await _wait_any(stop, wake, timeout)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            log.info(
                "relay for channel %s stopped: %d events published, %d dead letters",
                self.channel,
                self.published,
                self.dead_lettered,
            )

    def _idle_timeout(self) -> float:
        now = time.monotonic()
        timeout = self.config.poll_interval
        for backoff in self._backoff.values():
            if backoff.until > now:
                timeout = min(timeout, backoff.until - now)
        return max(timeout, 0.001)

    async def _listen(self, conninfo: str, wake: asyncio.Event) -> None:
        """LISTEN for outbox commits and set ``wake`` on each; reconnect on errors."""
        import psycopg

        from finfactory.adapters.sqlalchemy.kernel_store import OUTBOX_CHANNEL

        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self.listening = True
                    failures = 0
                    log.info("relay for channel %s: listening for outbox commits", self.channel)
                    wake.set()  # whatever committed before LISTEN took effect
                    async for _ in conn.notifies():
                        wake.set()
                finally:
                    self.listening = False
                    await conn.close()
            except Exception as err:
                failures += 1
                delay = self._delay(failures)
                log.warning(
                    "relay for channel %s: LISTEN connection failed (%s); polling every %ss,"
                    " reconnecting in %.1fs",
                    self.channel,
                    err,
                    self.config.poll_interval,
                    delay,
                )
                await asyncio.sleep(delay)

    # -- operations -----------------------------------------------------------------------
    async def _prepare(self) -> None:
        if not self._prepared:
            await _in_thread(self._prepare_now)

    def _prepare_now(self) -> None:
        if not self._prepared:
            self.store.ensure_cursors(self.channel, self.clock.now())
            self._prepared = True

    def stats(self) -> RelayStats:
        """Lag, throughput and dead letters of the channel (one short read; thread-safe)."""
        self._prepare_now()
        lag = self.store.lag(self.channel)
        now = time.monotonic()
        while self._history and self._history[0][0] < now - self.config.rate_window:
            self._history.popleft()
        window = min(self.config.rate_window, max(now - self._created, 1e-9))
        return RelayStats(
            channel=self.channel,
            lag=lag.events,
            oldest_unpublished_age=(
                None
                if lag.oldest_recorded_at is None
                else self.clock.now() - lag.oldest_recorded_at
            ),
            published=self.published,
            rate=sum(n for _, n in list(self._history)) / window,
            failed_attempts=self.failed_attempts,
            dead_letters=lag.dead,
            waiting=lag.waiting,
            retrying=tuple(sorted(list(self._backoff))),
        )

    def dead_letters(self, *, include_resolved: bool = False) -> list[DeadLetter]:
        """The channel's dead letters (refused events and those waiting behind them)."""
        return self.store.dead_letters(self.channel, include_resolved=include_resolved)

    def cursors(self) -> dict[int, int]:
        """partition -> position of the last event the channel is done with."""
        return self.store.cursors(self.channel)

    async def requeue(self, aggregate_type: str, aggregate_id: str) -> int:
        """Publish the aggregate's dead-lettered and waiting events, in order, and resolve
        them; later events then flow again. Stops at the first event the broker refuses
        again, which becomes the one the rest wait behind. Returns how many were published."""
        await self._prepare()
        lease = await _lease_in_thread(
            self.store.lock_aggregate, self.channel, aggregate_type, aggregate_id
        )
        assert lease is not None
        try:
            resolved, reroot = await self._republish(lease)
            await _in_thread(lease.finish, resolved, reroot, self.clock.now())
        except BaseException:
            await _in_thread(lease.abandon)
            raise
        self.published += len(resolved)
        log.info(
            "channel %s: requeued %d event(s) of %s %s%s",
            self.channel,
            len(resolved),
            aggregate_type,
            aggregate_id,
            "" if reroot is None else f"; event {reroot.event_id} refused again: {reroot.reason}",
        )
        return len(resolved)

    async def _republish(self, lease: AggregateLease) -> tuple[list[int], DeadLetter | None]:
        outcomes = await self._publish(lease.events)
        resolved: list[int] = []
        for letter in lease.letters:
            outcome = outcomes.get(letter.event_id)
            if outcome is not None and outcome.ok:
                resolved.append(letter.position)
                continue
            reroot = attrs.evolve(
                letter,
                attempts=letter.attempts + 1,
                reason=(outcome.error if outcome else None) or "the publisher reported no outcome",
                blocked_by=None,
                dead_at=self.clock.now(),
            )
            return resolved, reroot
        return resolved, None

    async def discard(self, aggregate_type: str, aggregate_id: str) -> int:
        """Resolve the aggregate's dead letters without publishing them (they stay in the
        outbox until purged). Later events of the aggregate flow again. Returns how many."""
        await self._prepare()
        lease = await _lease_in_thread(
            self.store.lock_aggregate, self.channel, aggregate_type, aggregate_id
        )
        assert lease is not None
        positions = [letter.position for letter in lease.letters]
        try:
            await _in_thread(lease.finish, positions, None, self.clock.now())
        except BaseException:
            await _in_thread(lease.abandon)
            raise
        log.warning(
            "channel %s: discarded %d dead-lettered event(s) of %s %s",
            self.channel,
            len(positions),
            aggregate_type,
            aggregate_id,
        )
        return len(positions)

    async def purge_published(self, older_than: timedelta) -> int:
        """Delete outbox rows recorded more than ``older_than`` ago that every channel's
        cursor has passed and that no unresolved dead letter refers to. Returns how many."""
        cutoff = self.clock.now() - older_than
        total = 0
        while True:
            deleted = await _in_thread(self.store.purge, cutoff, PURGE_CHUNK)
            total += deleted
            if deleted < PURGE_CHUNK:
                break
        if total:
            log.info("purged %d published outbox rows recorded before %s", total, cutoff)
        return total
