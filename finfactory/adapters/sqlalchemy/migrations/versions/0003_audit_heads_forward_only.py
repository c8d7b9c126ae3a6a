"""Audit heads only move forward: a head cannot be deleted or wound back, so the chain
cannot be truncated by the application's own database role without disabling triggers
(the TRUNCATE statement, which fires no row trigger, only since migration 0016).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE FUNCTION ff_audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.last_sequence < OLD.last_sequence THEN
    RAISE EXCEPTION 'audit heads only move forward' USING ERRCODE = '23514';
  END IF;
  RETURN NEW;
END $$;
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER ff_audit_heads_forward_only BEFORE UPDATE OR DELETE"
            " ON ff_audit_heads FOR EACH ROW EXECUTE FUNCTION ff_audit_head_forward_only()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER ff_audit_heads_no_rewind BEFORE UPDATE ON ff_audit_heads"
            " WHEN NEW.last_sequence < OLD.last_sequence"
            " BEGIN SELECT RAISE(ABORT, 'audit heads only move forward'); END"
        )
        op.execute(
            "CREATE TRIGGER ff_audit_heads_no_delete BEFORE DELETE ON ff_audit_heads"
            " BEGIN SELECT RAISE(ABORT, 'audit heads only move forward'); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER ff_audit_heads_forward_only ON ff_audit_heads")
        op.execute("DROP FUNCTION ff_audit_head_forward_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER ff_audit_heads_no_rewind")
        op.execute("DROP TRIGGER ff_audit_heads_no_delete")
