"""Ports of the identity primitive: its storage, the KYC provider, and the PII cipher.

The provider port speaks FinFactory's terms only. An adapter for Onfido, Sumsub, Persona
or another vendor maps the vendor's statuses and reason codes to :class:`ProviderOutcome`
and :class:`~finfactory.primitives.identity.model.KycReason`; the vendor's session id is
kept by the primitive as an opaque reference and never appears in results or events.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

import attrs

from finfactory.primitives.identity.model import (
    CallbackRecord,
    Customer,
    DocumentType,
    KycCase,
    KycCheck,
    RiskFlag,
)


class ProviderOutcome(StrEnum):
    """A provider's verdict on a session, normalised."""

    APPROVED = "approved"
    REJECTED_FINAL = "rejected_final"
    REJECTED_RETRYABLE = "rejected_retryable"
    REVIEW = "review"
    """A human at the provider looks at it; the session timeout is suspended meanwhile."""
    PENDING = "pending"
    EXPIRED = "expired"
    """The provider's session ended (timed out) without a decision."""


@attrs.frozen
class ApplicantDocument:
    type: DocumentType
    number: str
    issuing_country: str
    expires_on: date | None

    def __repr__(self) -> str:  # the number stays out of logs and tracebacks
        return f"ApplicantDocument(type={self.type.value!r}, <redacted>)"


@attrs.frozen
class Applicant:
    """What the provider needs to know about the person (decrypted for this call only)."""

    given_name: str
    family_name: str
    birth_date: date
    document: ApplicantDocument | None
    document_refs: tuple[str, ...]

    def __repr__(self) -> str:  # personal data stays out of logs and tracebacks
        return "Applicant(<redacted>)"


@attrs.frozen
class ProviderSessionRequest:
    tenant_id: str
    kyc_id: str
    """FinFactory's id for the attempt; adapters may pass it to the vendor as its external id."""
    customer_id: str
    tier: str
    checks: tuple[KycCheck, ...]
    applicant: Applicant


@attrs.frozen
class ProviderSession:
    reference: str
    """The provider's session id: opaque, kept internal, used to match callbacks."""


class KycProvider(Protocol):
    def open_session(self, request: ProviderSessionRequest) -> ProviderSession:
        """Open a verification session. Raise
        :class:`~finfactory.primitives.identity.errors.KycProviderUnavailable` when the
        provider cannot be reached (the command then writes nothing and may be retried)."""
        ...


class CancellableKycProvider(KycProvider, Protocol):
    """A provider adapter that can also cancel a session. Optional: when the adapter has
    ``cancel_session``, a ``start_kyc`` that opened a session but did not keep it (its
    transaction failed) cancels it, so the vendor holds no orphan session."""

    def cancel_session(self, reference: str) -> None:
        """Cancel (or expire) the session; a session already gone is not an error."""
        ...


class PiiCipher(Protocol):
    """What the service needs of a keyring (:class:`~.crypto.PiiKeyring` implements it;
    a KMS-backed one may too)."""

    @property
    def current_version(self) -> int: ...

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> str: ...

    def decrypt(self, token: str, associated_data: bytes) -> bytes: ...

    def lookup_hash(self, purpose: str, value: str) -> str: ...


class IdentityStore(Protocol):
    """The identity tables. One instance serves one command inside one transaction."""

    def lock_customer(self, tenant_id: str, customer_id: str) -> Customer | None:
        """Load a customer and lock its row until the transaction ends."""
        ...

    def get_customer(self, tenant_id: str, customer_id: str) -> Customer | None: ...

    def customer_by_document(self, tenant_id: str, document_hash: str) -> Customer | None: ...

    def customers_by_contact(
        self, tenant_id: str, email_hash: str | None, phone_hash: str | None, limit: int
    ) -> list[Customer]:
        """Customers matching every given hash, oldest first."""
        ...

    def customers_not_on_key(self, tenant_id: str, version: int, limit: int) -> list[str]: ...

    def count_not_on_key(self, tenant_id: str, version: int) -> int: ...

    def add_customer(self, customer: Customer) -> None: ...

    def save_customer(self, customer: Customer) -> None: ...

    def get_case(self, tenant_id: str, kyc_id: str) -> KycCase | None: ...

    def case_by_reference(self, tenant_id: str, reference: str) -> KycCase | None: ...

    def cases_of(self, tenant_id: str, customer_id: str) -> list[KycCase]:
        """A customer's KYC cases by attempt number."""
        ...

    def overdue_sessions(self, tenant_id: str, now: datetime, limit: int) -> list[KycCase]: ...

    def lapsed_verifications(self, tenant_id: str, now: datetime, limit: int) -> list[str]:
        """Ids of customers whose current verification's validity ended at or before now."""
        ...

    def add_case(self, case: KycCase) -> None: ...

    def save_case(self, case: KycCase) -> None: ...

    def callback_seen(self, tenant_id: str, reference: str, callback_key: str) -> bool: ...

    def add_callback(self, record: CallbackRecord) -> None: ...

    def add_risk_flag(self, flag: RiskFlag) -> None: ...

    def risk_flags(self, tenant_id: str, customer_id: str) -> list[RiskFlag]: ...

    def flush(self) -> None:
        """Send buffered writes (stores may also write at once)."""
        ...
