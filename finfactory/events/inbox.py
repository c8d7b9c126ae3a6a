"""The idempotent consumer: an event's effects happen once, however often it is delivered.

Delivery is at least once (a relay that crashes between publishing and marking sends again,
a broker redelivers what was not acknowledged), so a consumer must recognise an event it has
already handled. :class:`IdempotentConsumer` keeps an *inbox*, table ``ff_inbox`` keyed by
(consumer, event id), and records the event there **in the same transaction** as the
handler's own writes:

- the inbox row is claimed first (``INSERT ... ON CONFLICT DO NOTHING``). On PostgreSQL a
  concurrent delivery of the same event blocks on that row until the first transaction ends:
  if it committed, the duplicate finds the row and skips; if it rolled back, the duplicate
  claims the row and runs the handler itself. SQLite and the in-memory adapter have one
  writer at a time, so the question never arises there;
- then the handler runs with the unit of work; everything it writes through it commits
  together with the inbox row, or neither does. A handler that raises leaves no inbox row
  behind, so the next delivery runs it again.

Pass ``uow=`` to handle an event inside a transaction the caller owns: the claim and the
handler then run in a savepoint of it (a failing handler is undone without spoiling the
caller's transaction) and nothing is committed here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.errors import ConfigurationError, ValidationError
from finfactory.kernel.retention import purge_in_batches

if TYPE_CHECKING:
    from finfactory.adapters.memory import MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork
    from finfactory.kernel.clock import Clock
    from finfactory.kernel.ports import Storage, UnitOfWork

__all__ = [
    "IdempotentConsumer",
    "InboxStore",
    "MemoryInboxStore",
    "SqlInboxStore",
    "default_inbox_store",
]

INBOX_TABLE = "ff_inbox"
MAX_CONSUMER_NAME = 100
MAX_EVENT_ID = 36

Handler = Callable[["UnitOfWork", EventEnvelope], None]
"""What a consumer does with one event, writing through the unit of work it is given."""


class InboxStore(Protocol):
    """The inbox rows of one unit of work."""

    def claim(self, consumer: str, event: EventEnvelope, now: datetime) -> bool:
        """Record ``event`` as handled by ``consumer``; False if it already was.

        A concurrent transaction holding the same row makes this call wait until that one
        commits (then False) or rolls back (then True).
        """
        ...

    def contains(self, consumer: str, event_id: str) -> bool: ...

    def purge(self, consumer: str, handled_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` of ``consumer``'s rows handled before ``handled_before``,
        oldest first; return how many went."""
        ...


InboxStoreFactory = Callable[["UnitOfWork"], InboxStore]

_CLAIM = (
    "INSERT INTO ff_inbox (consumer, event_id, event_type, handled_at)"
    " VALUES (:consumer, :event_id, :event_type, :handled_at)"
    " ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
)
_CONTAINS = "SELECT 1 FROM ff_inbox WHERE consumer = :consumer AND event_id = :event_id"
_PURGE = (
    "DELETE FROM ff_inbox WHERE consumer = :consumer AND event_id IN (SELECT event_id"
    " FROM ff_inbox WHERE consumer = :consumer AND handled_at < :before"
    " ORDER BY handled_at LIMIT :limit) RETURNING event_id"
)


class SqlInboxStore:
    """``ff_inbox`` on SQLite and PostgreSQL, through the unit of work's driver session."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._drv = uow.driver

    def claim(self, consumer: str, event: EventEnvelope, now: datetime) -> bool:
        params = {
            "consumer": consumer,
            "event_id": event.id,
            "event_type": event.event_type,
            "handled_at": self._drv.ts(now),
        }
        return bool(self._drv.query(_CLAIM, params))

    def contains(self, consumer: str, event_id: str) -> bool:
        return bool(self._drv.query(_CONTAINS, {"consumer": consumer, "event_id": event_id}))

    def purge(self, consumer: str, handled_before: datetime, limit: int) -> int:
        params = {"consumer": consumer, "before": self._drv.ts(handled_before), "limit": limit}
        return len(self._drv.query(_PURGE, params))


@attrs.frozen
class InboxRow:
    """An ``ff_inbox`` row as the in-memory adapter keeps it."""

    consumer: str
    event_id: str
    event_type: str
    handled_at: datetime


class MemoryInboxStore:
    """The inbox as a table of :class:`~finfactory.adapters.memory.MemoryDatabase`."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    def claim(self, consumer: str, event: EventEnvelope, now: datetime) -> bool:
        key = (consumer, event.id)
        if self._uow.get(INBOX_TABLE, key) is not None:
            return False
        self._uow.put(INBOX_TABLE, key, InboxRow(consumer, event.id, event.event_type, now))
        return True

    def contains(self, consumer: str, event_id: str) -> bool:
        return self._uow.get(INBOX_TABLE, (consumer, event_id)) is not None

    def purge(self, consumer: str, handled_before: datetime, limit: int) -> int:
        rows = self._uow.rows(INBOX_TABLE)
        old = sorted(
            (row.handled_at, row.event_id)
            for row in rows
            if row.consumer == consumer and row.handled_at < handled_before
        )[:limit]
        for _, event_id in old:
            self._uow.delete(INBOX_TABLE, (consumer, event_id))
        return len(old)


def default_inbox_store(uow: UnitOfWork) -> InboxStore:
    """The inbox store matching the unit of work's adapter."""
    from finfactory.adapters.memory import MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork

    if isinstance(uow, SqlUnitOfWork):
        return SqlInboxStore(uow)
    if isinstance(uow, MemoryUnitOfWork):
        return MemoryInboxStore(uow)
    raise ConfigurationError(
        f"no inbox store for {type(uow).__name__}; pass inbox_store to IdempotentConsumer"
    )


def check_consumer_name(name: str) -> str:
    """A consumer name is the first half of the inbox key: 1-100 characters, not blank."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_CONSUMER_NAME:
        raise ValidationError(
            f"consumer name must be 1-{MAX_CONSUMER_NAME} characters", field="consumer_name"
        )
    return name


def _valid_name(_instance: object, _attribute: object, value: str) -> None:
    check_consumer_name(value)


@attrs.define
class IdempotentConsumer:
    """Runs a handler at most once per event id for one named consumer.

    ``consumer_name`` identifies the consumer across restarts and processes: every process
    running the same consumer must use the same name, and two different consumers of the
    same event must use different names (each has its own inbox rows).
    """

    storage: Storage
    consumer_name: str = attrs.field(validator=_valid_name)
    clock: Clock
    inbox_store: InboxStoreFactory = default_inbox_store

    def handle(
        self, envelope: EventEnvelope, handler: Handler, *, uow: UnitOfWork | None = None
    ) -> bool:
        """Run ``handler(uow, envelope)`` unless this consumer already handled the event.

        Returns True when the handler ran (and its writes committed with the inbox row, or,
        with a caller-owned ``uow``, were written into it), False for a duplicate. An
        exception from the handler propagates after both its writes and the inbox row have
        been rolled back.
        """
        if not envelope.id or len(envelope.id) > MAX_EVENT_ID:
            raise ValidationError(
                f"event id must be 1-{MAX_EVENT_ID} characters", field="envelope.id"
            )
        if uow is not None:
            with uow.savepoint():
                return self._run(uow, envelope, handler)
        with self.storage.transaction() as tx:
            return self._run(tx, envelope, handler)

    def _run(self, uow: UnitOfWork, envelope: EventEnvelope, handler: Handler) -> bool:
        if not self.inbox_store(uow).claim(self.consumer_name, envelope, self.clock.now()):
            return False
        handler(uow, envelope)
        # Send what the handler queued, so its errors surface here and roll the claim back.
        uow.flush()
        return True

    def purge_handled(self, *, keep_for: timedelta, batch_size: int = 1000) -> int:
        """Forget the events this consumer handled more than ``keep_for`` ago, oldest first,
        in transactions of ``batch_size`` rows; returns how many it forgot.

        Keep them longer than the broker may redeliver (JetStream's duplicate window, a Kafka
        consumer group's lag, a replay you may run): an event redelivered after its row is
        gone is handled again.
        """
        return purge_in_batches(
            self.storage,
            self.clock,
            lambda tx, cutoff, limit: self.inbox_store(tx).purge(self.consumer_name, cutoff, limit),
            keep_for=keep_for,
            batch_size=batch_size,
        )

    def has_handled(self, event_id: str) -> bool:
        """Whether this consumer's inbox records ``event_id`` as handled (committed)."""
        with self.storage.read() as tx:
            return self.inbox_store(tx).contains(self.consumer_name, event_id)
