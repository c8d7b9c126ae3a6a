"""The KYC lifecycle on every backend: started -> verified | rejected | expired, both kinds of
expiry on a manual clock, retryable versus final rejections, tier upgrades, and the events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    AlreadyVerified,
    CallbackEffect,
    DocumentExpired,
    DocumentNotAccepted,
    DocumentRequired,
    ExpireDue,
    IdentityService,
    IdentitySettings,
    KycInProgress,
    KycProviderUnavailable,
    KycReason,
    KycRejectedFinal,
    KycStatus,
    StartKyc,
    UnknownTier,
)
from finfactory.testing import ManualClock
from finfactory.testing.kyc import FakeKycProvider, FakeVerdict
from tests.identity.conftest import ctx, event_types, events, new_customer, other_document

START = datetime(2026, 1, 1, tzinfo=UTC)


def start(identity: IdentityService, customer_id: str, tier: str = "basic") -> str:
    return identity.start_kyc(ctx(), StartKyc(customer_id=customer_id, tier=tier)).id


def test_verified_lifecycle_and_its_events(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    assert identity.verified_tier(ctx(), customer.id) is None
    kyc = identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    assert (kyc.status, kyc.attempt, kyc.tier) == (KycStatus.STARTED, 1, "basic")
    assert kyc.session_expires_at == START + timedelta(minutes=1440)
    assert identity.verified_tier(ctx(), customer.id) is None

    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert result.effect is CallbackEffect.APPLIED
    assert result.kyc.status is KycStatus.VERIFIED
    # basic: 730 days at most; the passport expires later (2031), so the age limit binds.
    assert result.kyc.valid_until == START + timedelta(days=730)
    assert identity.verified_tier(ctx(), customer.id) == "basic"
    view = identity.get_customer(ctx(), customer.id)
    assert (view.kyc_status, view.verified_tier) == (KycStatus.VERIFIED, "basic")

    published = events(storage)
    assert [e.event_type for e in published] == ["customer.created", "kyc.started", "kyc.verified"]
    assert {e.aggregate_type for e in published} == {"customer"}
    assert {e.aggregate_id for e in published} == {customer.id}
    assert [e.aggregate_sequence for e in published] == [1, 2, 3]
    verified = published[2].payload
    assert verified["kyc_id"] == kyc.id
    assert verified["tier"] == "basic"
    assert verified["status"] == "verified"
    # The provider's reference is internal: in no result and no event.
    reference = provider.session_for(customer.id).reference
    assert reference not in result.model_dump_json()
    assert all(reference not in str(e.payload) for e in published)


def test_retryable_rejection_allows_a_new_attempt(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    provider.script(FakeVerdict.reject(KycReason.DOCUMENT_UNREADABLE), customer_id=customer.id)
    first = start(identity, customer.id)
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert result.kyc.status is KycStatus.REJECTED
    assert result.kyc.rejection == "retryable"
    assert result.kyc.reason_codes == [KycReason.DOCUMENT_UNREADABLE]
    assert identity.verified_tier(ctx(), customer.id) is None
    rejected = events(storage)[-1]
    assert rejected.event_type == "kyc.rejected"
    assert rejected.payload["rejection"] == "retryable"
    assert rejected.payload["reason_codes"] == ["document_unreadable"]
    assert rejected.payload["retryable_rejections"] == 1

    second = start(identity, customer.id)
    assert second != first
    assert identity.get_kyc(ctx(), second).attempt == 2
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert identity.verified_tier(ctx(), customer.id) == "basic"


def test_final_rejection_blocks_further_attempts(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    provider.script(
        FakeVerdict.reject(KycReason.DOCUMENT_TAMPERED, final=True), customer_id=customer.id
    )
    start(identity, customer.id)
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert (result.kyc.status, result.kyc.rejection) == (KycStatus.REJECTED, "final")
    before = event_types(storage)
    with pytest.raises(KycRejectedFinal) as err:
        start(identity, customer.id)
    assert err.value.code == "identity.kyc_rejected_final"
    with pytest.raises(KycRejectedFinal):
        start(identity, customer.id, "full")
    assert event_types(storage) == before
    assert identity.get_customer(ctx(), customer.id).kyc_blocked
    assert identity.verified_tier(ctx(), customer.id) is None


def test_one_open_attempt_at_a_time(identity: IdentityService) -> None:
    customer = new_customer(identity)
    kyc = start(identity, customer.id)
    with pytest.raises(KycInProgress) as err:
        start(identity, customer.id)
    assert err.value.details["kyc_id"] == kyc


def test_session_timeout_expires_the_attempt(
    identity: IdentityService, provider: FakeKycProvider, clock: ManualClock, storage: Storage
) -> None:
    customer = new_customer(identity)
    kyc = start(identity, customer.id)
    clock.advance(timedelta(minutes=1439))
    assert identity.expire_due(ctx()).kyc_ids == []
    clock.advance(timedelta(minutes=1))
    expired = identity.expire_due(ctx())
    assert (expired.kyc_ids, expired.sessions, expired.validity) == ([kyc], 1, 0)
    view = identity.get_kyc(ctx(), kyc)
    assert (view.status, view.expiry) == (KycStatus.EXPIRED, "session")
    assert view.reason_codes == [KycReason.SESSION_TIMEOUT]
    last = events(storage)[-1]
    assert last.event_type == "kyc.expired"
    assert last.payload["expiry"] == "session"
    assert identity.expire_due(ctx()).kyc_ids == []  # nothing twice

    # The provider's approval arrives too late: the attempt stays expired.
    late = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert late.effect is CallbackEffect.IGNORED
    assert late.kyc.status is KycStatus.EXPIRED
    assert identity.verified_tier(ctx(), customer.id) is None
    assert event_types(storage).count("kyc.verified") == 0
    # A new attempt may start.
    assert identity.get_kyc(ctx(), start(identity, customer.id)).attempt == 2


def test_starting_again_after_the_timeout_expires_the_old_session_first(
    identity: IdentityService, clock: ManualClock, storage: Storage
) -> None:
    customer = new_customer(identity)
    old = start(identity, customer.id)
    clock.advance(timedelta(days=2))
    new = start(identity, customer.id)
    assert identity.get_kyc(ctx(), old).expiry == "session"
    assert event_types(storage)[-2:] == ["kyc.expired", "kyc.started"]
    assert identity.get_kyc(ctx(), new).status is KycStatus.STARTED


def test_provider_reported_timeout(identity: IdentityService, provider: FakeKycProvider) -> None:
    customer = new_customer(identity)
    provider.script(FakeVerdict.timeout(), customer_id=customer.id)
    start(identity, customer.id)
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert (result.kyc.status, result.kyc.expiry) == (KycStatus.EXPIRED, "session")


def test_manual_review_suspends_the_session_timeout(
    identity: IdentityService, provider: FakeKycProvider, clock: ManualClock
) -> None:
    customer = new_customer(identity)
    kyc = start(identity, customer.id)
    review = identity.handle_provider_callback(
        ctx(), provider.callback(customer.id, verdict=FakeVerdict.review())
    )
    assert review.effect is CallbackEffect.RECORDED
    assert review.kyc.in_review
    assert review.kyc.status is KycStatus.STARTED
    clock.advance(timedelta(days=10))
    assert identity.expire_due(ctx()).kyc_ids == []
    done = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert done.kyc.status is KycStatus.VERIFIED
    assert not done.kyc.in_review
    assert done.kyc.id == kyc


def test_verification_expires_with_the_document(
    identity: IdentityService, provider: FakeKycProvider, clock: ManualClock, storage: Storage
) -> None:
    customer = new_customer(identity, id_document=other_document("N100200", date(2026, 3, 31)))
    kyc = start(identity, customer.id)
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    # Valid through the document's expiry day (UTC).
    assert result.kyc.valid_until == datetime(2026, 4, 1, tzinfo=UTC)

    clock.set(datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    assert identity.verified_tier(ctx(), customer.id) == "basic"
    clock.set(datetime(2026, 4, 1, tzinfo=UTC))
    # The tier is gone at the clock's time, even before the scheduler records it.
    assert identity.verified_tier(ctx(), customer.id) is None
    assert "kyc.expired" not in event_types(storage)

    expired = identity.expire_due(ctx())
    assert (expired.kyc_ids, expired.sessions, expired.validity) == ([kyc], 0, 1)
    view = identity.get_kyc(ctx(), kyc)
    assert (view.status, view.expiry) == (KycStatus.EXPIRED, "validity")
    payload = events(storage)[-1].payload
    assert (payload["expiry"], payload["reason_codes"]) == ("validity", ["validity_ended"])
    assert identity.expire_due(ctx()).kyc_ids == []

    # Re-KYC: the expired document is refused until a new one is presented.
    with pytest.raises(DocumentExpired):
        start(identity, customer.id)
    renewed = identity.start_kyc(
        ctx(),
        StartKyc(
            customer_id=customer.id,
            tier="basic",
            id_document=other_document("N100201", date(2036, 3, 31)),
        ),
    )
    assert events(storage)[-1].payload["document_replaced"] is True
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert identity.verified_tier(ctx(), customer.id) == "basic"
    assert identity.get_kyc(ctx(), renewed.id).status is KycStatus.VERIFIED


def test_verification_expires_at_the_tier_maximum_age(
    identity: IdentityService,
    provider: FakeKycProvider,
    clock: ManualClock,
    storage: Storage,
) -> None:
    admin = ctx(roles=frozenset({"config.admin"}))
    config = TenantConfigService(storage, identity.policy, clock, identity.ids)
    tiers = IdentitySettings().model_dump(mode="json")["tiers"]
    tiers[0]["validity_days"] = 30
    tiers[0]["expire_with_document"] = False
    config.update(admin, IdentitySettings, {"tiers": tiers}, reason="monthly re-KYC")

    customer = new_customer(identity)
    start(identity, customer.id)
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert result.kyc.valid_until == START + timedelta(days=30)
    clock.advance(timedelta(days=30))
    assert identity.verified_tier(ctx(), customer.id) is None
    assert identity.expire_due(ctx(), ExpireDue(limit=10)).validity == 1
    assert event_types(storage)[-1] == "kyc.expired"


def test_approval_on_an_expired_document_is_a_retryable_rejection(
    identity: IdentityService, provider: FakeKycProvider
) -> None:
    customer = new_customer(identity)
    provider.script(
        FakeVerdict.approve(document_expires_on=date(2025, 12, 1)), customer_id=customer.id
    )
    start(identity, customer.id)
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert (result.kyc.status, result.kyc.rejection) == (KycStatus.REJECTED, "retryable")
    assert result.kyc.reason_codes == [KycReason.DOCUMENT_EXPIRED]


def test_upgrading_to_a_higher_tier(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    basic = start(identity, customer.id)
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    with pytest.raises(AlreadyVerified):
        start(identity, customer.id, "basic")

    full = start(identity, customer.id, "full")
    # While the upgrade is open, and if it is rejected, the customer keeps basic.
    assert identity.verified_tier(ctx(), customer.id) == "basic"
    identity.handle_provider_callback(
        ctx(), provider.callback(customer.id, verdict=FakeVerdict.reject())
    )
    assert identity.verified_tier(ctx(), customer.id) == "basic"

    full = start(identity, customer.id, "full")
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert identity.verified_tier(ctx(), customer.id) == "full"
    assert identity.get_kyc(ctx(), basic).superseded_by == full
    assert events(storage)[-1].payload["supersedes_kyc_id"] == basic
    with pytest.raises(AlreadyVerified):
        start(identity, customer.id, "basic")


def test_tier_and_document_requirements(identity: IdentityService) -> None:
    no_document = new_customer(identity, id_document=None)
    with pytest.raises(UnknownTier) as unknown:
        start(identity, no_document.id, "platinum")
    assert unknown.value.code == "identity.unknown_tier"
    with pytest.raises(DocumentRequired):
        start(identity, no_document.id)
    licence = new_customer(identity, id_document=other_document("D55", kind="drivers_license"))
    start(identity, licence.id)  # basic accepts any document type
    other = new_customer(identity, id_document=other_document("D56", kind="drivers_license"))
    with pytest.raises(DocumentNotAccepted):
        start(identity, other.id, "full")  # full takes passports and national ids only
    assert identity.list_kyc(ctx(), other.id) == []


def test_provider_outage_writes_nothing(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    provider.fail_next()
    before = event_types(storage)
    with pytest.raises(KycProviderUnavailable) as err:
        identity.start_kyc(
            ctx(), StartKyc(customer_id=customer.id, tier="basic"), idempotency_key="k1"
        )
    assert err.value.code == "identity.provider_unavailable"
    assert event_types(storage) == before
    assert identity.list_kyc(ctx(), customer.id) == []
    # Not a rejection: the same key works once the provider is back.
    kyc = identity.start_kyc(
        ctx(), StartKyc(customer_id=customer.id, tier="basic"), idempotency_key="k1"
    )
    assert kyc.status is KycStatus.STARTED


def test_a_review_that_never_ends_expires_at_the_review_deadline(
    identity: IdentityService, provider: FakeKycProvider, clock: ManualClock, storage: Storage
) -> None:
    customer = new_customer(identity)
    kyc = start(identity, customer.id)
    clock.advance(timedelta(hours=1))
    review = identity.handle_provider_callback(
        ctx(), provider.callback(customer.id, verdict=FakeVerdict.review())
    )
    # The deadline moves to the review timeout (basic: 14 days from the review's start).
    deadline = START + timedelta(hours=1) + timedelta(days=14)
    assert review.kyc.session_expires_at == deadline
    # A second review notice does not push the deadline further.
    clock.advance(timedelta(days=3))
    again = identity.handle_provider_callback(
        ctx(), provider.callback(customer.id, verdict=FakeVerdict.review(), callback_id="r2")
    )
    assert again.kyc.session_expires_at == deadline
    clock.set(deadline - timedelta(seconds=1))
    assert identity.expire_due(ctx()).kyc_ids == []
    with pytest.raises(KycInProgress):
        start(identity, customer.id)
    clock.set(deadline)
    expired = identity.expire_due(ctx())
    assert (expired.kyc_ids, expired.sessions) == ([kyc], 1)
    view = identity.get_kyc(ctx(), kyc)
    assert (view.status, view.expiry) == (KycStatus.EXPIRED, "session")
    assert view.reason_codes == [KycReason.REVIEW_TIMEOUT]
    assert events(storage)[-1].payload["reason_codes"] == ["review_timeout"]
    # The customer is no longer stuck: a new attempt may start.
    assert identity.get_kyc(ctx(), start(identity, customer.id)).attempt == 2


def test_an_upgrade_expires_the_verification_it_supersedes(
    identity: IdentityService, provider: FakeKycProvider, clock: ManualClock, storage: Storage
) -> None:
    customer = new_customer(identity)
    basic = start(identity, customer.id)
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    full = start(identity, customer.id, "full")
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))

    old = identity.get_kyc(ctx(), basic)
    assert (old.status, old.expiry, old.superseded_by) == (KycStatus.EXPIRED, "superseded", full)
    assert old.reason_codes == [KycReason.SUPERSEDED]
    assert identity.verified_tier(ctx(), customer.id) == "full"
    # One transaction: the old verification ends, then the new one begins (a consumer that
    # clears the tier on kyc.expired and sets it on kyc.verified ends on the right tier).
    last = events(storage)[-2:]
    assert [e.event_type for e in last] == ["kyc.expired", "kyc.verified"]
    assert last[0].payload["kyc_id"] == basic
    assert last[0].payload["expiry"] == "superseded"
    assert last[1].payload["supersedes_kyc_id"] == basic
    # Later only the current verification reaches its validity end; the superseded one
    # never expires a second time.
    clock.advance(timedelta(days=800))
    assert identity.expire_due(ctx()).kyc_ids == [full]
    assert event_types(storage).count("kyc.expired") == 2
