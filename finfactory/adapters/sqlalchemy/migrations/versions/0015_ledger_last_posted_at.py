"""ledger: each account remembers when its newest entry was posted

New entries are stamped no earlier, so an account's entries are in posting order by time as
well as by sequence, which balances as of a past instant rely on.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from finfactory.adapters.sqlalchemy.types import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD/DROP COLUMN on both databases (SQLite 3.35+): no table rebuild, so the
    # triggers and the rows that reference accounts stay as they are.
    op.add_column(
        "ledger_accounts", sa.Column("last_posted_at", UtcDateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE ledger_accounts SET last_posted_at = (SELECT max(e.posted_at)"
        " FROM ledger_entries e WHERE e.account_id = ledger_accounts.id)"
    )


def downgrade() -> None:
    op.drop_column("ledger_accounts", "last_posted_at")
