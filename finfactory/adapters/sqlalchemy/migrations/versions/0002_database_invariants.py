"""Invariants the database enforces itself: append-only journals, entries and audit log;
on PostgreSQL, a deferred check that every journal balances per currency.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("ledger_journals", "ledger_entries", "ff_audit_log")

PG_BALANCE_FUNCTION = """
CREATE FUNCTION ledger_check_journal_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM ledger_entries
    WHERE journal_id = NEW.journal_id
    GROUP BY currency
    HAVING SUM(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0
  ) THEN
    RAISE EXCEPTION 'journal % does not balance', NEW.journal_id USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END $$;
"""

PG_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION ff_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = '23514';
END $$;
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_BALANCE_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION ledger_check_journal_balanced()"
        )
        op.execute(PG_APPEND_ONLY_FUNCTION)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ff_refuse_change()"
            )
    elif dialect == "sqlite":
        for table in APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION ff_refuse_change()")
        op.execute("DROP TRIGGER ledger_entries_balanced ON ledger_entries")
        op.execute("DROP FUNCTION ledger_check_journal_balanced()")
    elif dialect == "sqlite":
        for table in APPEND_ONLY:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_no_{event}")
