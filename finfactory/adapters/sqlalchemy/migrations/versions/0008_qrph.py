"""QR Ph tables: QR codes and the payments made to them.

Revision ID: 0008_qrph
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import finfactory.adapters.sqlalchemy.types

revision = "0008_qrph"
down_revision = "0005"
branch_labels = ("qrph",)
depends_on = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(
        name, finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "qrph_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_wallet_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("initiation", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("acquirer_id", sa.String(length=11), nullable=False),
        sa.Column("merchant_account", sa.String(length=64), nullable=False),
        sa.Column("merchant_name", sa.String(length=25), nullable=False),
        sa.Column("merchant_city", sa.String(length=15), nullable=False),
        sa.Column("mcc", sa.String(length=4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("reference_label", sa.String(length=25), nullable=True),
        sa.Column("postal_code", sa.String(length=10), nullable=True),
        _ts("expires_at", nullable=True),
        _ts("created_at", nullable=False),
        _ts("paid_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "tenant_id", "merchant_account", "reference_label", name="uq_qrph_codes_label"
        ),
        sa.CheckConstraint("kind IN ('p2m','p2p')", name="ck_qrph_codes_kind"),
        sa.CheckConstraint(
            "(initiation = 'static' AND amount IS NULL AND reference_label IS NULL"
            " AND expires_at IS NULL AND status = 'active')"
            " OR (initiation = 'dynamic' AND amount > 0 AND reference_label IS NOT NULL"
            " AND expires_at IS NOT NULL AND status IN ('active','paid'))",
            name="ck_qrph_codes_initiation",
        ),
        sa.CheckConstraint("(status = 'paid') = (paid_at IS NOT NULL)", name="ck_qrph_codes_paid"),
    )
    op.create_index(
        "uq_qrph_codes_static",
        "qrph_codes",
        ["tenant_id", "merchant_account"],
        unique=True,
        sqlite_where=sa.text("initiation = 'static'"),
        postgresql_where=sa.text("initiation = 'static'"),
    )
    op.create_index("ix_qrph_codes_merchant", "qrph_codes", ["tenant_id", "merchant_wallet_id"])
    op.create_table(
        "qrph_payments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("qr_id", sa.String(length=36), nullable=False),
        sa.Column("merchant_wallet_id", sa.String(length=64), nullable=False),
        sa.Column("initiation", sa.String(length=8), nullable=False),
        sa.Column("network_reference", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payer_wallet_id", sa.String(length=64), nullable=True),
        sa.Column("payer_name", sa.String(length=140), nullable=True),
        sa.Column("payer_institution", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("failure_reason", sa.String(length=20), nullable=True),
        sa.Column("failure_detail", sa.String(length=100), nullable=True),
        sa.Column("journal_id", sa.String(length=64), nullable=True),
        _ts("received_at", nullable=False),
        _ts("resolved_at", nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["qr_id"], ["qrph_codes.id"]),
        sa.UniqueConstraint("tenant_id", "network_reference", name="uq_qrph_payments_reference"),
        sa.CheckConstraint("amount > 0", name="ck_qrph_payments_amount_positive"),
        sa.CheckConstraint(
            "(channel = 'switch' AND payer_wallet_id IS NULL)"
            " OR (channel = 'on_us' AND payer_wallet_id IS NOT NULL)",
            name="ck_qrph_payments_channel",
        ),
        sa.CheckConstraint(
            "(status = 'received' AND journal_id IS NULL AND failure_reason IS NULL"
            " AND resolved_at IS NULL)"
            " OR (status = 'confirmed' AND journal_id IS NOT NULL AND failure_reason IS NULL"
            " AND resolved_at IS NOT NULL)"
            " OR (status = 'failed' AND journal_id IS NULL AND resolved_at IS NOT NULL AND"
            " failure_reason IN ('expired','amount_mismatch','already_paid','rejected'))",
            name="ck_qrph_payments_outcome",
        ),
    )
    op.create_index(
        "uq_qrph_payments_one_time",
        "qrph_payments",
        ["qr_id"],
        unique=True,
        sqlite_where=sa.text("initiation = 'dynamic' AND status = 'confirmed'"),
        postgresql_where=sa.text("initiation = 'dynamic' AND status = 'confirmed'"),
    )
    op.create_index("ix_qrph_payments_qr", "qrph_payments", ["tenant_id", "qr_id", "received_at"])
    op.create_index(
        "ix_qrph_payments_merchant",
        "qrph_payments",
        ["tenant_id", "merchant_wallet_id", "received_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_qrph_payments_merchant", table_name="qrph_payments")
    op.drop_index("ix_qrph_payments_qr", table_name="qrph_payments")
    op.drop_index("uq_qrph_payments_one_time", table_name="qrph_payments")
    op.drop_table("qrph_payments")
    op.drop_index("ix_qrph_codes_merchant", table_name="qrph_codes")
    op.drop_index("uq_qrph_codes_static", table_name="qrph_codes")
    op.drop_table("qrph_codes")
