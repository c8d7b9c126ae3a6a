"""QR Ph: opaque merchant account numbers; payer names are no longer kept.

Merchants that already have QR codes keep the account their codes carry (their wallet id,
already printed), so those codes stay payable; new merchants get an opaque number. The
payer_name column and whatever it held are dropped.

Revision ID: 0009_qrph
Revises: 0008_qrph
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import finfactory.adapters.sqlalchemy.types

revision = "0009_qrph"
down_revision = "0008_qrph"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qrph_merchant_accounts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_wallet_id", sa.String(length=64), nullable=False),
        sa.Column("account_number", sa.String(length=50), nullable=False),
        sa.Column(
            "created_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant_id", "merchant_wallet_id"),
        sa.UniqueConstraint("tenant_id", "account_number", name="uq_qrph_merchant_accounts_number"),
    )
    op.execute(
        "INSERT INTO qrph_merchant_accounts"
        " (tenant_id, merchant_wallet_id, account_number, created_at)"
        " SELECT tenant_id, merchant_wallet_id, MIN(merchant_account), MIN(created_at)"
        " FROM qrph_codes GROUP BY tenant_id, merchant_wallet_id"
    )
    # SQLite (3.35+) drops a column that no index or constraint names in place.
    op.drop_column("qrph_payments", "payer_name")


def downgrade() -> None:
    op.add_column("qrph_payments", sa.Column("payer_name", sa.String(length=140), nullable=True))
    op.drop_table("qrph_merchant_accounts")
