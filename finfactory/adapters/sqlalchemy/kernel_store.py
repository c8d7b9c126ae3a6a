"""SQLAlchemy implementation of :class:`finfactory.kernel.ports.KernelStore`."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from finfactory.adapters.pending import HoldsBackAudits, PendingRows
from finfactory.adapters.sqlalchemy.driver import DriverSession, read_json, read_ts
from finfactory.adapters.sqlalchemy.tables import (
    audit_heads,
    audit_log,
    tenant_config,
)
from finfactory.events.envelope import EventEnvelope, StoredEventEnvelope
from finfactory.events.partitions import partition_of
from finfactory.kernel.audit import GENESIS_HASH, AuditDraft, AuditRecord, Outcome
from finfactory.kernel.canonical import canonical_json
from finfactory.kernel.errors import ConcurrencyError, IdempotencyConflict
from finfactory.kernel.ports import ConfigVersion, StoredOutcome

# Held from the first outbox insert to commit: outbox positions then follow commit order, so
# a reader's cursor can never pass a row that a slower transaction commits later.
OUTBOX_LOCK_KEY = zlib.crc32(b"finfactory.outbox.position")


_CLAIM = (
    "INSERT INTO ff_idempotency (tenant_id, key, command, request_hash, succeeded, response,"
    " created_at) VALUES (:tenant_id, :key, :command, :request_hash, NULL, NULL, :created_at)"
    " ON CONFLICT (tenant_id, key) DO NOTHING RETURNING key"
)
_STORED = (
    "SELECT command, request_hash, succeeded, response FROM ff_idempotency"
    " WHERE tenant_id = :tenant_id AND key = :key"
)
_COMPLETE = (
    "UPDATE ff_idempotency SET succeeded = :succeeded, response = :response"
    " WHERE tenant_id = :tenant_id AND key = :key"
)
# Oldest first through ix_ff_idempotency_created_at; a key still claimed by an open
# transaction (no outcome yet) is left alone.
_PURGE_IDEMPOTENCY = (
    "DELETE FROM ff_idempotency WHERE (tenant_id, key) IN (SELECT tenant_id, key"
    " FROM ff_idempotency WHERE created_at < :before AND succeeded IS NOT NULL"
    " ORDER BY created_at LIMIT :limit) RETURNING key"
)
_BUMP_HEAD = (
    "UPDATE ff_audit_heads SET last_sequence = last_sequence + :n WHERE tenant_id = :tenant_id"
    " RETURNING last_sequence, last_hash"
)
_NEW_HEAD = (
    "INSERT INTO ff_audit_heads (tenant_id, last_sequence, last_hash)"
    " VALUES (:tenant_id, 0, :genesis) ON CONFLICT (tenant_id) DO NOTHING"
)
_SET_HEAD = "UPDATE ff_audit_heads SET last_hash = :hash WHERE tenant_id = :tenant_id"
_INSERT_AUDIT_SQL = (
    "INSERT INTO ff_audit_log (tenant_id, sequence, id, occurred_at, actor_id, actor_kind,"
    " action, resource_type, resource_id, outcome, reason, trace_id, summary, prev_hash, hash)"
    " VALUES (:tenant_id, :sequence, :id, :occurred_at, :actor_id, :actor_kind, :action,"
    " :resource_type, :resource_id, :outcome, :reason, :trace_id, :summary, :prev_hash, :hash)"
)
_INSERT_EVENT_SQL = (
    "INSERT INTO ff_outbox (id, event_type, schema_version, tenant_id, source, aggregate_type,"
    " aggregate_id, aggregate_sequence, payload, recorded_at, trace_id, correlation_id,"
    " causation_id, partition) VALUES (:id, :event_type, :schema_version, :tenant_id, :source,"
    " :aggregate_type, :aggregate_id, :aggregate_sequence, :payload, :recorded_at, :trace_id,"
    " :correlation_id, :causation_id, :partition)"
)
_CONFIG_VERSIONS = (
    'SELECT section, version, "values", changed_by, changed_at, reason FROM ff_tenant_config'
    " WHERE tenant_id = :tenant_id AND section = :section ORDER BY version"
)
_LATEST_CONFIG = _CONFIG_VERSIONS + " DESC LIMIT 1"
_OUTBOX_LOCK = "SELECT pg_advisory_xact_lock(:key)"
_CONFIG_LOCK = "SELECT pg_advisory_xact_lock(:space, :key)"
_CONFIG_LOCK_SPACE = 0x66666366  # "ffcf"
OUTBOX_CHANNEL = "ff_outbox"
_NOTIFY = f"NOTIFY {OUTBOX_CHANNEL}"


class SqlKernelStore(HoldsBackAudits):
    def __init__(self, conn: Connection, driver: DriverSession) -> None:
        self._conn = conn
        self._drv = driver
        self._outbox_locked = False
        self._notified = False
        self._pending = PendingRows()

    def forget_locks(self) -> None:
        """The transaction rolled back to a savepoint taken before the outbox lock."""
        self._outbox_locked = False
        self._notified = False

    def _core(self) -> Connection:
        """The SQLAlchemy connection, after sending queued writes it may need to see."""
        self._drv.flush()
        return self._conn

    # -- idempotency --------------------------------------------------------------------
    def claim_idempotency(
        self, tenant_id: str, key: str, command: str, request_hash: str, now: datetime
    ) -> StoredOutcome | None:
        params = {
            "tenant_id": tenant_id,
            "key": key,
            "command": command,
            "request_hash": request_hash,
            "created_at": self._drv.ts(now),
        }
        if self._drv.query(_CLAIM, params):
            return None
        rows = self._drv.query(_STORED, {"tenant_id": tenant_id, "key": key})
        if not rows:
            # Purged (purge_idempotency_keys) between the claim and this read: the key is
            # free again, and running the command afresh claims it.
            raise ConcurrencyError("the idempotency key was purged meanwhile; retry", key=key)
        command_, request_hash_, succeeded, response = rows[0]
        if succeeded is None:
            raise IdempotencyConflict("idempotency key is in use by this same transaction", key=key)
        return StoredOutcome(command_, request_hash_, bool(succeeded), read_json(response))

    def complete_idempotency(
        self, tenant_id: str, key: str, succeeded: bool, response_json: str
    ) -> None:
        self._drv.queue(
            _COMPLETE,
            [
                {
                    "tenant_id": tenant_id,
                    "key": key,
                    "succeeded": self._drv.flag(succeeded),
                    "response": response_json,
                }
            ],
        )

    def purge_idempotency(self, created_before: datetime, limit: int) -> int:
        params = {"before": self._drv.ts(created_before), "limit": limit}
        return len(self._drv.query(_PURGE_IDEMPOTENCY, params))

    # -- audit ----------------------------------------------------------------------------
    def finish(self) -> None:
        """Write the deferred outbox events, then the audit records, as the transaction's
        last writes. Both take locks held to commit (the global outbox lock, each tenant's
        audit head); taking them last, outbox first and tenants in order, keeps every
        transaction's lock order the same, so they cannot deadlock."""
        events = self._pending.take_events()
        if events:
            self._write_events(events)
        for tenant_id, drafts in self._pending.take_audits_by_tenant():
            self._write_audits(tenant_id, drafts)

    def _write_audits(self, tenant_id: str, drafts: list[tuple[AuditDraft, Any]]) -> None:
        params = {"tenant_id": tenant_id, "n": len(drafts)}
        head = self._drv.query(_BUMP_HEAD, params)
        if not head:
            self._drv.queue(_NEW_HEAD, [{"tenant_id": tenant_id, "genesis": GENESIS_HASH}])
            head = self._drv.query(_BUMP_HEAD, params)
        last_sequence, prev_hash = int(head[0][0]), str(head[0][1])
        sequence = last_sequence - len(drafts)
        rows = []
        for draft, sealer in drafts:
            sequence += 1
            record: AuditRecord = sealer(draft, sequence, prev_hash)
            prev_hash = record.hash
            row = _audit_row(record)
            row["occurred_at"] = self._drv.ts(record.occurred_at)
            rows.append(row)
        self._drv.queue(_SET_HEAD, [{"tenant_id": tenant_id, "hash": prev_hash}])
        self._drv.queue(_INSERT_AUDIT_SQL, rows)

    def audit_records(
        self, tenant_id: str, *, after_sequence: int = 0, limit: int | None = None
    ) -> Iterator[AuditRecord]:
        # The primary key (tenant_id, sequence) finds the page: no scan of what precedes it.
        query = (
            select(audit_log)
            .where(audit_log.c.tenant_id == tenant_id, audit_log.c.sequence > after_sequence)
            .order_by(audit_log.c.sequence)
        )
        rows = self._core().execute(query if limit is None else query.limit(limit))
        for row in rows:
            yield AuditRecord(
                id=row.id,
                tenant_id=row.tenant_id,
                sequence=int(row.sequence),
                occurred_at=row.occurred_at,
                actor_id=row.actor_id,
                actor_kind=row.actor_kind,
                action=row.action,
                resource_type=row.resource_type,
                resource_id=row.resource_id,
                outcome=Outcome(row.outcome),
                reason=row.reason,
                trace_id=row.trace_id,
                summary=json.loads(row.summary),
                prev_hash=row.prev_hash,
                hash=row.hash,
            )

    def audit_head(self, tenant_id: str) -> tuple[int, str] | None:
        row = (
            self._core()
            .execute(
                select(audit_heads.c.last_sequence, audit_heads.c.last_hash).where(
                    audit_heads.c.tenant_id == tenant_id
                )
            )
            .first()
        )
        return None if row is None else (int(row.last_sequence), str(row.last_hash))

    # -- outbox ---------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventEnvelope], *, last: bool = False) -> None:
        self._pending.events.extend(events)
        if last:
            # No row lock follows, so the outbox lock may be taken now: the server inserts
            # the events while Python finishes the command.
            self._write_events(self._pending.take_events())
            self._drv.send()

    def _write_events(self, events: Sequence[EventEnvelope]) -> None:
        if self._drv.postgres and not self._outbox_locked:
            self._drv.queue(_OUTBOX_LOCK, [{"key": OUTBOX_LOCK_KEY}])
            self._outbox_locked = True
        drv = self._drv
        rows = []
        for e in events:
            row = _event_row(e)
            row["payload"] = drv.json(e.payload)
            row["recorded_at"] = drv.ts(e.recorded_at)
            row["partition"] = partition_of(e.aggregate_type, e.aggregate_id)
            rows.append(row)
        drv.queue(_INSERT_EVENT_SQL, rows)
        if drv.postgres and not self._notified:
            # Wakes LISTENing relays when this transaction commits (polling is the backstop).
            drv.queue(_NOTIFY, [{}])
            self._notified = True

    def read_events(
        self, after_position: int, limit: int, tenant_id: str | None = None
    ) -> list[EventEnvelope]:
        where = "position > :after"
        params: dict[str, Any] = {"after": after_position}
        if tenant_id is not None:
            where += " AND tenant_id = :tenant_id"
            params["tenant_id"] = tenant_id
        return read_envelopes(self._core(), where, params, limit)

    # -- tenant configuration ---------------------------------------------------------------
    def lock_config(self, tenant_id: str, section: str) -> None:
        if not self._drv.postgres:
            return  # SQLite: the transaction began IMMEDIATE, writers already take turns
        # The two-key form: its key space never meets the outbox lock's single bigint key.
        digest = hashlib.sha256(f"{tenant_id}\x00{section}".encode()).digest()
        key = int.from_bytes(digest[:4], "big", signed=True)
        # Queued: it reaches the server before the read of the latest version that follows.
        self._drv.queue(_CONFIG_LOCK, [{"space": _CONFIG_LOCK_SPACE, "key": key}])

    def config_latest(self, tenant_id: str, section: str) -> ConfigVersion | None:
        # Most commands read a setting: straight through the driver, in the write pipeline.
        rows = self._drv.query(_LATEST_CONFIG, {"tenant_id": tenant_id, "section": section})
        return _config(rows[0]) if rows else None

    def config_history(self, tenant_id: str, section: str) -> list[ConfigVersion]:
        rows = self._drv.query(_CONFIG_VERSIONS, {"tenant_id": tenant_id, "section": section})
        return [_config(row) for row in rows]

    def config_append(self, tenant_id: str, entry: ConfigVersion) -> None:
        self._core().execute(
            insert(tenant_config).values(
                tenant_id=tenant_id,
                section=entry.section,
                version=entry.version,
                values=entry.values,
                changed_by=entry.changed_by,
                changed_at=entry.changed_at,
                reason=entry.reason,
            )
        )


def _audit_row(rec: AuditRecord) -> dict[str, Any]:
    return {
        "tenant_id": rec.tenant_id,
        "sequence": rec.sequence,
        "id": rec.id,
        "occurred_at": rec.occurred_at,
        "actor_id": rec.actor_id,
        "actor_kind": rec.actor_kind,
        "action": rec.action,
        "resource_type": rec.resource_type,
        "resource_id": rec.resource_id,
        "outcome": Outcome(rec.outcome).value,
        "reason": rec.reason,
        "trace_id": rec.trace_id,
        "summary": canonical_json(rec.summary),
        "prev_hash": rec.prev_hash,
        "hash": rec.hash,
    }


def _event_row(e: EventEnvelope) -> dict[str, Any]:
    return {
        "id": e.id,
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "tenant_id": e.tenant_id,
        "source": e.source,
        "aggregate_type": e.aggregate_type,
        "aggregate_id": e.aggregate_id,
        "aggregate_sequence": e.aggregate_sequence,
        "payload": e.payload,
        "recorded_at": e.recorded_at,
        "trace_id": e.trace_id,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
    }


_ENVELOPE_COLUMNS = (
    "position, id, event_type, schema_version, {payload}, recorded_at, trace_id, tenant_id,"
    " source, aggregate_type, aggregate_id, aggregate_sequence, correlation_id, causation_id"
)


def read_envelopes(
    conn: Connection, where: str, params: dict[str, Any], limit: int | None = None
) -> list[EventEnvelope]:
    """The outbox rows matching ``where`` (SQL over ``ff_outbox`` columns with ``:name``
    parameters), in position order, read straight through the driver: relays and pollers
    read thousands of rows a second, and SQLAlchemy's per-row result processing and JSON
    decoding were most of that cost. Payloads stay JSON text until something reads them
    (a relay forwards the text as it is)."""
    # PostgreSQL's json type hands back the text as written.
    columns = _ENVELOPE_COLUMNS.format(
        payload="payload::text" if conn.dialect.name == "postgresql" else "payload"
    )
    sql = f"SELECT {columns} FROM ff_outbox WHERE {where} ORDER BY position"
    if limit is not None:
        sql += " LIMIT :row_limit"
        params = {**params, "row_limit": limit}
    return [
        StoredEventEnvelope.from_stored(
            row[4],
            id=row[1],
            event_type=row[2],
            schema_version=row[3],
            recorded_at=read_ts(row[5]),
            trace_id=row[6],
            tenant_id=row[7],
            source=row[8],
            aggregate_type=row[9],
            aggregate_id=row[10],
            aggregate_sequence=row[11],
            correlation_id=row[12],
            causation_id=row[13],
            position=row[0],
        )
        for row in DriverSession(conn).query(sql, params)
    ]


def _config(row: tuple[Any, ...]) -> ConfigVersion:
    """A row of ``_CONFIG_VERSIONS``, read through the driver."""
    section, version, values, changed_by, changed_at, reason = row
    return ConfigVersion(
        section=section,
        version=int(version),
        values=read_json(values),
        changed_by=changed_by,
        changed_at=read_ts(changed_at),
        reason=reason,
    )
