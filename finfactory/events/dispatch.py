"""In-process dispatch: primitives composed in one service react to each other's events.

An :class:`EventDispatcher` holds subscriptions, each a handler behind its own
:class:`~finfactory.events.inbox.IdempotentConsumer`, so delivering an event twice (a relay
retry, a replay from an old position) has no second effect. Handlers receive the unit of work
their inbox row is written in; whatever they write through it (including commands of other
primitives called with ``uow=``) commits together with that row, or not at all.

There are two ways to feed it:

- call :meth:`EventDispatcher.dispatch` yourself (for example for each event an
  :class:`~finfactory.events.outbox.OutboxReader` returns);
- hand a :class:`DispatchPublisher` to the outbox relay like any broker publisher. The relay
  then delivers committed events in commit order with its at-least-once guarantee, retries
  events whose handlers failed, and keeps an aggregate's later events waiting behind them.

Subscription patterns use NATS subject rules on the dot-separated event name: ``*`` stands
for exactly one token (``ledger.account.*``), ``>`` as the last token for one or more
(``ledger.>``; ``>`` alone matches every event). Anything else is an exact event name.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.events.inbox import (
    Handler,
    IdempotentConsumer,
    InboxStoreFactory,
    check_consumer_name,
    default_inbox_store,
)
from finfactory.events.publishing import PublishOutcome
from finfactory.kernel.errors import FinFactoryError, ValidationError

__all__ = [
    "DispatchError",
    "DispatchPublisher",
    "DispatchResult",
    "EventDispatcher",
    "EventPattern",
    "HandlerFailure",
    "Subscription",
]


if TYPE_CHECKING:
    from finfactory.kernel.clock import Clock
    from finfactory.kernel.ports import Storage, UnitOfWork

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "in-process"
MAX_CHANNEL = 64  # ff_relay_cursors.channel
_TOKEN = re.compile(r"^[a-z][a-z0-9_]*$")
_ONE = "*"  # exactly one token
_REST = ">"  # one or more tokens, last in a pattern


class DispatchError(FinFactoryError):
    """One or more handlers failed for an event; ``result`` says which and why.

    Handlers that succeeded are committed; dispatching the event again runs only the ones
    that failed (the others find their inbox row).
    """

    code = "event_handler_failed"

    def __init__(self, result: DispatchResult) -> None:
        failed = "; ".join(f.describe() for f in result.failures)
        super().__init__(
            f"event {result.event_id}: {failed}",
            event_id=result.event_id,
            consumers=[f.consumer_name for f in result.failures],
        )
        self.result = result


@attrs.frozen
class EventPattern:
    """An event name or a NATS-style wildcard pattern over its dot-separated tokens."""

    text: str
    tokens: tuple[str, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        tokens = tuple(self.text.split(".")) if isinstance(self.text, str) else ()
        valid = bool(tokens) and all(
            _TOKEN.match(part) or part == _ONE or (part == _REST and i == len(tokens) - 1)
            for i, part in enumerate(tokens)
        )
        if not valid:
            raise ValidationError(
                f"{self.text!r} is neither an event name nor a pattern of dot-separated "
                "tokens with `*` (one token) or a final `>` (the rest)",
                field="event_type_or_pattern",
            )
        object.__setattr__(self, "tokens", tokens)

    @property
    def is_exact(self) -> bool:
        return _ONE not in self.tokens and _REST not in self.tokens

    def matches(self, event_type: str) -> bool:
        names = event_type.split(".")
        for i, part in enumerate(self.tokens):
            if part == _REST:
                return len(names) > i
            if i >= len(names) or part not in (_ONE, names[i]):
                return False
        return len(names) == len(self.tokens)


@attrs.frozen
class Subscription:
    pattern: EventPattern
    consumer: IdempotentConsumer
    handler: Handler

    @property
    def consumer_name(self) -> str:
        return self.consumer.consumer_name


@attrs.frozen(eq=False)
class HandlerFailure:
    consumer_name: str
    error: Exception

    def describe(self) -> str:
        return f"consumer {self.consumer_name!r} failed: {type(self.error).__name__}: {self.error}"


@attrs.frozen
class DispatchResult:
    """What became of one event: which consumers handled it now, which had already, which
    failed (their writes and inbox rows rolled back)."""

    event_id: str
    handled: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    failures: tuple[HandlerFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


@attrs.define
class EventDispatcher:
    """Delivers events to the handlers subscribed to them, each exactly once in effect."""

    storage: Storage
    clock: Clock
    inbox_store: InboxStoreFactory = default_inbox_store
    _subscriptions: list[Subscription] = attrs.field(init=False, factory=list)

    def subscribe(
        self, event_type_or_pattern: str, handler: Handler, *, consumer_name: str
    ) -> Subscription:
        """Call ``handler(uow, envelope)`` for every event matching the name or pattern.

        ``consumer_name`` keys the subscription's inbox: keep it stable across restarts
        (renaming it makes every event new to it) and unique within the service.
        """
        check_consumer_name(consumer_name)
        if any(s.consumer_name == consumer_name for s in self._subscriptions):
            raise ValidationError(
                f"consumer name {consumer_name!r} is already subscribed", field="consumer_name"
            )
        subscription = Subscription(
            EventPattern(event_type_or_pattern),
            IdempotentConsumer(self.storage, consumer_name, self.clock, self.inbox_store),
            handler,
        )
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, consumer_name: str) -> None:
        self._subscriptions = [s for s in self._subscriptions if s.consumer_name != consumer_name]

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    def matching(self, event_type: str) -> list[Subscription]:
        """The subscriptions an event of this type goes to, in the order they were made."""
        return [s for s in self._subscriptions if s.pattern.matches(event_type)]

    def dispatch(self, envelope: EventEnvelope, *, uow: UnitOfWork | None = None) -> DispatchResult:
        """Deliver ``envelope`` to every matching subscription, in subscription order.

        Each subscription handles the event in its own transaction, so one failing handler
        does not undo the others. With ``uow``, all of them run inside that caller-owned
        transaction instead, each in a savepoint, and nothing is committed here.

        Raises :class:`DispatchError` after all subscriptions were tried if any handler
        raised; otherwise returns the result (an event nobody subscribes to is a success).
        """
        handled: list[str] = []
        duplicates: list[str] = []
        failures: list[HandlerFailure] = []
        for subscription in self.matching(envelope.event_type):
            try:
                ran = subscription.consumer.handle(envelope, subscription.handler, uow=uow)
            except Exception as err:
                log.warning(
                    "event %s (%s) failed in consumer %s: %s",
                    envelope.id,
                    envelope.event_type,
                    subscription.consumer_name,
                    err,
                    exc_info=True,
                )
                failures.append(HandlerFailure(subscription.consumer_name, err))
            else:
                (handled if ran else duplicates).append(subscription.consumer_name)
        result = DispatchResult(envelope.id, tuple(handled), tuple(duplicates), tuple(failures))
        if failures:
            raise DispatchError(result)
        return result


def _aggregate_key(event: EventEnvelope) -> tuple[str, str, str]:
    return (event.tenant_id, event.aggregate_type, event.aggregate_id)


@attrs.define
class DispatchPublisher:
    """A :class:`~finfactory.events.publishing.Publisher` that delivers to in-process handlers.

    Give it to the outbox relay to run subscriptions off committed events with the relay's
    guarantees: every committed event is delivered at least once, in commit order; the
    inbox makes each delivery after the first a no-op. An event whose handlers fail gets a
    retryable failed outcome, and the later events of the same aggregate in the batch are
    not delivered (they fail too, so they wait behind it).
    """

    dispatcher: EventDispatcher
    _channel: str = attrs.field(default=DEFAULT_CHANNEL)

    def __attrs_post_init__(self) -> None:
        if not self._channel or len(self._channel) > MAX_CHANNEL:
            raise ValidationError(f"channel must be 1-{MAX_CHANNEL} characters", field="channel")

    @property
    def channel(self) -> str:
        return self._channel

    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        # Handlers are synchronous database work: run the batch off the event loop.
        return await asyncio.to_thread(self.deliver, list(events))

    def deliver(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        """The synchronous core of :meth:`publish`: one outcome per event, same order."""
        outcomes: list[PublishOutcome] = []
        blocked: dict[tuple[str, str, str], str] = {}
        for event in events:
            key = _aggregate_key(event)
            if key in blocked:
                outcomes.append(
                    PublishOutcome(
                        event.id,
                        ok=False,
                        error=(
                            f"not delivered: event {blocked[key]} of the same aggregate "
                            "failed earlier in this batch"
                        ),
                    )
                )
                continue
            try:
                self.dispatcher.dispatch(event)
            except ValidationError as err:
                # A malformed envelope: delivering it again cannot help.
                blocked[key] = event.id
                outcomes.append(PublishOutcome(event.id, ok=False, error=str(err), retryable=False))
            except Exception as err:
                blocked[key] = event.id
                outcomes.append(PublishOutcome(event.id, ok=False, error=str(err)))
            else:
                outcomes.append(PublishOutcome(event.id, ok=True))
        return outcomes

    async def close(self) -> None:
        """Nothing to release: handlers run in this process."""
