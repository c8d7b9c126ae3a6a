"""PostgreSQL JSON columns keep their text (json, not jsonb); on SQLite, INSERT OR REPLACE
cannot overwrite journals, entries or audit records.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON_COLUMNS = (
    ("ff_idempotency", "response"),
    ("ff_outbox", "payload"),
    ("ff_tenant_config", "values"),
    ("ledger_accounts", "metadata"),
    ("ledger_journals", "metadata"),
    ("ledger_holds", "metadata"),
)

# (table, condition matching an existing row with the new row's primary key)
SQLITE_KEYS = (
    ("ledger_journals", "id = NEW.id"),
    ("ledger_entries", "journal_id = NEW.journal_id AND leg = NEW.leg"),
    ("ff_audit_log", "tenant_id = NEW.tenant_id AND sequence = NEW.sequence"),
)


def _retype(kind: str) -> None:
    for table, column in JSON_COLUMNS:
        op.execute(
            f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {kind} USING "{column}"::{kind}'
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _retype("json")
    elif dialect == "sqlite":
        # REPLACE deletes the old row without firing DELETE triggers; refuse it up front.
        for table, same_key in SQLITE_KEYS:
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}"
                f" WHEN EXISTS (SELECT 1 FROM {table} WHERE {same_key})"
                f" BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _retype("jsonb")
    elif dialect == "sqlite":
        for table, _ in SQLITE_KEYS:
            op.execute(f"DROP TRIGGER {table}_no_replace")
