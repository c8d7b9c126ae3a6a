"""Events the identity primitive publishes. All are on the ``customer`` aggregate (one
customer's events are numbered in order). Payloads carry ids, tiers, statuses, reason codes
and timestamps only: never names, birth dates, contact details or document data."""

from __future__ import annotations

from datetime import datetime

from finfactory.events.registry import EventPayload, declare_event

PRIMITIVE = "identity"
AGGREGATE = "customer"


@declare_event(
    "customer.created",
    primitive=PRIMITIVE,
    aggregate_type=AGGREGATE,
    description="A customer was created (personal data is kept encrypted, not in the event)",
)
class CustomerCreated(EventPayload):
    customer_id: str
    created_at: datetime


@declare_event(
    "kyc.started",
    primitive=PRIMITIVE,
    aggregate_type=AGGREGATE,
    description="A KYC attempt for a tier started: a provider session was opened",
)
class KycStarted(EventPayload):
    kyc_id: str
    customer_id: str
    tier: str
    attempt: int
    status: str
    started_at: datetime
    session_expires_at: datetime
    document_replaced: bool


@declare_event(
    "kyc.verified",
    primitive=PRIMITIVE,
    aggregate_type=AGGREGATE,
    description="A customer's identity was verified at a tier, valid until valid_until",
)
class KycVerified(EventPayload):
    kyc_id: str
    customer_id: str
    tier: str
    status: str
    verified_at: datetime
    valid_until: datetime | None
    supersedes_kyc_id: str | None


@declare_event(
    "kyc.rejected",
    primitive=PRIMITIVE,
    aggregate_type=AGGREGATE,
    description="A KYC attempt was rejected, finally or retryably, with reason codes",
)
class KycRejected(EventPayload):
    kyc_id: str
    customer_id: str
    tier: str
    status: str
    rejection: str
    reason_codes: list[str]
    rejected_at: datetime
    retryable_rejections: int


@declare_event(
    "kyc.expired",
    primitive=PRIMITIVE,
    aggregate_type=AGGREGATE,
    description="A KYC attempt timed out (session or review), or a verification ended:"
    " validity end (re-KYC due) or superseded by a higher tier's",
)
class KycExpired(EventPayload):
    kyc_id: str
    customer_id: str
    tier: str
    status: str
    expiry: str
    reason_codes: list[str]
    expired_at: datetime


@declare_event(
    "risk.flagged",
    primitive=PRIMITIVE,
    aggregate_type=AGGREGATE,
    description="A customer was flagged as a risk (watch-list hit, repeated rejections, API)",
)
class RiskFlagged(EventPayload):
    flag_id: str
    customer_id: str
    kyc_id: str | None
    reason: str
    severity: str
    source: str
    flagged_at: datetime
