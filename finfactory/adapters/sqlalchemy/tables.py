"""The kernel's own tables (prefix ``ff_``). Primitives declare theirs in their packages.

``ff_outbox`` is a documented, stable table: consumers may poll it directly, resuming from the
last ``position`` they handled (see docs/kernel.md).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from finfactory.adapters.sqlalchemy.types import JsonDocument, UtcDateTime

metadata = MetaData()

idempotency = Table(
    "ff_idempotency",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    Column("command", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("succeeded", Boolean, nullable=True),
    Column("response", JsonDocument, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "key", name="pk_ff_idempotency"),
    # For purge_idempotency: the oldest keys, without reading the whole table.
    Index("ix_ff_idempotency_created_at", "created_at"),
)

audit_log = Table(
    "ff_audit_log",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("actor_id", String(128), nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("action", String(100), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    PrimaryKeyConstraint("tenant_id", "sequence", name="pk_ff_audit_log"),
)

audit_heads = Table(
    "ff_audit_heads",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

outbox = Table(
    "ff_outbox",
    metadata,
    Column(
        "position",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(36), nullable=False, unique=True),
    Column("event_type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(64), nullable=False),
    Column("aggregate_sequence", BigInteger, nullable=False),
    Column("payload", JsonDocument, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("causation_id", String(64), nullable=True),
    Column("partition", SmallInteger, nullable=False, server_default="0"),
    UniqueConstraint(
        "tenant_id",
        "aggregate_type",
        "aggregate_id",
        "aggregate_sequence",
        name="uq_ff_outbox_aggregate_sequence",
    ),
    Index("ix_ff_outbox_tenant_position", "tenant_id", "position"),
    Index("ix_ff_outbox_partition_position", "partition", "position"),
    sqlite_autoincrement=True,
)

tenant_config = Table(
    "ff_tenant_config",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("section", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("values", JsonDocument, nullable=False),
    Column("changed_by", String(128), nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "section", "version", name="pk_ff_tenant_config"),
)

relay_cursors = Table(
    "ff_relay_cursors",
    metadata,
    Column("channel", String(64), nullable=False),
    Column("partition", SmallInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("channel", "partition", name="pk_ff_relay_cursors"),
)

relay_dead_letters = Table(
    "ff_relay_dead_letters",
    metadata,
    Column("channel", String(64), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    # The dead letter this event waits behind (same aggregate), or None for the failing one.
    Column("blocked_by", BigInteger, nullable=True),
    Column("dead_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("channel", "position", name="pk_ff_relay_dead_letters"),
    Index(
        "ix_ff_relay_dead_letters_aggregate",
        "channel",
        "aggregate_type",
        "aggregate_id",
        "resolved_at",
    ),
)

inbox = Table(
    "ff_inbox",
    metadata,
    Column("consumer", String(100), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("handled_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("consumer", "event_id", name="pk_ff_inbox"),
    # For IdempotentConsumer.purge_handled: a consumer's oldest rows first.
    Index("ix_ff_inbox_consumer_handled_at", "consumer", "handled_at"),
)
