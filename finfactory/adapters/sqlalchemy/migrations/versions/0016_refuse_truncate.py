"""PostgreSQL: TRUNCATE of the append-only tables is refused too

Row triggers do not fire on TRUNCATE, so until now it emptied journals, entries, the audit
log and its heads without a trace, and every tenant's empty chain then verified. SQLite has
no TRUNCATE (its DELETE fires the row triggers).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

GUARDED = ("ledger_journals", "ledger_entries", "ff_audit_log", "ff_audit_heads")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in GUARDED:
        # ff_refuse_change (migration 0002) raises "<table> is append-only", SQLSTATE 23514.
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION ff_refuse_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in GUARDED:
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
