"""Tables QR Ph owns (prefix ``qrph_``). The database holds the invariants too: one account
number per merchant and unique in its tenant, one static QR per merchant, a dynamic QR's label
unique per merchant, at most one confirmed payment per dynamic QR, a network reference used
once per tenant, and outcomes that fit their status. No column holds a payer's name."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Table as _Table

from finfactory.adapters.sqlalchemy.types import UtcDateTime

metadata = MetaData()

merchant_accounts = _Table(
    "qrph_merchant_accounts",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("merchant_wallet_id", String(64), primary_key=True),
    Column("account_number", String(50), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "account_number", name="uq_qrph_merchant_accounts_number"),
)

codes = _Table(
    "qrph_codes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("merchant_wallet_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("initiation", String(8), nullable=False),
    Column("status", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("acquirer_id", String(11), nullable=False),
    Column("merchant_account", String(64), nullable=False),
    Column("merchant_name", String(25), nullable=False),
    Column("merchant_city", String(15), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=True),
    Column("reference_label", String(25), nullable=True),
    Column("postal_code", String(10), nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("paid_at", UtcDateTime, nullable=True),
    UniqueConstraint(
        "tenant_id", "merchant_account", "reference_label", name="uq_qrph_codes_label"
    ),
    CheckConstraint("kind IN ('p2m','p2p')", name="ck_qrph_codes_kind"),
    CheckConstraint(
        "(initiation = 'static' AND amount IS NULL AND reference_label IS NULL"
        " AND expires_at IS NULL AND status = 'active')"
        " OR (initiation = 'dynamic' AND amount > 0 AND reference_label IS NOT NULL"
        " AND expires_at IS NOT NULL AND status IN ('active','paid'))",
        name="ck_qrph_codes_initiation",
    ),
    CheckConstraint("(status = 'paid') = (paid_at IS NOT NULL)", name="ck_qrph_codes_paid"),
    Index(
        "uq_qrph_codes_static",
        "tenant_id",
        "merchant_account",
        unique=True,
        sqlite_where=text("initiation = 'static'"),
        postgresql_where=text("initiation = 'static'"),
    ),
    Index("ix_qrph_codes_merchant", "tenant_id", "merchant_wallet_id"),
)

payments = _Table(
    "qrph_payments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("qr_id", String(36), ForeignKey("qrph_codes.id"), nullable=False),
    Column("merchant_wallet_id", String(64), nullable=False),
    Column("initiation", String(8), nullable=False),
    Column("network_reference", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payer_wallet_id", String(64), nullable=True),
    Column("payer_institution", String(64), nullable=True),
    Column("status", String(10), nullable=False),
    Column("failure_reason", String(20), nullable=True),
    Column("failure_detail", String(100), nullable=True),
    Column("journal_id", String(64), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("version", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "network_reference", name="uq_qrph_payments_reference"),
    CheckConstraint("amount > 0", name="ck_qrph_payments_amount_positive"),
    CheckConstraint(
        "(channel = 'switch' AND payer_wallet_id IS NULL)"
        " OR (channel = 'on_us' AND payer_wallet_id IS NOT NULL)",
        name="ck_qrph_payments_channel",
    ),
    CheckConstraint(
        "(status = 'received' AND journal_id IS NULL AND failure_reason IS NULL"
        " AND resolved_at IS NULL)"
        " OR (status = 'confirmed' AND journal_id IS NOT NULL AND failure_reason IS NULL"
        " AND resolved_at IS NOT NULL)"
        " OR (status = 'failed' AND journal_id IS NULL AND resolved_at IS NOT NULL AND"
        " failure_reason IN ('expired','amount_mismatch','already_paid','rejected'))",
        name="ck_qrph_payments_outcome",
    ),
    Index(
        "uq_qrph_payments_one_time",
        "qr_id",
        unique=True,
        sqlite_where=text("initiation = 'dynamic' AND status = 'confirmed'"),
        postgresql_where=text("initiation = 'dynamic' AND status = 'confirmed'"),
    ),
    Index("ix_qrph_payments_qr", "tenant_id", "qr_id", "received_at"),
    Index("ix_qrph_payments_merchant", "tenant_id", "merchant_wallet_id", "received_at"),
)
