"""SQLite: INSERT OR REPLACE cannot delete journals, entries or audit records through a
UNIQUE key other than the primary key (0005 only guards the primary keys), nor wind a
tenant's audit head back (0003 guards its UPDATE and DELETE only).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# (table, trigger name, columns of a UNIQUE key besides the primary key)
SQLITE_UNIQUE_KEYS = (
    ("ledger_journals", "ledger_journals_no_replace_reference", ("tenant_id", "reference")),
    ("ledger_journals", "ledger_journals_no_replace_reversal", ("reverses_journal_id",)),
    (
        "ledger_entries",
        "ledger_entries_no_replace_account_seq",
        ("account_id", "account_sequence"),
    ),
    ("ff_audit_log", "ff_audit_log_no_replace_id", ("id",)),
    # A head is inserted once per tenant, only when there is none (ON CONFLICT DO NOTHING).
    ("ff_audit_heads", "ff_audit_heads_no_replace", ("tenant_id",)),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL has no REPLACE; its append-only triggers cover UPDATE and DELETE
    for table, trigger, columns in SQLITE_UNIQUE_KEYS:
        # "=", not IS: a NULL (reverses_journal_id) never collides, so it must not be refused.
        same_key = " AND ".join(f"{column} = NEW.{column}" for column in columns)
        op.execute(
            f"CREATE TRIGGER {trigger} BEFORE INSERT ON {table}"
            f" WHEN EXISTS (SELECT 1 FROM {table} WHERE {same_key})"
            f" BEGIN SELECT RAISE(ABORT, '{table} rows cannot be replaced'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for _, trigger, _ in SQLITE_UNIQUE_KEYS:
        op.execute(f"DROP TRIGGER {trigger}")
