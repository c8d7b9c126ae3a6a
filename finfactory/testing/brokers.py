"""An in-memory broker and publisher for tests of event delivery.

:class:`InMemoryPublisher` implements the relay's :class:`~finfactory.events.publishing.Publisher`
port and stores what it publishes in an :class:`InMemoryBroker`. Both can be told to misbehave
the way real brokers and networks do:

* publisher: fail the next calls (:meth:`~InMemoryPublisher.fail_next`), refuse one event
  forever (:meth:`~InMemoryPublisher.poison`), be unreachable (:meth:`~InMemoryPublisher.down`
  / :meth:`~InMemoryPublisher.up`), or crash after the broker stored a batch but before the
  call returns (:meth:`~InMemoryPublisher.crash_after_send`, which raises
  :class:`SimulatedCrash`, as if the relay process died between publishing and marking);
* consumer (:meth:`InMemoryBroker.consumer`): deliver messages twice
  (:meth:`~InMemoryConsumer.duplicate_next`), out of order (:meth:`~InMemoryConsumer.reorder_next`),
  and again after the ack wait expires (:meth:`~InMemoryConsumer.redeliver_unacked`) or a
  ``nak``.

Everything is deterministic: no timers, no randomness unless a seed is given.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.events.publishing import PublishOutcome

__all__ = [
    "BrokerMessage",
    "Delivery",
    "InMemoryBroker",
    "InMemoryConsumer",
    "InMemoryPublisher",
    "SimulatedCrash",
]


class SimulatedCrash(BaseException):
    """The process "died" after the broker stored a batch and before the publisher returned.

    A ``BaseException`` (like ``KeyboardInterrupt``), so code that handles broker errors
    (``except Exception``) does not treat it as a failed publish: it unwinds the relay the
    way a killed process would, leaving the batch published but not marked.
    """


@attrs.frozen
class BrokerMessage:
    """One message the broker stored. ``sequence`` is broker-wide, from 1, in arrival order."""

    sequence: int
    subject: str
    event: EventEnvelope


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS-style matching on ``.``-separated tokens: ``*`` is one token, ``>`` the rest."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or part not in ("*", have[i]):
            return False
    return len(have) == len(want)


class InMemoryBroker:
    """Stores messages in arrival order; any number of consumers read them independently.

    Thread-safe: publishers and consumers may run in different threads.
    """

    def __init__(self) -> None:
        self._log: list[BrokerMessage] = []
        self._lock = threading.Lock()

    def store(self, subject: str, event: EventEnvelope) -> BrokerMessage:
        with self._lock:
            message = BrokerMessage(len(self._log) + 1, subject, event)
            self._log.append(message)
            return message

    def messages(self, subject: str = ">") -> list[BrokerMessage]:
        """Every stored message whose subject matches ``subject``, duplicates included."""
        with self._lock:
            log = list(self._log)
        return [m for m in log if subject_matches(subject, m.subject)]

    def events(self, subject: str = ">") -> list[EventEnvelope]:
        return [m.event for m in self.messages(subject)]

    def unique_events(self, subject: str = ">") -> list[EventEnvelope]:
        """Each event once, at its first arrival (what a consumer deduplicating by id sees)."""
        seen: set[str] = set()
        out = []
        for event in self.events(subject):
            if event.id not in seen:
                seen.add(event.id)
                out.append(event)
        return out

    def duplicates(self, subject: str = ">") -> dict[str, int]:
        """Event ids stored more than once, with how many times each was stored."""
        counts = Counter(e.id for e in self.events(subject))
        return {event_id: n for event_id, n in counts.items() if n > 1}

    def consumer(self, subject: str = ">") -> InMemoryConsumer:
        """A new consumer that reads matching messages from the beginning."""
        return InMemoryConsumer(self, subject)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    async def wait_for(
        self, count: int, *, subject: str = ">", unique: bool = True, timeout: float = 10.0
    ) -> None:
        """Wait until ``count`` (distinct, unless ``unique=False``) events have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.unique_events(subject) if unique else self.events(subject)
            if len(events) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(events)} of {count} events arrived in {timeout}s")
            await asyncio.sleep(0.005)


@attrs.define(eq=False)
class Delivery:
    """One delivery of a message to a consumer; ``attempt`` is 1 on the first delivery."""

    message: BrokerMessage
    attempt: int
    _consumer: InMemoryConsumer = attrs.field(repr=False, alias="consumer")
    settled: bool = False

    @property
    def event(self) -> EventEnvelope:
        return self.message.event

    def ack(self) -> None:
        self._consumer._settle(self, redeliver=False)

    def nak(self) -> None:
        """Handling failed: the message is delivered again (``attempt`` + 1)."""
        self._consumer._settle(self, redeliver=True)


class InMemoryConsumer:
    """A durable pull consumer over one subject pattern, with delivery faults on demand.

    :meth:`fetch` returns messages that are due for redelivery first, then new ones. A
    delivery stays in flight until it is acked or nakked.
    """

    def __init__(self, broker: InMemoryBroker, subject: str) -> None:
        self.broker = broker
        self.subject = subject
        self._next = 0  # index into the broker's messages matching ``subject``
        self._redeliver: deque[tuple[BrokerMessage, int]] = deque()
        self._in_flight: dict[int, Delivery] = {}
        self._duplicates = 0
        self._reorder = 0
        self._rng: random.Random | None = None
        self.acked = 0
        self.delivered = 0

    # -- faults --------------------------------------------------------------------------
    def duplicate_next(self, count: int = 1) -> None:
        """Each of the next ``count`` new messages is delivered twice in a row."""
        self._duplicates += count

    def reorder_next(self, count: int, *, seed: int | None = None) -> None:
        """The next ``count`` new messages arrive out of order: reversed within each fetch,
        or shuffled with ``random.Random(seed)`` when a seed is given."""
        self._reorder += count
        self._rng = None if seed is None else random.Random(seed)  # noqa: S311 - test order

    def redeliver_unacked(self) -> int:
        """The ack wait expired (or the consumer process died): every delivery still in
        flight is delivered again. Returns how many."""
        pending = sorted(self._in_flight.values(), key=lambda d: d.message.sequence)
        self._in_flight.clear()
        for delivery in pending:
            delivery.settled = True
            self._redeliver.append((delivery.message, delivery.attempt + 1))
        return len(pending)

    # -- reading -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def fetch(self, batch: int = 10) -> list[Delivery]:
        out: list[Delivery] = []
        while self._redeliver and len(out) < batch:
            message, attempt = self._redeliver.popleft()
            out.append(self._deliver(message, attempt))
        fresh = self.broker.messages(self.subject)[self._next :][: batch - len(out)]
        self._next += len(fresh)
        if self._reorder and len(fresh) > 1:
            head = min(self._reorder, len(fresh))
            moved = fresh[:head]
            if self._rng is None:
                moved.reverse()
            else:
                self._rng.shuffle(moved)
            fresh[:head] = moved
        self._reorder = max(0, self._reorder - len(fresh))
        for message in fresh:
            out.append(self._deliver(message, 1))
            if self._duplicates:
                self._duplicates -= 1
                out.append(self._deliver(message, 2))
        return out

    def drain(self, handler: Callable[[EventEnvelope], object], batch: int = 100) -> int:
        """Deliver everything available to ``handler``, acking each message it returns from.

        A handler exception naks the message and propagates. Returns the deliveries handled.
        """
        handled = 0
        while deliveries := self.fetch(batch):
            for delivery in deliveries:
                try:
                    handler(delivery.event)
                except BaseException:
                    delivery.nak()
                    raise
                delivery.ack()
                handled += 1
        return handled

    def _deliver(self, message: BrokerMessage, attempt: int) -> Delivery:
        delivery = Delivery(message, attempt, consumer=self)
        self._in_flight[id(delivery)] = delivery
        self.delivered += 1
        return delivery

    def _settle(self, delivery: Delivery, *, redeliver: bool) -> None:
        if delivery.settled:
            return
        delivery.settled = True
        self._in_flight.pop(id(delivery), None)
        if redeliver:
            self._redeliver.append((delivery.message, delivery.attempt + 1))
        else:
            self.acked += 1


class InMemoryPublisher:
    """The :class:`~finfactory.events.publishing.Publisher` port over an :class:`InMemoryBroker`.

    Events go to ``subject(event)`` (default: the channel name). Failure injection is
    described in the module docs; ``attempts`` counts how often each event id was offered.
    """

    def __init__(
        self,
        broker: InMemoryBroker,
        channel: str = "memory",
        *,
        subject: Callable[[EventEnvelope], str] | None = None,
        latency: float = 0.0,
        on_publish: Callable[[BrokerMessage], None] | None = None,
    ) -> None:
        self.broker = broker
        self._channel = channel
        self._subject = subject or (lambda _event: channel)
        self.latency = latency
        self.on_publish = on_publish
        self.calls = 0
        self.attempts: Counter[str] = Counter()
        self._fail_calls = 0
        self._fail_error = ""
        self._fail_retryable = True
        self._poison: dict[str, tuple[str, bool]] = {}
        self._down_error: str | None = None
        self._crash_calls = 0
        self.closed = False

    @property
    def channel(self) -> str:
        return self._channel

    # -- faults --------------------------------------------------------------------------
    def fail_next(
        self, calls: int = 1, *, error: str = "injected failure", retryable: bool = True
    ) -> None:
        """The next ``calls`` publish calls store nothing and report every event failed."""
        self._fail_calls = calls
        self._fail_error = error
        self._fail_retryable = retryable

    def poison(
        self, event_id: str, *, error: str = "refused by broker", retryable: bool = True
    ) -> None:
        """Refuse ``event_id`` on every attempt (until :meth:`cure`)."""
        self._poison[event_id] = (error, retryable)

    def cure(self, event_id: str) -> None:
        self._poison.pop(event_id, None)

    def down(self, error: str = "broker unavailable") -> None:
        """Every publish fails until :meth:`up`."""
        self._down_error = error

    def up(self) -> None:
        self._down_error = None

    @property
    def is_down(self) -> bool:
        return self._down_error is not None

    def crash_after_send(self, calls: int = 1) -> None:
        """The next ``calls`` publish calls store their batch, then raise
        :class:`SimulatedCrash` instead of returning the outcomes."""
        self._crash_calls = calls

    # -- the port ------------------------------------------------------------------------
    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.closed:
            raise RuntimeError("publisher is closed")
        self.attempts.update(e.id for e in events)
        if self._down_error is not None:
            return [PublishOutcome(e.id, False, self._down_error) for e in events]
        if self._fail_calls > 0:
            self._fail_calls -= 1
            return [
                PublishOutcome(e.id, False, self._fail_error, self._fail_retryable) for e in events
            ]
        outcomes = []
        failed: set[tuple[str, str]] = set()
        for event in events:
            aggregate = (event.aggregate_type, event.aggregate_id)
            if aggregate in failed:
                outcomes.append(
                    PublishOutcome(
                        event.id, False, "not sent: an earlier event of its aggregate failed"
                    )
                )
                continue
            refused = self._poison.get(event.id)
            if refused is not None:
                failed.add(aggregate)
                outcomes.append(PublishOutcome(event.id, False, refused[0], refused[1]))
                continue
            message = self.broker.store(self._subject(event), event)
            if self.on_publish is not None:
                self.on_publish(message)
            outcomes.append(PublishOutcome(event.id, True))
        if self._crash_calls > 0:
            self._crash_calls -= 1
            raise SimulatedCrash(f"crashed after sending {len(events)} events")
        return outcomes

    async def close(self) -> None:
        self.closed = True
