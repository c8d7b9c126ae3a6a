"""wallet tables: wallets, per-customer usage counters, limit overrides, movements

Revision ID: 0007_wallet
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import finfactory.adapters.sqlalchemy.types

revision = "0007_wallet"
down_revision = "0005"
branch_labels = ("wallet",)
depends_on = None


def _ts() -> finfactory.adapters.sqlalchemy.types.UtcDateTime:
    return finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wallet_wallets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ledger_account_id", sa.String(length=36), nullable=False),
        sa.Column("metadata", finfactory.adapters.sqlalchemy.types.JsonDocument(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('personal','merchant')", name="ck_wallet_wallets_kind"),
        sa.CheckConstraint(
            "status IN ('created','active','suspended','closed')",
            name="ck_wallet_wallets_status",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ledger_account_id", name="uq_wallet_wallets_ledger_account"),
    )
    op.create_index(
        "ix_wallet_wallets_customer",
        "wallet_wallets",
        ["tenant_id", "customer_id", "currency"],
        unique=False,
    )
    op.create_table(
        "wallet_usage",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("day_in", sa.BigInteger(), nullable=False),
        sa.Column("day_out", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("month_in", sa.BigInteger(), nullable=False),
        sa.Column("month_out", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "day_in >= 0 AND day_out >= 0 AND month_in >= 0 AND month_out >= 0",
            name="ck_wallet_usage_non_negative",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", "currency", name="pk_wallet_usage"),
    )
    op.create_table(
        "wallet_limit_overrides",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_cap", sa.BigInteger(), nullable=True),
        sa.Column("daily_in", sa.BigInteger(), nullable=True),
        sa.Column("monthly_in", sa.BigInteger(), nullable=True),
        sa.Column("daily_out", sa.BigInteger(), nullable=True),
        sa.Column("monthly_out", sa.BigInteger(), nullable=True),
        sa.Column("per_transaction", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "COALESCE(balance_cap, 0) >= 0 AND COALESCE(daily_in, 0) >= 0"
            " AND COALESCE(monthly_in, 0) >= 0 AND COALESCE(daily_out, 0) >= 0"
            " AND COALESCE(monthly_out, 0) >= 0 AND COALESCE(per_transaction, 0) >= 0",
            name="ck_wallet_limit_overrides_non_negative",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "customer_id", "currency", name="pk_wallet_limit_overrides"
        ),
    )
    op.create_table(
        "wallet_movements",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("journal_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("from_wallet_id", sa.String(length=36), nullable=True),
        sa.Column("to_wallet_id", sa.String(length=36), nullable=True),
        sa.Column("counterparty_account_id", sa.String(length=36), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("posted_at", _ts(), nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_wallet_movements_amount_positive"),
        sa.CheckConstraint(
            "kind IN ('cash_in','cash_out','transfer','merchant_payment')",
            name="ck_wallet_movements_kind",
        ),
        sa.CheckConstraint(
            "from_wallet_id IS NOT NULL OR to_wallet_id IS NOT NULL",
            name="ck_wallet_movements_has_wallet",
        ),
        sa.ForeignKeyConstraint(["from_wallet_id"], ["wallet_wallets.id"]),
        sa.ForeignKeyConstraint(["to_wallet_id"], ["wallet_wallets.id"]),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("id", name="uq_wallet_movements_id"),
        sa.UniqueConstraint("tenant_id", "reference", name="uq_wallet_movements_reference"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_wallet_movements_from",
        "wallet_movements",
        ["from_wallet_id", "position"],
        unique=False,
    )
    op.create_index(
        "ix_wallet_movements_to", "wallet_movements", ["to_wallet_id", "position"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_wallet_movements_to", table_name="wallet_movements")
    op.drop_index("ix_wallet_movements_from", table_name="wallet_movements")
    op.drop_table("wallet_movements")
    op.drop_table("wallet_limit_overrides")
    op.drop_table("wallet_usage")
    op.drop_index("ix_wallet_wallets_customer", table_name="wallet_wallets")
    op.drop_table("wallet_wallets")
