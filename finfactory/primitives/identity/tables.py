"""Tables the identity primitive owns (prefix ``identity_``).

Personal data is stored only as AES-GCM ciphertext (``pii_*`` columns, see :mod:`.pii`) with
keyed hashes beside it for lookups; the database enforces one customer per identity document
within a tenant, and one case per provider reference."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Table as _Table

from finfactory.adapters.sqlalchemy.types import JsonDocument, UtcDateTime

metadata = MetaData()

customers = _Table(
    "identity_customers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("pii_key_version", Integer, nullable=False),
    Column("pii_given_name", Text, nullable=False),
    Column("pii_family_name", Text, nullable=False),
    Column("pii_birth_date", Text, nullable=False),
    Column("pii_email", Text, nullable=True),
    Column("pii_phone", Text, nullable=True),
    Column("pii_id_document", Text, nullable=True),
    Column("pii_document_refs", Text, nullable=True),
    Column("document_hash", String(64), nullable=True),
    Column("email_hash", String(64), nullable=True),
    Column("phone_hash", String(64), nullable=True),
    Column("latest_kyc_id", String(36), nullable=True),
    Column("verified_kyc_id", String(36), nullable=True),
    Column("verified_until", UtcDateTime, nullable=True),
    Column("kyc_blocked", Boolean, nullable=False),
    Column("risk_flags", Integer, nullable=False),
    UniqueConstraint("tenant_id", "document_hash", name="uq_identity_customers_document"),
    CheckConstraint("version >= 1", name="ck_identity_customers_version"),
    CheckConstraint("pii_key_version >= 1", name="ck_identity_customers_key_version"),
    Index("ix_identity_customers_email", "tenant_id", "email_hash"),
    Index("ix_identity_customers_phone", "tenant_id", "phone_hash"),
    Index("ix_identity_customers_verified_until", "tenant_id", "verified_until"),
    Index("ix_identity_customers_key_version", "tenant_id", "pii_key_version"),
)

kyc_cases = _Table(
    "identity_kyc_cases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("customer_id", String(36), ForeignKey("identity_customers.id"), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_reference", String(128), nullable=False),
    Column("in_review", Boolean, nullable=False),
    Column("rejection", String(16), nullable=True),
    Column("expiry", String(16), nullable=True),
    Column("reason_codes", JsonDocument, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("session_expires_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("valid_until", UtcDateTime, nullable=True),
    Column("expired_at", UtcDateTime, nullable=True),
    Column("superseded_by", String(36), nullable=True),
    UniqueConstraint("tenant_id", "provider_reference", name="uq_identity_kyc_reference"),
    UniqueConstraint("customer_id", "attempt", name="uq_identity_kyc_attempt"),
    CheckConstraint(
        "status IN ('started','verified','rejected','expired')", name="ck_identity_kyc_status"
    ),
    CheckConstraint(
        "(rejection IS NULL AND status <> 'rejected')"
        " OR (rejection IN ('final','retryable') AND status = 'rejected')",
        name="ck_identity_kyc_rejection",
    ),
    CheckConstraint(
        "(expiry IS NULL AND status <> 'expired')"
        " OR (expiry IN ('session','validity','superseded') AND status = 'expired')",
        name="ck_identity_kyc_expiry",
    ),
    Index("ix_identity_kyc_open", "tenant_id", "status", "session_expires_at"),
)

provider_callbacks = _Table(
    "identity_provider_callbacks",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("provider_reference", String(128), nullable=False),
    Column("callback_key", String(64), nullable=False),
    Column("kyc_id", String(36), ForeignKey("identity_kyc_cases.id"), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("effect", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint(
        "tenant_id", "provider_reference", "callback_key", name="pk_identity_provider_callbacks"
    ),
)

risk_flags = _Table(
    "identity_risk_flags",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("customer_id", String(36), ForeignKey("identity_customers.id"), nullable=False),
    Column("kyc_id", String(36), nullable=True),
    Column("reason", String(32), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("source", String(16), nullable=False),
    Column("flagged_at", UtcDateTime, nullable=False),
    Column("flagged_by", String(128), nullable=False),
    Index("ix_identity_risk_flags_customer", "tenant_id", "customer_id"),
)
