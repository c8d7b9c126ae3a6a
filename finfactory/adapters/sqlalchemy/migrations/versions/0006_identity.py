"""identity tables: customers (encrypted personal data), KYC cases, provider callbacks,
risk flags

Revision ID: 0006_identity
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import finfactory.adapters.sqlalchemy.types

revision = "0006_identity"
down_revision = "0005"
branch_labels = ("identity",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_customers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("pii_key_version", sa.Integer(), nullable=False),
        sa.Column("pii_given_name", sa.Text(), nullable=False),
        sa.Column("pii_family_name", sa.Text(), nullable=False),
        sa.Column("pii_birth_date", sa.Text(), nullable=False),
        sa.Column("pii_email", sa.Text(), nullable=True),
        sa.Column("pii_phone", sa.Text(), nullable=True),
        sa.Column("pii_id_document", sa.Text(), nullable=True),
        sa.Column("pii_document_refs", sa.Text(), nullable=True),
        sa.Column("document_hash", sa.String(length=64), nullable=True),
        sa.Column("email_hash", sa.String(length=64), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("latest_kyc_id", sa.String(length=36), nullable=True),
        sa.Column("verified_kyc_id", sa.String(length=36), nullable=True),
        sa.Column(
            "verified_until",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("kyc_blocked", sa.Boolean(), nullable=False),
        sa.Column("risk_flags", sa.Integer(), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_identity_customers_version"),
        sa.CheckConstraint("pii_key_version >= 1", name="ck_identity_customers_key_version"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "document_hash", name="uq_identity_customers_document"),
    )
    op.create_index(
        "ix_identity_customers_email", "identity_customers", ["tenant_id", "email_hash"]
    )
    op.create_index(
        "ix_identity_customers_phone", "identity_customers", ["tenant_id", "phone_hash"]
    )
    op.create_index(
        "ix_identity_customers_verified_until",
        "identity_customers",
        ["tenant_id", "verified_until"],
    )
    op.create_index(
        "ix_identity_customers_key_version", "identity_customers", ["tenant_id", "pii_key_version"]
    )
    op.create_table(
        "identity_kyc_cases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_reference", sa.String(length=128), nullable=False),
        sa.Column("in_review", sa.Boolean(), nullable=False),
        sa.Column("rejection", sa.String(length=16), nullable=True),
        sa.Column("expiry", sa.String(length=16), nullable=True),
        sa.Column(
            "reason_codes", finfactory.adapters.sqlalchemy.types.JsonDocument(), nullable=False
        ),
        sa.Column(
            "started_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "session_expires_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "decided_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "valid_until",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "expired_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("superseded_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "status IN ('started','verified','rejected','expired')", name="ck_identity_kyc_status"
        ),
        sa.CheckConstraint(
            "(rejection IS NULL AND status <> 'rejected')"
            " OR (rejection IN ('final','retryable') AND status = 'rejected')",
            name="ck_identity_kyc_rejection",
        ),
        sa.CheckConstraint(
            "(expiry IS NULL AND status <> 'expired')"
            " OR (expiry IN ('session','validity') AND status = 'expired')",
            name="ck_identity_kyc_expiry",
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["identity_customers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "provider_reference", name="uq_identity_kyc_reference"),
        sa.UniqueConstraint("customer_id", "attempt", name="uq_identity_kyc_attempt"),
    )
    op.create_index(
        "ix_identity_kyc_open",
        "identity_kyc_cases",
        ["tenant_id", "status", "session_expires_at"],
    )
    op.create_table(
        "identity_provider_callbacks",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("provider_reference", sa.String(length=128), nullable=False),
        sa.Column("callback_key", sa.String(length=64), nullable=False),
        sa.Column("kyc_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("effect", sa.String(length=16), nullable=False),
        sa.Column(
            "received_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["kyc_id"], ["identity_kyc_cases.id"]),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "provider_reference",
            "callback_key",
            name="pk_identity_provider_callbacks",
        ),
    )
    op.create_table(
        "identity_risk_flags",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("kyc_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "flagged_at",
            finfactory.adapters.sqlalchemy.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("flagged_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["identity_customers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_identity_risk_flags_customer", "identity_risk_flags", ["tenant_id", "customer_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_identity_risk_flags_customer", table_name="identity_risk_flags")
    op.drop_table("identity_risk_flags")
    op.drop_table("identity_provider_callbacks")
    op.drop_index("ix_identity_kyc_open", table_name="identity_kyc_cases")
    op.drop_table("identity_kyc_cases")
    for name in (
        "ix_identity_customers_key_version",
        "ix_identity_customers_verified_until",
        "ix_identity_customers_phone",
        "ix_identity_customers_email",
    ):
        op.drop_index(name, table_name="identity_customers")
    op.drop_table("identity_customers")
