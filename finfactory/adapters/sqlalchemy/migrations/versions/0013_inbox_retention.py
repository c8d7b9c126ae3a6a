"""kernel: index each consumer's inbox rows by age, so that old ones can be purged

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ff_inbox_consumer_handled_at", "ff_inbox", ["consumer", "handled_at"])


def downgrade() -> None:
    op.drop_index("ix_ff_inbox_consumer_handled_at", table_name="ff_inbox")
