"""Pieces the broker adapters share: handler calls, ordering per aggregate, counters."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.events.publishing import PublishOutcome
from finfactory.kernel.errors import ConfigurationError

__all__ = [
    "AggregateKey",
    "EventHandler",
    "SubscriberStats",
    "aggregate_key",
    "call_handler",
    "hold_order",
    "positive_seconds",
    "sleep_unless",
]

EventHandler = Callable[[EventEnvelope], Awaitable[object] | object]
AggregateKey = tuple[str, str, str]


def aggregate_key(event: EventEnvelope) -> AggregateKey:
    return (event.tenant_id, event.aggregate_type, event.aggregate_id)


def positive_seconds(value: timedelta | float, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ConfigurationError(f"{name} must be positive", setting=name)
    return seconds


def hold_order(
    events: Sequence[EventEnvelope], outcomes: Sequence[PublishOutcome | None]
) -> list[PublishOutcome]:
    """No event is ``ok`` after an earlier event of its aggregate in the batch failed."""
    failed: dict[AggregateKey, str] = {}
    result: list[PublishOutcome] = []
    for event, outcome in zip(events, outcomes, strict=True):
        key = aggregate_key(event)
        if key in failed and (outcome is None or outcome.ok):
            outcome = PublishOutcome(
                event.id,
                ok=False,
                error=f"held back: earlier event {failed[key]} of the same aggregate failed",
            )
        assert outcome is not None
        if not outcome.ok and key not in failed:
            failed[key] = event.id
        result.append(outcome)
    return result


@attrs.define
class SubscriberStats:
    """Counters of a subscriber since it started."""

    handled: int = 0
    failed: int = 0
    invalid: int = 0


async def call_handler(handler: EventHandler, event: EventEnvelope, *, in_thread: bool) -> None:
    """Await a coroutine handler; run a plain one in a worker thread when asked (its database
    transaction then does not block the event loop)."""
    if inspect.iscoroutinefunction(handler):
        await handler(event)
        return
    result = await asyncio.to_thread(handler, event) if in_thread else handler(event)
    if inspect.isawaitable(result):
        await result


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
