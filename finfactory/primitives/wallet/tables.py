"""Tables the wallet owns (prefix ``wallet_``). Money is in the ledger; these hold the
wallets, the per-customer usage counters the limits are checked against, the customers'
limit overrides and what each movement was for."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from finfactory.adapters.sqlalchemy.types import JsonDocument, UtcDateTime

metadata = MetaData()

wallets = Table(
    "wallet_wallets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("ledger_account_id", String(36), nullable=False),
    Column("metadata", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", BigInteger, nullable=False),
    UniqueConstraint("ledger_account_id", name="uq_wallet_wallets_ledger_account"),
    CheckConstraint("kind IN ('personal','merchant')", name="ck_wallet_wallets_kind"),
    CheckConstraint(
        "status IN ('created','active','suspended','closed')", name="ck_wallet_wallets_status"
    ),
    Index("ix_wallet_wallets_customer", "tenant_id", "customer_id", "currency"),
)

usage = Table(
    "wallet_usage",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("day", String(10), nullable=False),
    Column("day_in", BigInteger, nullable=False),
    Column("day_out", BigInteger, nullable=False),
    Column("month", String(7), nullable=False),
    Column("month_in", BigInteger, nullable=False),
    Column("month_out", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "customer_id", "currency", name="pk_wallet_usage"),
    CheckConstraint(
        "day_in >= 0 AND day_out >= 0 AND month_in >= 0 AND month_out >= 0",
        name="ck_wallet_usage_non_negative",
    ),
)

limit_overrides = Table(
    "wallet_limit_overrides",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance_cap", BigInteger, nullable=True),
    Column("daily_in", BigInteger, nullable=True),
    Column("monthly_in", BigInteger, nullable=True),
    Column("daily_out", BigInteger, nullable=True),
    Column("monthly_out", BigInteger, nullable=True),
    Column("per_transaction", BigInteger, nullable=True),
    Column("reason", Text, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "customer_id", "currency", name="pk_wallet_limit_overrides"),
    CheckConstraint(
        "COALESCE(balance_cap, 0) >= 0 AND COALESCE(daily_in, 0) >= 0"
        " AND COALESCE(monthly_in, 0) >= 0 AND COALESCE(daily_out, 0) >= 0"
        " AND COALESCE(monthly_out, 0) >= 0 AND COALESCE(per_transaction, 0) >= 0",
        name="ck_wallet_limit_overrides_non_negative",
    ),
)

movements = Table(
    "wallet_movements",
    metadata,
    Column(
        "position",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(36), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("journal_id", String(36), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("from_wallet_id", String(36), ForeignKey("wallet_wallets.id"), nullable=True),
    Column("to_wallet_id", String(36), ForeignKey("wallet_wallets.id"), nullable=True),
    Column("counterparty_account_id", String(36), nullable=True),
    Column("description", Text, nullable=False),
    Column("posted_at", UtcDateTime, nullable=False),
    UniqueConstraint("id", name="uq_wallet_movements_id"),
    UniqueConstraint("tenant_id", "reference", name="uq_wallet_movements_reference"),
    CheckConstraint("amount > 0", name="ck_wallet_movements_amount_positive"),
    CheckConstraint(
        "kind IN ('cash_in','cash_out','transfer','merchant_payment')",
        name="ck_wallet_movements_kind",
    ),
    CheckConstraint(
        "from_wallet_id IS NOT NULL OR to_wallet_id IS NOT NULL",
        name="ck_wallet_movements_has_wallet",
    ),
    Index("ix_wallet_movements_from", "from_wallet_id", "position"),
    Index("ix_wallet_movements_to", "to_wallet_id", "position"),
    sqlite_autoincrement=True,
)
