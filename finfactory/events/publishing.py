"""The publisher port the outbox relay hands events to. Brokers are asynchronous, so this
port is ``async``; the domain never sees it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from finfactory.events.envelope import EventEnvelope

__all__ = [
    "PublishOutcome",
    "Publisher",
]


@attrs.frozen
class PublishOutcome:
    """What the broker said about one event.

    ``ok`` means the broker acknowledged it durably (a JetStream ack, a Kafka delivery report
    from all in-sync replicas). ``retryable`` is False when sending it again cannot help
    (for example the broker refuses its size); the relay then dead-letters it at once.
    """

    event_id: str
    ok: bool
    error: str | None = None
    retryable: bool = True


class Publisher(Protocol):
    """Sends events to a broker, in the order given, and reports each one's outcome."""

    @property
    def channel(self) -> str:
        """A stable name for this destination; the relay keeps its cursors under it."""
        ...

    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        """One outcome per event, same order. Returns only once every ``ok`` is durable.

        After the first failed event of an aggregate, later events of the same aggregate in
        the batch must not be reported ``ok`` (they may not be sent at all).
        """
        ...

    async def close(self) -> None: ...
