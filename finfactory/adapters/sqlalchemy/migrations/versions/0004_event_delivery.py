"""Event delivery: outbox partitions, relay cursors, dead letters, consumer inbox.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import finfactory.adapters.sqlalchemy.types
from finfactory.events.partitions import partition_of

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ff_outbox") as batch:
        batch.add_column(
            sa.Column("partition", sa.SmallInteger(), nullable=False, server_default="0")
        )
    _backfill_partitions()
    op.create_index("ix_ff_outbox_partition_position", "ff_outbox", ["partition", "position"])
    op.create_table(
        "ff_relay_cursors",
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("channel", "partition", name="pk_ff_relay_cursors"),
    )
    op.create_table(
        "ff_relay_dead_letters",
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("aggregate_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("blocked_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "dead_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "resolved_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("channel", "position", name="pk_ff_relay_dead_letters"),
    )
    op.create_index(
        "ix_ff_relay_dead_letters_aggregate",
        "ff_relay_dead_letters",
        ["channel", "aggregate_type", "aggregate_id", "resolved_at"],
    )
    op.create_table(
        "ff_inbox",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column(
            "handled_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_ff_inbox"),
    )


def _backfill_partitions() -> None:
    """Existing rows get their aggregate's partition, so its old and new events share one."""
    bind = op.get_bind()
    outbox = sa.table(
        "ff_outbox",
        sa.column("position", sa.BigInteger()),
        sa.column("aggregate_type", sa.String()),
        sa.column("aggregate_id", sa.String()),
        sa.column("partition", sa.SmallInteger()),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(outbox.c.position, outbox.c.aggregate_type, outbox.c.aggregate_id)
            .where(outbox.c.position > last)
            .order_by(outbox.c.position)
            .limit(5000)
        ).all()
        if not rows:
            return
        for position, aggregate_type, aggregate_id in rows:
            bind.execute(
                sa.update(outbox)
                .where(outbox.c.position == position)
                .values(partition=partition_of(aggregate_type, aggregate_id))
            )
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_table("ff_inbox")
    op.drop_index("ix_ff_relay_dead_letters_aggregate", table_name="ff_relay_dead_letters")
    op.drop_table("ff_relay_dead_letters")
    op.drop_table("ff_relay_cursors")
    op.drop_index("ix_ff_outbox_partition_position", table_name="ff_outbox")
    if op.get_bind().dialect.name == "sqlite":
        # Native DROP COLUMN (SQLite >= 3.35): a batch rebuild would lose AUTOINCREMENT.
        op.execute("ALTER TABLE ff_outbox DROP COLUMN partition")
    else:
        op.drop_column("ff_outbox", "partition")
