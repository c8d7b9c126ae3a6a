"""Tables the ledger owns (prefix ``ledger_``). The database holds the invariants too:
positive amounts, one side per entry, balance bounds, append-only journals and entries, and
on PostgreSQL a deferred check that each journal balances per currency."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Table as _Table

from finfactory.adapters.sqlalchemy.types import JsonDocument, UtcDateTime

metadata = MetaData()

accounts = _Table(
    "ledger_accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("code", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("type", String(16), nullable=False),
    Column("balance_bound", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("metadata", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_held", BigInteger, nullable=False),
    Column("credits_held", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("entry_count", BigInteger, nullable=False),
    Column("last_posted_at", UtcDateTime, nullable=True),
    UniqueConstraint("tenant_id", "code", name="uq_ledger_accounts_code"),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_held >= 0 AND credits_held >= 0",
        name="ck_ledger_accounts_totals_non_negative",
    ),
    CheckConstraint(
        "balance_bound <> 'debits_must_not_exceed_credits'"
        " OR debits_posted + debits_held <= credits_posted",
        name="ck_ledger_accounts_debit_bound",
    ),
    CheckConstraint(
        "balance_bound <> 'credits_must_not_exceed_debits'"
        " OR credits_posted + credits_held <= debits_posted",
        name="ck_ledger_accounts_credit_bound",
    ),
    CheckConstraint(
        "type IN ('asset','liability','equity','revenue','expense')", name="ck_ledger_accounts_type"
    ),
    CheckConstraint("status IN ('active','frozen','closed')", name="ck_ledger_accounts_status"),
)

journals = _Table(
    "ledger_journals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("description", Text, nullable=False),
    Column("metadata", JsonDocument, nullable=False),
    Column("posted_at", UtcDateTime, nullable=False),
    Column(
        "reverses_journal_id",
        String(36),
        ForeignKey("ledger_journals.id"),
        nullable=True,
        unique=True,
    ),
    UniqueConstraint("tenant_id", "reference", name="uq_ledger_journals_reference"),
)

entries = _Table(
    "ledger_entries",
    metadata,
    Column("journal_id", String(36), ForeignKey("ledger_journals.id"), nullable=False),
    Column("leg", Integer, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("account_id", String(36), ForeignKey("ledger_accounts.id"), nullable=False),
    Column("direction", String(6), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("account_sequence", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("posted_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("journal_id", "leg", name="pk_ledger_entries"),
    UniqueConstraint("account_id", "account_sequence", name="uq_ledger_entries_account_seq"),
    CheckConstraint("amount > 0", name="ck_ledger_entries_amount_positive"),
    CheckConstraint("direction IN ('debit','credit')", name="ck_ledger_entries_direction"),
    Index("ix_ledger_entries_account_time", "account_id", "posted_at"),
)

holds = _Table(
    "ledger_holds",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("debit_account_id", String(36), ForeignKey("ledger_accounts.id"), nullable=False),
    Column("credit_account_id", String(36), ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(10), nullable=False),
    Column("captured_amount", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("released_at", UtcDateTime, nullable=True),
    Column("capture_journal_id", String(36), ForeignKey("ledger_journals.id"), nullable=True),
    Column("metadata", JsonDocument, nullable=False),
    Column("version", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "reference", name="uq_ledger_holds_reference"),
    CheckConstraint("amount > 0", name="ck_ledger_holds_amount_positive"),
    CheckConstraint(
        "captured_amount >= 0 AND captured_amount <= amount", name="ck_ledger_holds_captured_range"
    ),
    CheckConstraint(
        "status IN ('pending','captured','voided','expired')", name="ck_ledger_holds_status"
    ),
    Index("ix_ledger_holds_due", "tenant_id", "status", "expires_at"),
)
