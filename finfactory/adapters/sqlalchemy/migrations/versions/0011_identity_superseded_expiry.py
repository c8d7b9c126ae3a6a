"""identity: a KYC case may expire as "superseded" (replaced by a higher tier's verification)

Revision ID: 0011_identity
Revises: 0006_identity
"""

from __future__ import annotations

from alembic import op

revision = "0011_identity"
down_revision = "0006_identity"
branch_labels = None
depends_on = None

TABLE = "identity_kyc_cases"
NAME = "ck_identity_kyc_expiry"
CALLBACKS = "identity_provider_callbacks"
PARKED = "identity_0011_parked_callbacks"


def _check(kinds: str) -> str:
    return (
        f"(expiry IS NULL AND status <> 'expired') OR (expiry IN ({kinds}) AND status = 'expired')"
    )


def _replace_check(kinds: str) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a CHECK by copying the table and dropping the old one. Dropping a
        # table whose rows other rows reference fails with foreign keys on (and they cannot
        # be switched off inside the migration's transaction), so the provider callbacks
        # that reference the cases step aside while the table is rebuilt.
        op.execute(f"CREATE TEMP TABLE {PARKED} AS SELECT * FROM {CALLBACKS}")
        op.execute(f"DELETE FROM {CALLBACKS}")
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(NAME, type_="check")
        batch.create_check_constraint(NAME, _check(kinds))
    if sqlite:
        op.execute(f"INSERT INTO {CALLBACKS} SELECT * FROM {PARKED}")
        op.execute(f"DROP TABLE {PARKED}")


def upgrade() -> None:
    _replace_check("'session','validity','superseded'")


def downgrade() -> None:
    # Back to how the code before this revision recorded things: a superseded verification
    # stayed "verified" with superseded_by set, and a review timeout was a session timeout.
    op.execute(
        f"UPDATE {TABLE} SET status = 'verified', expiry = NULL, expired_at = NULL,"
        " reason_codes = '[]' WHERE expiry = 'superseded'"
    )
    op.execute(
        f"UPDATE {TABLE} SET reason_codes = '[\"session_timeout\"]'"
        " WHERE expiry = 'session' AND CAST(reason_codes AS TEXT) LIKE '%review_timeout%'"
    )
    _replace_check("'session','validity'")
