"""In-memory identity store on :class:`finfactory.testing.MemoryStorage`; it keeps the SQL
store's uniqueness rules (document per tenant, provider reference per tenant, attempt per
customer). Writes apply at once and are undone with the unit of work."""

from __future__ import annotations

from datetime import datetime

from finfactory.adapters.memory import MemoryUnitOfWork
from finfactory.kernel.errors import IntegrityViolation
from finfactory.primitives.identity.model import (
    CallbackRecord,
    Customer,
    KycCase,
    KycStatus,
    RiskFlag,
)

CUSTOMERS = "identity_customers"
DOCUMENTS = "identity_customer_documents"
CASES = "identity_kyc_cases"
REFERENCES = "identity_kyc_references"
ATTEMPTS = "identity_kyc_attempts"
CALLBACKS = "identity_provider_callbacks"
FLAGS = "identity_risk_flags"


class MemoryIdentityStore:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    def _customers(self, tenant_id: str) -> list[Customer]:
        return [c for c in self._uow.rows(CUSTOMERS) if c.tenant_id == tenant_id]

    def lock_customer(self, tenant_id: str, customer_id: str) -> Customer | None:
        return self.get_customer(tenant_id, customer_id)

    def get_customer(self, tenant_id: str, customer_id: str) -> Customer | None:
        found: Customer | None = self._uow.get(CUSTOMERS, customer_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    def customer_by_document(self, tenant_id: str, document_hash: str) -> Customer | None:
        customer_id = self._uow.get(DOCUMENTS, (tenant_id, document_hash))
        return None if customer_id is None else self.get_customer(tenant_id, customer_id)

    def customers_by_contact(
        self, tenant_id: str, email_hash: str | None, phone_hash: str | None, limit: int
    ) -> list[Customer]:
        found = [
            c
            for c in self._customers(tenant_id)
            if (email_hash is None or c.email_hash == email_hash)
            and (phone_hash is None or c.phone_hash == phone_hash)
        ]
        return sorted(found, key=lambda c: (c.created_at, c.id))[:limit]

    def customers_not_on_key(self, tenant_id: str, version: int, limit: int) -> list[str]:
        ids = [c.id for c in self._customers(tenant_id) if c.pii.key_version != version]
        return sorted(ids)[:limit]

    def count_not_on_key(self, tenant_id: str, version: int) -> int:
        return sum(1 for c in self._customers(tenant_id) if c.pii.key_version != version)

    def _index_document(self, customer: Customer, old: Customer | None) -> None:
        if old is not None and old.document_hash == customer.document_hash:
            return
        if customer.document_hash is not None:
            key = (customer.tenant_id, customer.document_hash)
            if self._uow.get(DOCUMENTS, key) is not None:
                raise IntegrityViolation("duplicate identity document")
            self._uow.put(DOCUMENTS, key, customer.id)
        if old is not None and old.document_hash is not None:
            self._uow.put(DOCUMENTS, (old.tenant_id, old.document_hash), None)

    def add_customer(self, customer: Customer) -> None:
        if self._uow.get(CUSTOMERS, customer.id) is not None:
            raise IntegrityViolation("duplicate customer id")
        self._index_document(customer, None)
        self._uow.put(CUSTOMERS, customer.id, customer)

    def save_customer(self, customer: Customer) -> None:
        old = self.get_customer(customer.tenant_id, customer.id)
        assert old is not None, "save_customer of a customer that was never added"
        self._index_document(customer, old)
        self._uow.put(CUSTOMERS, customer.id, customer)

    def get_case(self, tenant_id: str, kyc_id: str) -> KycCase | None:
        found: KycCase | None = self._uow.get(CASES, kyc_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    def case_by_reference(self, tenant_id: str, reference: str) -> KycCase | None:
        kyc_id = self._uow.get(REFERENCES, (tenant_id, reference))
        return None if kyc_id is None else self.get_case(tenant_id, kyc_id)

    def cases_of(self, tenant_id: str, customer_id: str) -> list[KycCase]:
        found = [
            k
            for k in self._uow.rows(CASES)
            if k.tenant_id == tenant_id and k.customer_id == customer_id
        ]
        return sorted(found, key=lambda k: k.attempt)

    def overdue_sessions(self, tenant_id: str, now: datetime, limit: int) -> list[KycCase]:
        due = [
            k
            for k in self._uow.rows(CASES)
            if k.tenant_id == tenant_id
            and k.status is KycStatus.STARTED
            and k.session_expires_at <= now
        ]
        return sorted(due, key=lambda k: (k.session_expires_at, k.id))[:limit]

    def lapsed_verifications(self, tenant_id: str, now: datetime, limit: int) -> list[str]:
        due = [
            c
            for c in self._customers(tenant_id)
            if c.verified_kyc_id is not None
            and c.verified_until is not None
            and c.verified_until <= now
        ]
        due.sort(key=lambda c: (c.verified_until, c.id))
        return [c.id for c in due[:limit]]

    def add_case(self, case: KycCase) -> None:
        ref = (case.tenant_id, case.provider_reference)
        attempt = (case.customer_id, case.attempt)
        if self._uow.get(REFERENCES, ref) is not None:
            raise IntegrityViolation("duplicate provider reference")
        if self._uow.get(ATTEMPTS, attempt) is not None:
            raise IntegrityViolation("duplicate KYC attempt number")
        if self.get_customer(case.tenant_id, case.customer_id) is None:
            raise IntegrityViolation("KYC case for an unknown customer")
        self._uow.put(REFERENCES, ref, case.id)
        self._uow.put(ATTEMPTS, attempt, case.id)
        self._uow.put(CASES, case.id, case)

    def save_case(self, case: KycCase) -> None:
        assert self.get_case(case.tenant_id, case.id) is not None
        self._uow.put(CASES, case.id, case)

    def callback_seen(self, tenant_id: str, reference: str, callback_key: str) -> bool:
        return self._uow.get(CALLBACKS, (tenant_id, reference, callback_key)) is not None

    def add_callback(self, record: CallbackRecord) -> None:
        key = (record.tenant_id, record.provider_reference, record.callback_key)
        if self._uow.get(CALLBACKS, key) is not None:
            raise IntegrityViolation("callback already recorded")
        self._uow.put(CALLBACKS, key, record)

    def add_risk_flag(self, flag: RiskFlag) -> None:
        self._uow.put(FLAGS, flag.id, flag)

    def risk_flags(self, tenant_id: str, customer_id: str) -> list[RiskFlag]:
        found = [
            f
            for f in self._uow.rows(FLAGS)
            if f.tenant_id == tenant_id and f.customer_id == customer_id
        ]
        return sorted(found, key=lambda f: (f.flagged_at, f.id))

    def flush(self) -> None:
        """Writes apply at once in memory."""
