"""In-memory storage: a dict per table, one writer at a time, rollback by undo log.

Public through :mod:`finfactory.testing`. It passes the same contract suite as the SQL
adapters, so a downstream team's unit tests see the behaviour production will have.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import attrs

from finfactory.adapters.pending import START, HoldsBackAudits, PendingRows
from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.audit import GENESIS_HASH, AuditRecord
from finfactory.kernel.errors import IdempotencyConflict, IntegrityViolation
from finfactory.kernel.ports import ConfigVersion, StoredOutcome

_MISSING = object()


class MemoryDatabase:
    """Tables are ``dict``s keyed by primary key; values are immutable records."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Any, Any]] = {}
        self.counters: dict[str, int] = {}
        self.lock = threading.RLock()

    def table(self, name: str) -> dict[Any, Any]:
        return self.tables.setdefault(name, {})

    def row_counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


class MemoryUnitOfWork:
    def __init__(self, db: MemoryDatabase, *, owns_transaction: bool = True) -> None:
        self.db = db
        self._undo: list[Callable[[], None]] = []
        self._owns = owns_transaction
        self._kernel = MemoryKernelStore(self)

    @property
    def kernel(self) -> MemoryKernelStore:
        return self._kernel

    @property
    def owns_transaction(self) -> bool:
        return self._owns

    def flush(self) -> None:
        """Writes apply at once in memory; nothing is buffered here."""

    def finish(self) -> None:
        """Write the waiting audit records and events, as the SQL adapters do right before
        their transaction commits (a transaction the caller owns calls this itself)."""
        self._kernel.finish()

    @contextmanager
    def savepoint(self, *, settle: bool = True) -> Iterator[None]:
        # Writes apply at once in memory: every savepoint is settled.
        mark = len(self._undo)
        pending = self._kernel.pending_marks()
        try:
            yield
        except BaseException:
            while len(self._undo) > mark:
                self._undo.pop()()
            self._kernel.truncate_pending(pending)
            raise

    def get(self, table: str, key: Any) -> Any:
        return self.db.table(table).get(key)

    def rows(self, table: str) -> list[Any]:
        return list(self.db.table(table).values())

    def put(self, table: str, key: Any, value: Any) -> None:
        rows = self.db.table(table)
        old = rows.get(key, _MISSING)

        def undo() -> None:
            if old is _MISSING:
                rows.pop(key, None)
            else:
                rows[key] = old

        self._undo.append(undo)
        rows[key] = value

    def delete(self, table: str, key: Any) -> None:
        rows = self.db.table(table)
        if key not in rows:
            return
        old = rows.pop(key)
        self._undo.append(lambda: rows.__setitem__(key, old))

    def next_value(self, counter: str) -> int:
        old = self.db.counters.get(counter, 0)
        self.db.counters[counter] = old + 1
        self._undo.append(lambda: self.db.counters.__setitem__(counter, old))
        return old + 1

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._kernel.truncate_pending(START)


class MemoryStorage:
    def __init__(self, db: MemoryDatabase | None = None) -> None:
        self.db = db or MemoryDatabase()

    @contextmanager
    def transaction(self) -> Iterator[MemoryUnitOfWork]:
        with self.db.lock:
            uow = MemoryUnitOfWork(self.db)
            try:
                yield uow
                uow.finish()
            except BaseException:
                uow.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[MemoryUnitOfWork]:
        with self.db.lock:
            uow = MemoryUnitOfWork(self.db)
            try:
                yield uow
            finally:
                uow.rollback()


@attrs.frozen
class _IdemRow:
    command: str
    request_hash: str
    succeeded: bool | None
    response: dict[str, Any] | None
    created_at: datetime


class MemoryKernelStore(HoldsBackAudits):
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow
        self._pending = PendingRows()

    def claim_idempotency(
        self, tenant_id: str, key: str, command: str, request_hash: str, now: datetime
    ) -> StoredOutcome | None:
        row = self._uow.get("ff_idempotency", (tenant_id, key))
        if row is None:
            self._uow.put(
                "ff_idempotency",
                (tenant_id, key),
                _IdemRow(command, request_hash, None, None, now),
            )
            return None
        if row.succeeded is None:
            raise IdempotencyConflict("idempotency key is in use by this same transaction", key=key)
        return StoredOutcome(
            row.command, row.request_hash, row.succeeded, copy.deepcopy(row.response)
        )

    def complete_idempotency(
        self, tenant_id: str, key: str, succeeded: bool, response_json: str
    ) -> None:
        row = self._uow.get("ff_idempotency", (tenant_id, key))
        self._uow.put(
            "ff_idempotency",
            (tenant_id, key),
            attrs.evolve(row, succeeded=succeeded, response=json.loads(response_json)),
        )

    def purge_idempotency(self, created_before: datetime, limit: int) -> int:
        done = sorted(
            (row.created_at, key)
            for key, row in self._uow.db.table("ff_idempotency").items()
            if row.created_at < created_before and row.succeeded is not None
        )[:limit]
        for _, key in done:
            self._uow.delete("ff_idempotency", key)
        return len(done)

    def finish(self) -> None:
        """Events, then audit records by tenant: the SQL adapter's order."""
        self._write_events(self._pending.take_events())
        for _tenant, drafts in self._pending.take_audits_by_tenant():
            for draft, sealer in drafts:
                head = self._uow.get("ff_audit_heads", draft.tenant_id) or (0, GENESIS_HASH)
                record = sealer(draft, head[0] + 1, head[1])
                self._uow.put("ff_audit_heads", draft.tenant_id, (record.sequence, record.hash))
                self._uow.put("ff_audit_log", (draft.tenant_id, record.sequence), record)

    def audit_records(
        self, tenant_id: str, *, after_sequence: int = 0, limit: int | None = None
    ) -> Iterator[AuditRecord]:
        table = self._uow.db.table("ff_audit_log")
        rows = sorted(
            (r for (t, seq), r in table.items() if t == tenant_id and seq > after_sequence),
            key=lambda r: r.sequence,
        )
        return iter(rows if limit is None else rows[:limit])

    def audit_head(self, tenant_id: str) -> tuple[int, str] | None:
        head = self._uow.get("ff_audit_heads", tenant_id)
        return None if head is None else (int(head[0]), str(head[1]))

    def append_events(self, events: Sequence[EventEnvelope], *, last: bool = False) -> None:
        self._pending.events.extend(events)
        if last:  # as the SQL adapter: written at once when no row lock follows
            self._write_events(self._pending.take_events())

    def _write_events(self, events: Sequence[EventEnvelope]) -> None:
        taken = self._uow.db.table("ff_outbox_aggregate_seq")
        for event in events:
            key = (
                event.tenant_id,
                event.aggregate_type,
                event.aggregate_id,
                event.aggregate_sequence,
            )
            if key in taken:
                raise IntegrityViolation("aggregate sequence already used", key=str(key))
            self._uow.put("ff_outbox_aggregate_seq", key, True)
            position = self._uow.next_value("ff_outbox")
            self._uow.put("ff_outbox", position, attrs.evolve(event, position=position))

    def read_events(
        self, after_position: int, limit: int, tenant_id: str | None = None
    ) -> list[EventEnvelope]:
        table = self._uow.db.table("ff_outbox")
        out: list[EventEnvelope] = []
        for position in sorted(p for p in table if p > after_position):
            if len(out) >= limit:  # checked first: a limit of 0 reads nothing, as in SQL
                break
            event = table[position]
            if tenant_id is None or event.tenant_id == tenant_id:
                out.append(event)
        return out

    def lock_config(self, tenant_id: str, section: str) -> None:
        """Nothing to do: one transaction runs at a time."""

    def config_latest(self, tenant_id: str, section: str) -> ConfigVersion | None:
        history = self.config_history(tenant_id, section)
        return history[-1] if history else None

    def config_history(self, tenant_id: str, section: str) -> list[ConfigVersion]:
        rows = self._uow.db.table("ff_tenant_config")
        found = [v for (t, s, _), v in rows.items() if t == tenant_id and s == section]
        return sorted(found, key=lambda v: v.version)

    def config_append(self, tenant_id: str, entry: ConfigVersion) -> None:
        key = (tenant_id, entry.section, entry.version)
        if self._uow.get("ff_tenant_config", key) is not None:
            raise IntegrityViolation("configuration version already exists", key=str(key))
        self._uow.put("ff_tenant_config", key, entry)
