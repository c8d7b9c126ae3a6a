"""kernel: index idempotency keys by age, so that old ones can be purged

Revision ID: 0012
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ff_idempotency_created_at", "ff_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_ff_idempotency_created_at", table_name="ff_idempotency")
