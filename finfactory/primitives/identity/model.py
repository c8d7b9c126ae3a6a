"""Identity entities and the KYC state machine. Pure: no I/O, no keys.

A customer's personal data is held here only in sealed form (see :mod:`.pii`); the
entities carry the ciphertexts and the keyed lookup hashes, never plaintext.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

import attrs

from finfactory.primitives.identity.errors import IllegalKycTransition


class DocumentType(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    DRIVERS_LICENSE = "drivers_license"
    RESIDENCE_PERMIT = "residence_permit"
    OTHER = "other"


class KycCheck(StrEnum):
    """Checks a tier asks the provider to run."""

    DOCUMENT = "document"
    SELFIE = "selfie"
    LIVENESS = "liveness"
    WATCHLIST = "watchlist"
    PROOF_OF_ADDRESS = "proof_of_address"


class KycStatus(StrEnum):
    STARTED = "started"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"


class RejectionKind(StrEnum):
    FINAL = "final"
    RETRYABLE = "retryable"


class ExpiryKind(StrEnum):
    SESSION = "session"
    """The provider session ended (timed out) before a decision."""
    VALIDITY = "validity"
    """A verification reached its validity end; re-KYC is due."""
    SUPERSEDED = "superseded"
    """A verification was replaced by one at a higher tier; no re-KYC is due."""


class KycReason(StrEnum):
    """Reason codes in FinFactory's terms; provider adapters map their own codes to these."""

    DOCUMENT_EXPIRED = "document_expired"
    DOCUMENT_UNREADABLE = "document_unreadable"
    DOCUMENT_NOT_ACCEPTED = "document_not_accepted"
    DOCUMENT_TAMPERED = "document_tampered"
    FACE_MISMATCH = "face_mismatch"
    LIVENESS_FAILED = "liveness_failed"
    DATA_MISMATCH = "data_mismatch"
    UNDERAGE = "underage"
    WATCHLIST_MATCH = "watchlist_match"
    DUPLICATE_IDENTITY = "duplicate_identity"
    SESSION_TIMEOUT = "session_timeout"
    REVIEW_TIMEOUT = "review_timeout"
    VALIDITY_ENDED = "validity_ended"
    SUPERSEDED = "superseded"
    PROVIDER_ERROR = "provider_error"
    OTHER = "other"


class RiskReason(StrEnum):
    WATCHLIST_HIT = "watchlist_hit"
    REPEATED_REJECTIONS = "repeated_rejections"
    SUSPICIOUS_ACTIVITY = "suspicious_activity"
    FRAUD_REPORT = "fraud_report"
    MANUAL_REVIEW = "manual_review"
    OTHER = "other"


class RiskSeverity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RiskSource(StrEnum):
    PROVIDER = "provider"
    """Reported by the KYC provider (a watch-list hit)."""
    RULE = "rule"
    """Raised by one of the primitive's rules (repeated rejections)."""
    API = "api"
    """Raised by a caller through ``flag_risk``."""


class CallbackEffect(StrEnum):
    APPLIED = "applied"
    """The callback moved the case to a new status."""
    RECORDED = "recorded"
    """Accepted without a status change (pending, review)."""
    DUPLICATE = "duplicate"
    """The same callback was ingested before; nothing happened this time."""
    IGNORED = "ignored"
    """The case had already reached a final state; its status was left as it was."""


# The KYC state machine: every edge a case may take. Final states have none.
TRANSITIONS: Mapping[KycStatus, frozenset[KycStatus]] = {
    KycStatus.STARTED: frozenset({KycStatus.VERIFIED, KycStatus.REJECTED, KycStatus.EXPIRED}),
    KycStatus.VERIFIED: frozenset({KycStatus.EXPIRED}),
    KycStatus.REJECTED: frozenset(),
    KycStatus.EXPIRED: frozenset(),
}


@attrs.frozen
class SealedPii:
    """A customer's personal data as stored: ciphertext per field, all under one key."""

    key_version: int
    fields: Mapping[str, str]


@attrs.frozen
class Customer:
    """``version`` numbers the customer's events (every identity event is on this aggregate,
    so a consumer sees one customer's history in order)."""

    id: str
    tenant_id: str
    created_at: datetime
    pii: SealedPii
    document_hash: str | None
    email_hash: str | None
    phone_hash: str | None
    version: int = 1
    latest_kyc_id: str | None = None
    verified_kyc_id: str | None = None
    verified_until: datetime | None = None
    kyc_blocked: bool = False
    risk_flags: int = 0

    def next_event(self) -> Customer:
        return attrs.evolve(self, version=self.version + 1)


@attrs.frozen
class KycCase:
    """One KYC attempt: a provider session and what came of it."""

    id: str
    tenant_id: str
    customer_id: str
    tier: str
    attempt: int
    status: KycStatus
    provider_reference: str
    started_at: datetime
    session_expires_at: datetime
    """When the attempt expires without a decision: the session timeout, moved to the
    review deadline when the provider starts a manual review."""
    in_review: bool = False
    rejection: RejectionKind | None = None
    expiry: ExpiryKind | None = None
    reason_codes: tuple[KycReason, ...] = ()
    decided_at: datetime | None = None
    valid_until: datetime | None = None
    expired_at: datetime | None = None
    superseded_by: str | None = None

    def _move(self, to: KycStatus) -> None:
        if to not in TRANSITIONS[self.status]:
            raise IllegalKycTransition(
                f"KYC {self.id} cannot go from {self.status.value} to {to.value}", kyc_id=self.id
            )

    def verify(self, now: datetime, valid_until: datetime | None) -> KycCase:
        self._move(KycStatus.VERIFIED)
        return attrs.evolve(
            self,
            status=KycStatus.VERIFIED,
            in_review=False,
            decided_at=now,
            valid_until=valid_until,
        )

    def reject(self, now: datetime, kind: RejectionKind, reasons: tuple[KycReason, ...]) -> KycCase:
        self._move(KycStatus.REJECTED)
        return attrs.evolve(
            self,
            status=KycStatus.REJECTED,
            in_review=False,
            rejection=kind,
            reason_codes=reasons,
            decided_at=now,
        )

    def expire(self, now: datetime, kind: ExpiryKind, reasons: tuple[KycReason, ...]) -> KycCase:
        self._move(KycStatus.EXPIRED)
        return attrs.evolve(
            self, status=KycStatus.EXPIRED, expiry=kind, reason_codes=reasons, expired_at=now
        )

    def start_review(self, review_ends: datetime) -> KycCase:
        """The provider handed the attempt to a person: the deadline becomes the review's
        (never earlier than the session's). Only the first review notice sets it, so a
        provider repeating "review" cannot keep an attempt open for ever."""
        if self.status is not KycStatus.STARTED or self.in_review:
            return self
        deadline = max(self.session_expires_at, review_ends)
        return attrs.evolve(self, in_review=True, session_expires_at=deadline)

    def session_overdue(self, now: datetime) -> bool:
        """Open and past its deadline (the session timeout, or the review deadline)."""
        return self.status is KycStatus.STARTED and self.session_expires_at <= now

    def holds_verification(self, now: datetime) -> bool:
        return self.status is KycStatus.VERIFIED and (
            self.valid_until is None or self.valid_until > now
        )


@attrs.frozen
class RiskFlag:
    id: str
    tenant_id: str
    customer_id: str
    kyc_id: str | None
    reason: RiskReason
    severity: RiskSeverity
    source: RiskSource
    flagged_at: datetime
    flagged_by: str


@attrs.frozen
class CallbackRecord:
    """A provider callback that was ingested (the dedup memory for callbacks)."""

    tenant_id: str
    provider_reference: str
    callback_key: str
    kyc_id: str
    outcome: str
    effect: CallbackEffect
    received_at: datetime
