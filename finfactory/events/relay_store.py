"""Where the outbox relay keeps its progress: cursors, dead letters and partition leases.

Progress is one cursor per (channel, partition) in ``ff_relay_cursors``: the position of the
last outbox event of that partition the channel is done with (published, dead-lettered or
parked behind a dead letter). Work is handed out a partition at a time under a *lease*, so
two relays never publish the same partition at once:

* PostgreSQL: the lease is the cursor row itself, locked with ``SELECT ... FOR UPDATE SKIP
  LOCKED`` in a transaction that stays open while the batch is published and that commits
  together with the cursor move. Any number of relay processes can share the work. If a
  process dies, its transaction rolls back and the batch is published again (at least once).
* SQLite and the in-memory adapter: one writer at a time, no row locks. The lease lives in
  the process (per database); the batch is read in a short read transaction and the cursor
  moves in a short write transaction only if nobody moved it meanwhile (compare and set).
  Run one relay process per SQLite database; several relays inside that process are fine.

Everything here is synchronous; :mod:`finfactory.events.relay` calls it from worker threads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from sqlalchemy import Connection, and_, delete, func, select, update
from sqlalchemy.sql.dml import Insert

from finfactory.events.envelope import EventEnvelope
from finfactory.events.partitions import RELAY_PARTITIONS, partition_of
from finfactory.kernel.errors import ConcurrencyError

if TYPE_CHECKING:  # the kernel's ports import the envelope module from this package
    from finfactory.adapters.memory import MemoryDatabase, MemoryStorage, MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
    from finfactory.kernel.ports import Storage

AggregateKey = tuple[str, str]
"""(aggregate_type, aggregate_id): the unit of ordering, as in :func:`partition_of`."""

LEASE_WAIT = 60.0  # seconds requeue/discard wait for a partition another relay is publishing


@attrs.frozen
class DeadLetter:
    """A row of ``ff_relay_dead_letters``.

    ``blocked_by`` is None for an event the broker refused (``attempts`` tries, ``reason``
    its last error) and the position of that refused event for a later event of the same
    aggregate that waits behind it, unpublished. ``resolved_at`` is set by requeue/discard.
    """

    channel: str
    position: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    attempts: int
    reason: str
    blocked_by: int | None
    dead_at: datetime
    resolved_at: datetime | None = None


@attrs.frozen
class PartitionBatch:
    """What a lease hands out: the partition's next events after its cursor ``after``, and
    the aggregates of this partition that wait behind an unresolved dead letter (mapped to
    the position of that dead letter)."""

    partition: int
    after: int
    events: tuple[EventEnvelope, ...]
    blocked: Mapping[AggregateKey, int]


@attrs.frozen
class ChannelLag:
    """Committed events a channel has not dealt with yet, and its unresolved dead letters."""

    events: int
    oldest_recorded_at: datetime | None
    dead: int
    waiting: int


class PartitionLease(Protocol):
    """One partition, held until :meth:`complete` or :meth:`abandon` (exactly one of them)."""

    @property
    def batch(self) -> PartitionBatch: ...

    def complete(self, position: int, letters: Sequence[DeadLetter], now: datetime) -> None:
        """Move the cursor to ``position`` and record ``letters``, atomically; release."""
        ...

    def abandon(self) -> None:
        """Release without moving the cursor. Safe to call after :meth:`complete`."""
        ...


class AggregateLease(Protocol):
    """The partition of one aggregate, held while its dead letters are requeued/discarded."""

    @property
    def letters(self) -> list[DeadLetter]:
        """The aggregate's unresolved dead letters, in position order."""
        ...

    @property
    def events(self) -> list[EventEnvelope]:
        """The outbox events of :attr:`letters`, same order."""
        ...

    def finish(self, resolved: Sequence[int], reroot: DeadLetter | None, now: datetime) -> None:
        """Resolve the letters at ``resolved``; if ``reroot`` is given, that letter becomes
        the one the aggregate's remaining letters wait behind. Commits and releases."""
        ...

    def abandon(self) -> None: ...


class RelayStore(Protocol):
    """The relay's persistence port. Implementations: :class:`SqlRelayStore`,
    :class:`MemoryRelayStore`; :func:`relay_store_for` picks one for a storage."""

    def ensure_cursors(self, channel: str, now: datetime) -> None:
        """Create the channel's missing cursor rows (all partitions, at position 0)."""
        ...

    def notification_conninfo(self) -> str | None:
        """Where to LISTEN for outbox commits (a libpq connection string), if anywhere."""
        ...

    def claim(self, channel: str, partitions: Collection[int], limit: int) -> PartitionLease | None:
        """Lease one of ``partitions`` that has events after its cursor and that no other
        relay holds (the one served least recently first), with up to ``limit`` of them;
        None when there is no such partition."""
        ...

    def lock_aggregate(
        self, channel: str, aggregate_type: str, aggregate_id: str
    ) -> AggregateLease:
        """Lease the aggregate's partition, waiting for a relay that is publishing it."""
        ...

    def dead_letters(self, channel: str, *, include_resolved: bool = False) -> list[DeadLetter]: ...

    def lag(self, channel: str) -> ChannelLag: ...

    def cursors(self, channel: str) -> dict[int, int]:
        """partition -> last position, for the partitions that have a cursor row."""
        ...

    def purge(self, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` outbox rows recorded before ``cutoff`` that every channel
        is done with and that no unresolved dead letter refers to. Returns how many."""
        ...


def relay_store_for(storage: Storage) -> RelayStore:
    """The relay store of the storage adapters FinFactory ships."""
    from finfactory.adapters.memory import MemoryStorage
    from finfactory.adapters.sqlalchemy.storage import SqlStorage

    if isinstance(storage, SqlStorage):
        return SqlRelayStore(storage)
    if isinstance(storage, MemoryStorage):
        return MemoryRelayStore(storage)
    raise TypeError(f"no relay store for {type(storage).__name__}; pass store= explicitly")


# -- in-process leases (SQLite, memory) ---------------------------------------------------


class _Leases:
    """Partitions held by relays of this process, per database."""

    def __init__(self) -> None:
        self._held: set[tuple[str, int]] = set()
        self._cond = threading.Condition()

    def try_take(self, key: tuple[str, int]) -> bool:
        with self._cond:
            if key in self._held:
                return False
            self._held.add(key)
            return True

    def take(self, key: tuple[str, int], timeout: float = LEASE_WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: key not in self._held, timeout):
                raise ConcurrencyError(
                    "a relay has held the partition too long; retry", partition=key[1]
                )
            self._held.add(key)

    def give(self, key: tuple[str, int]) -> None:
        with self._cond:
            self._held.discard(key)
            self._cond.notify_all()


_REGISTRY_LOCK = threading.Lock()
_MEMORY_LEASES: weakref.WeakKeyDictionary[MemoryDatabase, _Leases] = weakref.WeakKeyDictionary()
_SQL_LEASES: dict[str, _Leases] = {}


def _memory_leases(db: MemoryDatabase) -> _Leases:
    with _REGISTRY_LOCK:
        leases = _MEMORY_LEASES.get(db)
        if leases is None:
            leases = _MEMORY_LEASES[db] = _Leases()
        return leases


def _sql_leases(database: str) -> _Leases:
    with _REGISTRY_LOCK:
        return _SQL_LEASES.setdefault(database, _Leases())


# -- SQL ----------------------------------------------------------------------------------


class _Held:
    """A ``SqlStorage.transaction()`` kept open across calls (the PostgreSQL lease)."""

    def __init__(self, manager: AbstractContextManager[SqlUnitOfWork]) -> None:
        self._manager = manager
        self.uow = manager.__enter__()
        self.open = True

    @property
    def connection(self) -> Connection:
        return self.uow.connection

    def commit(self) -> None:
        if self.open:
            self.open = False
            self._manager.__exit__(None, None, None)

    def rollback(self) -> None:
        if self.open:
            self.open = False
            reason = _Rollback()
            self._manager.__exit__(_Rollback, reason, None)


class _Rollback(Exception):
    """Thrown into a held transaction to roll it back."""


class SqlRelayStore:
    """:class:`RelayStore` on SQLite and PostgreSQL (tables ``ff_relay_cursors``,
    ``ff_relay_dead_letters``; migration 0004)."""

    def __init__(self, storage: SqlStorage) -> None:
        self.storage = storage
        self.postgres = storage.engine.dialect.name == "postgresql"
        self._leases = None if self.postgres else _sql_leases(storage.engine.url.render_as_string())

    def notification_conninfo(self) -> str | None:
        """A libpq connection string for LISTEN (PostgreSQL only)."""
        if not self.postgres:
            return None
        url = self.storage.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _insert_ignoring_duplicates(self, table: Any) -> Insert:
        if self.postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.storage.transaction() as uow:
            yield uow.connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.storage.read() as uow:
            yield uow.connection

    def ensure_cursors(self, channel: str, now: datetime) -> None:
        from finfactory.adapters.sqlalchemy.tables import relay_cursors

        rows = [
            {"channel": channel, "partition": p, "last_position": 0, "updated_at": now}
            for p in range(RELAY_PARTITIONS)
        ]
        with self._write() as conn:
            have = conn.execute(
                select(func.count()).where(relay_cursors.c.channel == channel)
            ).scalar_one()
            if have < RELAY_PARTITIONS:
                conn.execute(self._insert_ignoring_duplicates(relay_cursors), rows)

    # -- claiming -------------------------------------------------------------------------
    def _candidates(self, channel: str, partitions: Collection[int]) -> Any:
        from finfactory.adapters.sqlalchemy.tables import outbox, relay_cursors

        c = relay_cursors
        pending = (
            select(outbox.c.position)
            .where(outbox.c.partition == c.c.partition, outbox.c.position > c.c.last_position)
            .exists()
        )
        return (
            select(c.c.partition, c.c.last_position)
            .where(c.c.channel == channel, c.c.partition.in_(sorted(partitions)), pending)
            .order_by(c.c.updated_at, c.c.partition)
        )

    def _batch(
        self, conn: Connection, channel: str, partition: int, after: int, limit: int
    ) -> PartitionBatch:
        from finfactory.adapters.sqlalchemy.kernel_store import read_envelopes

        events = tuple(
            read_envelopes(
                conn,
                "partition = :partition AND position > :after",
                {"partition": partition, "after": after},
                limit,
            )
        )
        return PartitionBatch(partition, after, events, self._blocked(conn, channel, partition))

    def _blocked(self, conn: Connection, channel: str, partition: int) -> dict[AggregateKey, int]:
        from finfactory.adapters.sqlalchemy.tables import relay_dead_letters as d

        rows = conn.execute(
            select(d.c.aggregate_type, d.c.aggregate_id, func.min(d.c.position))
            .where(d.c.channel == channel, d.c.resolved_at.is_(None))
            .group_by(d.c.aggregate_type, d.c.aggregate_id)
        )
        return {
            (kind, ident): int(root)
            for kind, ident, root in rows
            if partition_of(kind, ident) == partition
        }

    def claim(self, channel: str, partitions: Collection[int], limit: int) -> PartitionLease | None:
        if not partitions:
            return None
        if self._leases is None:
            return self._claim_row_lock(channel, partitions, limit)
        return self._claim_in_process(self._leases, channel, partitions, limit)

    def _claim_row_lock(
        self, channel: str, partitions: Collection[int], limit: int
    ) -> PartitionLease | None:
        from finfactory.adapters.sqlalchemy.tables import relay_cursors

        held = _Held(self.storage.transaction())
        try:
            query = self._candidates(channel, partitions).limit(1)
            row = held.connection.execute(
                query.with_for_update(skip_locked=True, of=relay_cursors)
            ).first()
            if row is None:
                held.rollback()
                return None
            batch = self._batch(
                held.connection, channel, int(row.partition), int(row.last_position), limit
            )
        except BaseException:
            held.rollback()
            raise
        return _SqlPartitionLease(self, channel, batch, held)

    def _claim_in_process(
        self, leases: _Leases, channel: str, partitions: Collection[int], limit: int
    ) -> PartitionLease | None:
        from finfactory.adapters.sqlalchemy.tables import relay_cursors as c

        with self._read() as conn:
            candidates = [int(p) for p, _ in conn.execute(self._candidates(channel, partitions))]
        for partition in candidates:
            if not leases.try_take((channel, partition)):
                continue
            try:
                # Read after taking the lease: the previous holder committed before it let
                # go, so this snapshot has its cursor (the candidates' may be older).
                with self._read() as conn:
                    after = conn.execute(
                        select(c.c.last_position).where(
                            c.c.channel == channel, c.c.partition == partition
                        )
                    ).scalar_one()
                    batch = self._batch(conn, channel, partition, int(after), limit)
            except BaseException:
                leases.give((channel, partition))
                raise
            if batch.events:
                return _SqlPartitionLease(self, channel, batch, None)
            leases.give((channel, partition))
        return None

    def _complete(
        self,
        conn: Connection,
        channel: str,
        batch: PartitionBatch,
        position: int,
        letters: Sequence[DeadLetter],
        now: datetime,
    ) -> None:
        from finfactory.adapters.sqlalchemy.tables import relay_cursors as c
        from finfactory.adapters.sqlalchemy.tables import relay_dead_letters

        moved = conn.execute(
            update(c)
            .where(
                c.c.channel == channel,
                c.c.partition == batch.partition,
                c.c.last_position == batch.after,
            )
            .values(last_position=position, updated_at=now)
        )
        if moved.rowcount != 1:
            raise ConcurrencyError(
                "another relay moved this cursor; is a second relay process running on"
                " this SQLite database?",
                channel=channel,
                partition=batch.partition,
            )
        if letters:
            conn.execute(
                self._insert_ignoring_duplicates(relay_dead_letters),
                [attrs.asdict(letter) for letter in letters],
            )

    # -- dead letters ---------------------------------------------------------------------
    def lock_aggregate(
        self, channel: str, aggregate_type: str, aggregate_id: str
    ) -> AggregateLease:
        from finfactory.adapters.sqlalchemy.tables import relay_cursors as c

        partition = partition_of(aggregate_type, aggregate_id)
        if self._leases is None:
            held = _Held(self.storage.transaction())
            try:
                held.connection.execute(
                    select(c.c.partition)
                    .where(c.c.channel == channel, c.c.partition == partition)
                    .with_for_update()
                ).all()
                letters, events = self._aggregate_letters(
                    held.connection, channel, aggregate_type, aggregate_id
                )
            except BaseException:
                held.rollback()
                raise
            return _SqlAggregateLease(self, channel, partition, letters, events, held)
        self._leases.take((channel, partition))
        try:
            with self._read() as conn:
                letters, events = self._aggregate_letters(
                    conn, channel, aggregate_type, aggregate_id
                )
        except BaseException:
            self._leases.give((channel, partition))
            raise
        return _SqlAggregateLease(self, channel, partition, letters, events, None)

    def _aggregate_letters(
        self, conn: Connection, channel: str, aggregate_type: str, aggregate_id: str
    ) -> tuple[list[DeadLetter], list[EventEnvelope]]:
        from finfactory.adapters.sqlalchemy.kernel_store import read_envelopes
        from finfactory.adapters.sqlalchemy.tables import relay_dead_letters as d

        rows = conn.execute(
            select(d)
            .where(
                d.c.channel == channel,
                d.c.aggregate_type == aggregate_type,
                d.c.aggregate_id == aggregate_id,
                d.c.resolved_at.is_(None),
            )
            .order_by(d.c.position)
        )
        letters = [_letter(row._mapping) for row in rows]
        if not letters:
            return [], []
        positions = {f"p{i}": letter.position for i, letter in enumerate(letters)}
        events = read_envelopes(
            conn, f"position IN ({', '.join(':' + name for name in positions)})", positions
        )
        if len(events) != len(letters):
            raise ConcurrencyError("dead-lettered events are missing from the outbox")
        return letters, events

    def _finish(
        self,
        conn: Connection,
        channel: str,
        letters: Sequence[DeadLetter],
        resolved: Sequence[int],
        reroot: DeadLetter | None,
        now: datetime,
    ) -> None:
        from finfactory.adapters.sqlalchemy.tables import relay_dead_letters as d

        if resolved:
            conn.execute(
                update(d)
                .where(d.c.channel == channel, d.c.position.in_(list(resolved)))
                .values(resolved_at=now)
            )
        if reroot is not None:
            conn.execute(
                update(d)
                .where(d.c.channel == channel, d.c.position == reroot.position)
                .values(
                    blocked_by=None,
                    attempts=reroot.attempts,
                    reason=reroot.reason,
                    dead_at=reroot.dead_at,
                )
            )
            later = [x.position for x in letters if x.position > reroot.position]
            if later:
                conn.execute(
                    update(d)
                    .where(d.c.channel == channel, d.c.position.in_(later))
                    .values(blocked_by=reroot.position)
                )

    def dead_letters(self, channel: str, *, include_resolved: bool = False) -> list[DeadLetter]:
        from finfactory.adapters.sqlalchemy.tables import relay_dead_letters as d

        query = select(d).where(d.c.channel == channel).order_by(d.c.position)
        if not include_resolved:
            query = query.where(d.c.resolved_at.is_(None))
        with self._read() as conn:
            return [_letter(row._mapping) for row in conn.execute(query)]

    # -- observability and retention ------------------------------------------------------
    def lag(self, channel: str) -> ChannelLag:
        from finfactory.adapters.sqlalchemy.tables import outbox as o
        from finfactory.adapters.sqlalchemy.tables import relay_cursors as c
        from finfactory.adapters.sqlalchemy.tables import relay_dead_letters as d

        behind = o.join(c, and_(c.c.channel == channel, c.c.partition == o.c.partition))
        with self._read() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(o.c.recorded_at))
                .select_from(behind)
                .where(o.c.position > c.c.last_position)
            ).one()
            unresolved, waiting = conn.execute(
                select(func.count(d.c.position), func.count(d.c.blocked_by)).where(
                    d.c.channel == channel, d.c.resolved_at.is_(None)
                )
            ).one()
        return ChannelLag(int(count), oldest, int(unresolved) - int(waiting), int(waiting))

    def cursors(self, channel: str) -> dict[int, int]:
        from finfactory.adapters.sqlalchemy.tables import relay_cursors as c

        with self._read() as conn:
            rows = conn.execute(
                select(c.c.partition, c.c.last_position).where(c.c.channel == channel)
            )
            return {int(p): int(last) for p, last in rows}

    def purge(self, cutoff: datetime, limit: int) -> int:
        from finfactory.adapters.sqlalchemy.tables import outbox, relay_cursors, relay_dead_letters

        o, c, d = outbox.alias("o"), relay_cursors, relay_dead_letters
        floor = (
            select(func.min(c.c.last_position))
            .where(c.c.partition == o.c.partition)
            .scalar_subquery()
        )
        unresolved = (
            select(d.c.position)
            .where(d.c.position == o.c.position, d.c.resolved_at.is_(None))
            .exists()
        )
        doomed = (
            select(o.c.position)
            .where(o.c.recorded_at < cutoff, o.c.position <= floor, ~unresolved)
            .order_by(o.c.position)
            .limit(limit)
        )
        with self._write() as conn:
            result = conn.execute(delete(outbox).where(outbox.c.position.in_(doomed)))
            return int(result.rowcount)


class _SqlLease:
    """A partition held by one relay: its writes go into the held transaction (PostgreSQL)
    or a fresh one (SQLite), and releasing it gives the partition back either way."""

    def __init__(
        self, store: SqlRelayStore, channel: str, partition: int, held: _Held | None
    ) -> None:
        self._store = store
        self._channel = channel
        self._partition = partition
        self._held = held
        self._open = True

    def _settle(self, write: Callable[[Connection], None]) -> None:
        if not self._open:
            raise RuntimeError("lease already released")
        try:
            if self._held is None:
                with self._store._write() as conn:
                    write(conn)
            else:
                write(self._held.connection)
                self._held.commit()
        finally:
            self.abandon()

    def abandon(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._held is not None:
            self._held.rollback()
        elif self._store._leases is not None:
            self._store._leases.give((self._channel, self._partition))


class _SqlPartitionLease(_SqlLease):
    def __init__(
        self, store: SqlRelayStore, channel: str, batch: PartitionBatch, held: _Held | None
    ) -> None:
        super().__init__(store, channel, batch.partition, held)
        self._batch = batch

    @property
    def batch(self) -> PartitionBatch:
        return self._batch

    def complete(self, position: int, letters: Sequence[DeadLetter], now: datetime) -> None:
        self._settle(
            lambda conn: self._store._complete(
                conn, self._channel, self._batch, position, letters, now
            )
        )


class _SqlAggregateLease(_SqlLease):
    def __init__(
        self,
        store: SqlRelayStore,
        channel: str,
        partition: int,
        letters: list[DeadLetter],
        events: list[EventEnvelope],
        held: _Held | None,
    ) -> None:
        super().__init__(store, channel, partition, held)
        self._letters = letters
        self._events = events

    @property
    def letters(self) -> list[DeadLetter]:
        return self._letters

    @property
    def events(self) -> list[EventEnvelope]:
        return self._events

    def finish(self, resolved: Sequence[int], reroot: DeadLetter | None, now: datetime) -> None:
        self._settle(
            lambda conn: self._store._finish(
                conn, self._channel, self._letters, resolved, reroot, now
            )
        )


def _letter(m: Any) -> DeadLetter:
    return DeadLetter(
        channel=m["channel"],
        position=int(m["position"]),
        event_id=m["event_id"],
        aggregate_type=m["aggregate_type"],
        aggregate_id=m["aggregate_id"],
        attempts=int(m["attempts"]),
        reason=m["reason"],
        blocked_by=None if m["blocked_by"] is None else int(m["blocked_by"]),
        dead_at=m["dead_at"],
        resolved_at=m["resolved_at"],
    )


# -- memory -------------------------------------------------------------------------------

CURSORS = "ff_relay_cursors"
DEAD_LETTERS = "ff_relay_dead_letters"
OUTBOX = "ff_outbox"


@attrs.frozen
class _Cursor:
    last_position: int
    updated_at: datetime


class MemoryRelayStore:
    """:class:`RelayStore` in a :class:`~finfactory.adapters.memory.MemoryDatabase`: tables
    ``ff_relay_cursors`` ((channel, partition) -> cursor) and ``ff_relay_dead_letters``
    ((channel, position) -> :class:`DeadLetter`), same semantics as the SQL tables."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage
        self._leases = _memory_leases(storage.db)

    def notification_conninfo(self) -> str | None:
        return None

    def ensure_cursors(self, channel: str, now: datetime) -> None:
        with self.storage.transaction() as uow:
            for partition in range(RELAY_PARTITIONS):
                if uow.get(CURSORS, (channel, partition)) is None:
                    uow.put(CURSORS, (channel, partition), _Cursor(0, now))

    @staticmethod
    def _cursor_rows(uow: MemoryUnitOfWork, channel: str) -> dict[int, _Cursor]:
        return {p: row for (ch, p), row in uow.db.table(CURSORS).items() if ch == channel}

    @staticmethod
    def _blocked(uow: MemoryUnitOfWork, channel: str, partition: int) -> dict[AggregateKey, int]:
        blocked: dict[AggregateKey, int] = {}
        for (ch, position), letter in uow.db.table(DEAD_LETTERS).items():
            key = (letter.aggregate_type, letter.aggregate_id)
            if ch != channel or letter.resolved_at is not None or partition_of(*key) != partition:
                continue
            blocked[key] = min(position, blocked.get(key, position))
        return blocked

    def claim(self, channel: str, partitions: Collection[int], limit: int) -> PartitionLease | None:
        wanted = set(partitions)
        with self.storage.read() as uow:
            cursors = {p: c for p, c in self._cursor_rows(uow, channel).items() if p in wanted}
            pending: dict[int, list[EventEnvelope]] = {}
            for position, event in uow.db.table(OUTBOX).items():
                partition = partition_of(event.aggregate_type, event.aggregate_id)
                cursor = cursors.get(partition)
                if cursor is not None and position > cursor.last_position:
                    pending.setdefault(partition, []).append(event)
            for partition in sorted(pending, key=lambda p: (cursors[p].updated_at, p)):
                if not self._leases.try_take((channel, partition)):
                    continue
                events = sorted(pending[partition], key=lambda e: e.position or 0)[:limit]
                batch = PartitionBatch(
                    partition,
                    cursors[partition].last_position,
                    tuple(events),
                    self._blocked(uow, channel, partition),
                )
                return _MemoryPartitionLease(self, channel, batch)
        return None

    def lock_aggregate(
        self, channel: str, aggregate_type: str, aggregate_id: str
    ) -> AggregateLease:
        partition = partition_of(aggregate_type, aggregate_id)
        self._leases.take((channel, partition))
        try:
            letters, events = self._aggregate_letters(channel, aggregate_type, aggregate_id)
        except BaseException:
            self._leases.give((channel, partition))
            raise
        return _MemoryAggregateLease(self, channel, partition, letters, events)

    def _aggregate_letters(
        self, channel: str, aggregate_type: str, aggregate_id: str
    ) -> tuple[list[DeadLetter], list[EventEnvelope]]:
        with self.storage.read() as uow:
            letters = sorted(
                (
                    letter
                    for (ch, _), letter in uow.db.table(DEAD_LETTERS).items()
                    if ch == channel
                    and letter.resolved_at is None
                    and letter.aggregate_type == aggregate_type
                    and letter.aggregate_id == aggregate_id
                ),
                key=lambda letter: letter.position,
            )
            outbox = uow.db.table(OUTBOX)
            return letters, [outbox[letter.position] for letter in letters]

    def dead_letters(self, channel: str, *, include_resolved: bool = False) -> list[DeadLetter]:
        with self.storage.read() as uow:
            rows = [
                letter
                for (ch, _), letter in uow.db.table(DEAD_LETTERS).items()
                if ch == channel and (include_resolved or letter.resolved_at is None)
            ]
        return sorted(rows, key=lambda letter: letter.position)

    def lag(self, channel: str) -> ChannelLag:
        with self.storage.read() as uow:
            cursors = self._cursor_rows(uow, channel)
            count, oldest = 0, None
            for position, event in uow.db.table(OUTBOX).items():
                cursor = cursors.get(partition_of(event.aggregate_type, event.aggregate_id))
                if cursor is not None and position > cursor.last_position:
                    count += 1
                    if oldest is None or event.recorded_at < oldest:
                        oldest = event.recorded_at
            letters = [
                letter
                for (ch, _), letter in uow.db.table(DEAD_LETTERS).items()
                if ch == channel and letter.resolved_at is None
            ]
        waiting = sum(1 for letter in letters if letter.blocked_by is not None)
        return ChannelLag(count, oldest, len(letters) - waiting, waiting)

    def cursors(self, channel: str) -> dict[int, int]:
        with self.storage.read() as uow:
            return {p: c.last_position for p, c in self._cursor_rows(uow, channel).items()}

    def purge(self, cutoff: datetime, limit: int) -> int:
        with self.storage.transaction() as uow:
            floors: dict[int, int] = {}
            for (_, partition), cursor in uow.db.table(CURSORS).items():
                floors[partition] = min(
                    cursor.last_position, floors.get(partition, cursor.last_position)
                )
            held = {
                position
                for (_, position), letter in uow.db.table(DEAD_LETTERS).items()
                if letter.resolved_at is None
            }
            outbox = uow.db.table(OUTBOX)
            doomed = [
                position
                for position, event in sorted(outbox.items())
                if event.recorded_at < cutoff
                and position
                <= floors.get(partition_of(event.aggregate_type, event.aggregate_id), 0)
                and position not in held
            ][:limit]
            for position in doomed:  # the last write of the transaction: no undo needed
                del outbox[position]
            return len(doomed)


class _MemoryPartitionLease:
    def __init__(self, store: MemoryRelayStore, channel: str, batch: PartitionBatch) -> None:
        self._store = store
        self._channel = channel
        self._batch = batch
        self._open = True

    @property
    def batch(self) -> PartitionBatch:
        return self._batch

    def complete(self, position: int, letters: Sequence[DeadLetter], now: datetime) -> None:
        if not self._open:
            raise RuntimeError("lease already released")
        key = (self._channel, self._batch.partition)
        try:
            with self._store.storage.transaction() as uow:
                cursor = uow.get(CURSORS, key)
                if cursor is None or cursor.last_position != self._batch.after:
                    raise ConcurrencyError("another relay moved this cursor", partition=key[1])
                uow.put(CURSORS, key, _Cursor(position, now))
                for letter in letters:
                    if uow.get(DEAD_LETTERS, (self._channel, letter.position)) is None:
                        uow.put(DEAD_LETTERS, (self._channel, letter.position), letter)
        finally:
            self.abandon()

    def abandon(self) -> None:
        if self._open:
            self._open = False
            self._store._leases.give((self._channel, self._batch.partition))


class _MemoryAggregateLease:
    def __init__(
        self,
        store: MemoryRelayStore,
        channel: str,
        partition: int,
        letters: list[DeadLetter],
        events: list[EventEnvelope],
    ) -> None:
        self._store = store
        self._channel = channel
        self._partition = partition
        self._letters = letters
        self._events = events
        self._open = True

    @property
    def letters(self) -> list[DeadLetter]:
        return self._letters

    @property
    def events(self) -> list[EventEnvelope]:
        return self._events

    def finish(self, resolved: Sequence[int], reroot: DeadLetter | None, now: datetime) -> None:
        if not self._open:
            raise RuntimeError("lease already released")
        done = set(resolved)
        try:
            with self._store.storage.transaction() as uow:
                for letter in self._letters:
                    key = (self._channel, letter.position)
                    if letter.position in done:
                        uow.put(DEAD_LETTERS, key, attrs.evolve(letter, resolved_at=now))
                    elif reroot is not None and letter.position == reroot.position:
                        uow.put(DEAD_LETTERS, key, attrs.evolve(reroot, blocked_by=None))
                    elif reroot is not None and letter.position > reroot.position:
                        uow.put(DEAD_LETTERS, key, attrs.evolve(letter, blocked_by=reroot.position))
        finally:
            self.abandon()

    def abandon(self) -> None:
        if self._open:
            self._open = False
            self._store._leases.give((self._channel, self._partition))
