"""SQLAlchemy implementation of the identity store (SQLite and PostgreSQL).

Identity commands touch a handful of rows, so statements go out at once through SQLAlchemy
Core; anything the kernel's driver session queued is sent first, keeping statement order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select, update

from finfactory.adapters.sqlalchemy.driver import DriverSession
from finfactory.primitives.identity.model import (
    CallbackRecord,
    Customer,
    ExpiryKind,
    KycCase,
    KycReason,
    KycStatus,
    RejectionKind,
    RiskFlag,
    RiskReason,
    RiskSeverity,
    RiskSource,
    SealedPii,
)
from finfactory.primitives.identity.pii import FIELDS
from finfactory.primitives.identity.tables import (
    customers,
    kyc_cases,
    provider_callbacks,
    risk_flags,
)


class SqlIdentityStore:
    def __init__(self, conn: Connection, driver: DriverSession) -> None:
        self._conn = conn
        self._drv = driver
        self._lock = conn.dialect.name == "postgresql"

    def _core(self) -> Connection:
        self._drv.flush()
        return self._conn

    def _customer(self, stmt: Select[Any]) -> Customer | None:
        row = self._core().execute(stmt).first()
        return None if row is None else _to_customer(row._mapping)

    # -- customers ------------------------------------------------------------------------
    def lock_customer(self, tenant_id: str, customer_id: str) -> Customer | None:
        stmt = select(customers).where(
            customers.c.tenant_id == tenant_id, customers.c.id == customer_id
        )
        return self._customer(stmt.with_for_update() if self._lock else stmt)

    def get_customer(self, tenant_id: str, customer_id: str) -> Customer | None:
        return self._customer(
            select(customers).where(
                customers.c.tenant_id == tenant_id, customers.c.id == customer_id
            )
        )

    def customer_by_document(self, tenant_id: str, document_hash: str) -> Customer | None:
        return self._customer(
            select(customers).where(
                customers.c.tenant_id == tenant_id, customers.c.document_hash == document_hash
            )
        )

    def customers_by_contact(
        self, tenant_id: str, email_hash: str | None, phone_hash: str | None, limit: int
    ) -> list[Customer]:
        stmt = select(customers).where(customers.c.tenant_id == tenant_id)
        if email_hash is not None:
            stmt = stmt.where(customers.c.email_hash == email_hash)
        if phone_hash is not None:
            stmt = stmt.where(customers.c.phone_hash == phone_hash)
        rows = self._core().execute(
            stmt.order_by(customers.c.created_at, customers.c.id).limit(limit)
        )
        return [_to_customer(r._mapping) for r in rows]

    def customers_not_on_key(self, tenant_id: str, version: int, limit: int) -> list[str]:
        rows = self._core().execute(
            select(customers.c.id)
            .where(customers.c.tenant_id == tenant_id, customers.c.pii_key_version != version)
            .order_by(customers.c.id)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def count_not_on_key(self, tenant_id: str, version: int) -> int:
        return int(
            self._core()
            .execute(
                select(func.count())
                .select_from(customers)
                .where(customers.c.tenant_id == tenant_id, customers.c.pii_key_version != version)
            )
            .scalar_one()
        )

    def add_customer(self, customer: Customer) -> None:
        self._core().execute(insert(customers).values(**_customer_row(customer)))

    def save_customer(self, customer: Customer) -> None:
        row = _customer_row(customer)
        del row["id"], row["tenant_id"], row["created_at"]
        self._core().execute(
            update(customers)
            .where(customers.c.id == customer.id, customers.c.tenant_id == customer.tenant_id)
            .values(**row)
        )

    # -- KYC cases ------------------------------------------------------------------------
    def _case(self, stmt: Select[Any]) -> KycCase | None:
        row = self._core().execute(stmt).first()
        return None if row is None else _to_case(row._mapping)

    def get_case(self, tenant_id: str, kyc_id: str) -> KycCase | None:
        return self._case(
            select(kyc_cases).where(kyc_cases.c.tenant_id == tenant_id, kyc_cases.c.id == kyc_id)
        )

    def case_by_reference(self, tenant_id: str, reference: str) -> KycCase | None:
        return self._case(
            select(kyc_cases).where(
                kyc_cases.c.tenant_id == tenant_id, kyc_cases.c.provider_reference == reference
            )
        )

    def cases_of(self, tenant_id: str, customer_id: str) -> list[KycCase]:
        rows = self._core().execute(
            select(kyc_cases)
            .where(kyc_cases.c.tenant_id == tenant_id, kyc_cases.c.customer_id == customer_id)
            .order_by(kyc_cases.c.attempt)
        )
        return [_to_case(r._mapping) for r in rows]

    def overdue_sessions(self, tenant_id: str, now: datetime, limit: int) -> list[KycCase]:
        rows = self._core().execute(
            select(kyc_cases)
            .where(
                kyc_cases.c.tenant_id == tenant_id,
                kyc_cases.c.status == KycStatus.STARTED.value,
                kyc_cases.c.session_expires_at <= now,
            )
            .order_by(kyc_cases.c.session_expires_at, kyc_cases.c.id)
            .limit(limit)
        )
        return [_to_case(r._mapping) for r in rows]

    def lapsed_verifications(self, tenant_id: str, now: datetime, limit: int) -> list[str]:
        rows = self._core().execute(
            select(customers.c.id)
            .where(
                customers.c.tenant_id == tenant_id,
                customers.c.verified_kyc_id.is_not(None),
                customers.c.verified_until.is_not(None),
                customers.c.verified_until <= now,
            )
            .order_by(customers.c.verified_until, customers.c.id)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def add_case(self, case: KycCase) -> None:
        self._core().execute(insert(kyc_cases).values(**_case_row(case)))

    def save_case(self, case: KycCase) -> None:
        row = _case_row(case)
        for fixed in ("id", "tenant_id", "customer_id", "tier", "attempt", "provider_reference"):
            del row[fixed]
        self._core().execute(
            update(kyc_cases)
            .where(kyc_cases.c.id == case.id, kyc_cases.c.tenant_id == case.tenant_id)
            .values(**row)
        )

    # -- callbacks and risk flags ---------------------------------------------------------
    def callback_seen(self, tenant_id: str, reference: str, callback_key: str) -> bool:
        row = (
            self._core()
            .execute(
                select(provider_callbacks.c.kyc_id).where(
                    provider_callbacks.c.tenant_id == tenant_id,
                    provider_callbacks.c.provider_reference == reference,
                    provider_callbacks.c.callback_key == callback_key,
                )
            )
            .first()
        )
        return row is not None

    def add_callback(self, record: CallbackRecord) -> None:
        self._core().execute(
            insert(provider_callbacks).values(
                tenant_id=record.tenant_id,
                provider_reference=record.provider_reference,
                callback_key=record.callback_key,
                kyc_id=record.kyc_id,
                outcome=record.outcome,
                effect=record.effect.value,
                received_at=record.received_at,
            )
        )

    def add_risk_flag(self, flag: RiskFlag) -> None:
        self._core().execute(
            insert(risk_flags).values(
                id=flag.id,
                tenant_id=flag.tenant_id,
                customer_id=flag.customer_id,
                kyc_id=flag.kyc_id,
                reason=flag.reason.value,
                severity=flag.severity.value,
                source=flag.source.value,
                flagged_at=flag.flagged_at,
                flagged_by=flag.flagged_by,
            )
        )

    def risk_flags(self, tenant_id: str, customer_id: str) -> list[RiskFlag]:
        rows = self._core().execute(
            select(risk_flags)
            .where(risk_flags.c.tenant_id == tenant_id, risk_flags.c.customer_id == customer_id)
            .order_by(risk_flags.c.flagged_at, risk_flags.c.id)
        )
        return [
            RiskFlag(
                id=m["id"],
                tenant_id=m["tenant_id"],
                customer_id=m["customer_id"],
                kyc_id=m["kyc_id"],
                reason=RiskReason(m["reason"]),
                severity=RiskSeverity(m["severity"]),
                source=RiskSource(m["source"]),
                flagged_at=m["flagged_at"],
                flagged_by=m["flagged_by"],
            )
            for m in (r._mapping for r in rows)
        ]

    def flush(self) -> None:
        """Statements are sent as they are made; nothing is buffered here."""


def _customer_row(c: Customer) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": c.id,
        "tenant_id": c.tenant_id,
        "created_at": c.created_at,
        "version": c.version,
        "pii_key_version": c.pii.key_version,
        "document_hash": c.document_hash,
        "email_hash": c.email_hash,
        "phone_hash": c.phone_hash,
        "latest_kyc_id": c.latest_kyc_id,
        "verified_kyc_id": c.verified_kyc_id,
        "verified_until": c.verified_until,
        "kyc_blocked": c.kyc_blocked,
        "risk_flags": c.risk_flags,
    }
    for name in FIELDS:
        row[f"pii_{name}"] = c.pii.fields.get(name)
    return row


def _to_customer(m: Any) -> Customer:
    sealed = {name: m[f"pii_{name}"] for name in FIELDS if m[f"pii_{name}"] is not None}
    return Customer(
        id=m["id"],
        tenant_id=m["tenant_id"],
        created_at=m["created_at"],
        pii=SealedPii(key_version=int(m["pii_key_version"]), fields=sealed),
        document_hash=m["document_hash"],
        email_hash=m["email_hash"],
        phone_hash=m["phone_hash"],
        version=int(m["version"]),
        latest_kyc_id=m["latest_kyc_id"],
        verified_kyc_id=m["verified_kyc_id"],
        verified_until=m["verified_until"],
        kyc_blocked=bool(m["kyc_blocked"]),
        risk_flags=int(m["risk_flags"]),
    )


def _case_row(k: KycCase) -> dict[str, Any]:
    return {
        "id": k.id,
        "tenant_id": k.tenant_id,
        "customer_id": k.customer_id,
        "tier": k.tier,
        "attempt": k.attempt,
        "status": k.status.value,
        "provider_reference": k.provider_reference,
        "in_review": k.in_review,
        "rejection": None if k.rejection is None else k.rejection.value,
        "expiry": None if k.expiry is None else k.expiry.value,
        "reason_codes": [r.value for r in k.reason_codes],
        "started_at": k.started_at,
        "session_expires_at": k.session_expires_at,
        "decided_at": k.decided_at,
        "valid_until": k.valid_until,
        "expired_at": k.expired_at,
        "superseded_by": k.superseded_by,
    }


def _to_case(m: Any) -> KycCase:
    return KycCase(
        id=m["id"],
        tenant_id=m["tenant_id"],
        customer_id=m["customer_id"],
        tier=m["tier"],
        attempt=int(m["attempt"]),
        status=KycStatus(m["status"]),
        provider_reference=m["provider_reference"],
        started_at=m["started_at"],
        session_expires_at=m["session_expires_at"],
        in_review=bool(m["in_review"]),
        rejection=None if m["rejection"] is None else RejectionKind(m["rejection"]),
        expiry=None if m["expiry"] is None else ExpiryKind(m["expiry"]),
        reason_codes=tuple(KycReason(r) for r in m["reason_codes"]),
        decided_at=m["decided_at"],
        valid_until=m["valid_until"],
        expired_at=m["expired_at"],
        superseded_by=m["superseded_by"],
    )
