"""Provider callbacks (idempotent on the provider's reference, late and out-of-order ones)
and risk flags (watch-list hits, repeated rejections, the API)."""

from __future__ import annotations

import pytest

from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    CallbackEffect,
    CustomerNotFound,
    FlagRisk,
    IdentityService,
    KycReason,
    KycStatus,
    ProviderCallback,
    ProviderOutcome,
    RiskReason,
    RiskSource,
    StartKyc,
    UnknownProviderReference,
)
from finfactory.testing.kyc import FakeKycProvider, FakeVerdict
from tests.identity.conftest import ctx, event_types, events, new_customer


def _started(identity: IdentityService) -> str:
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    return customer.id


def test_a_duplicate_callback_has_no_second_effect(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = _started(identity)
    callback = provider.callback(customer)
    first = identity.handle_provider_callback(ctx(), callback)
    after_first = events(storage)
    again = identity.handle_provider_callback(ctx(), callback)
    assert (first.effect, again.effect) == (CallbackEffect.APPLIED, CallbackEffect.DUPLICATE)
    assert again.kyc == first.kyc
    assert events(storage) == after_first


def test_the_providers_delivery_id_identifies_a_callback(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = _started(identity)
    pending = provider.callback(customer, verdict=FakeVerdict.pending(), callback_id="evt-1")
    assert identity.handle_provider_callback(ctx(), pending).effect is CallbackEffect.RECORDED
    # A redelivery of evt-1 is a duplicate even if the adapter rebuilt it differently...
    redelivered = provider.callback(customer, callback_id="evt-1")
    assert identity.handle_provider_callback(ctx(), redelivered).effect is CallbackEffect.DUPLICATE
    assert identity.verified_tier(ctx(), customer) is None
    # ...and the next delivery with its own id is applied.
    approved = provider.callback(customer, callback_id="evt-2")
    assert identity.handle_provider_callback(ctx(), approved).kyc.status is KycStatus.VERIFIED


def test_callback_for_an_unknown_reference(identity: IdentityService, storage: Storage) -> None:
    before = event_types(storage)
    with pytest.raises(UnknownProviderReference) as err:
        identity.handle_provider_callback(
            ctx(), ProviderCallback(reference="nope", outcome=ProviderOutcome.APPROVED)
        )
    assert err.value.code == "identity.unknown_provider_reference"
    assert event_types(storage) == before


def test_late_callbacks_cannot_change_a_final_decision(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = _started(identity)
    identity.handle_provider_callback(ctx(), provider.callback(customer))
    settled = events(storage)
    for verdict in (
        FakeVerdict.pending(),
        FakeVerdict.review(),
        FakeVerdict.reject(final=True),
        FakeVerdict.timeout(),
    ):
        late = identity.handle_provider_callback(
            ctx(), provider.callback(customer, verdict=verdict)
        )
        assert late.effect is CallbackEffect.IGNORED
        assert late.kyc.status is KycStatus.VERIFIED
    assert events(storage) == settled
    assert identity.verified_tier(ctx(), customer) == "basic"


def test_watchlist_hit_raises_a_risk_flag(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    provider.script(FakeVerdict.watchlist(), family_name="Villanueva-Santos")
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert (result.kyc.status, result.kyc.rejection) == (KycStatus.REJECTED, "final")
    assert KycReason.WATCHLIST_MATCH in result.kyc.reason_codes
    assert len(result.risk_flag_ids) == 1
    assert event_types(storage)[-2:] == ["kyc.rejected", "risk.flagged"]
    flagged = events(storage)[-1].payload
    assert flagged["reason"] == "watchlist_hit"
    assert flagged["source"] == "provider"
    assert flagged["severity"] == "high"
    assert flagged["kyc_id"] == result.kyc.id
    flags = identity.list_risk_flags(ctx(), customer.id)
    assert [f.id for f in flags] == result.risk_flag_ids
    assert identity.get_customer(ctx(), customer.id).risk_flags == 1


def test_an_approval_with_a_watchlist_hit_waits_for_review(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = _started(identity)
    hit = provider.callback(customer, verdict=FakeVerdict.watchlist(ProviderOutcome.APPROVED))
    result = identity.handle_provider_callback(ctx(), hit)
    assert (result.kyc.status, result.kyc.in_review) == (KycStatus.STARTED, True)
    assert len(result.risk_flag_ids) == 1
    assert identity.verified_tier(ctx(), customer) is None
    assert "kyc.verified" not in event_types(storage)
    # The reviewer clears the match: the provider's next verdict verifies.
    cleared = identity.handle_provider_callback(ctx(), provider.callback(customer))
    assert cleared.kyc.status is KycStatus.VERIFIED
    assert identity.verified_tier(ctx(), customer) == "basic"


def test_watchlist_hit_after_the_decision_is_not_dropped(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = _started(identity)
    identity.handle_provider_callback(ctx(), provider.callback(customer))
    hit = provider.callback(customer, verdict=FakeVerdict.watchlist(ProviderOutcome.APPROVED))
    late = identity.handle_provider_callback(ctx(), hit)
    assert late.effect is CallbackEffect.IGNORED
    assert len(late.risk_flag_ids) == 1
    assert event_types(storage)[-1] == "risk.flagged"
    # The same hit reported again for this attempt raises no second flag.
    again = provider.callback(customer, verdict=FakeVerdict.watchlist(ProviderOutcome.REVIEW))
    assert identity.handle_provider_callback(ctx(), again).risk_flag_ids == []
    assert len(identity.list_risk_flags(ctx(), customer)) == 1


def test_repeated_rejections_beyond_the_threshold_raise_one_flag(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    provider.script(*[FakeVerdict.reject()] * 5, customer_id=customer.id)
    flags_per_attempt = []
    for _ in range(5):
        identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
        result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
        flags_per_attempt.append(len(result.risk_flag_ids))
    # basic tolerates 3 retryable rejections; the 4th raises the flag, once.
    assert flags_per_attempt == [0, 0, 0, 1, 0]
    flagged = [e for e in events(storage) if e.event_type == "risk.flagged"]
    assert len(flagged) == 1
    assert (flagged[0].payload["reason"], flagged[0].payload["source"]) == (
        "repeated_rejections",
        "rule",
    )
    counts = [
        e.payload["retryable_rejections"] for e in events(storage) if e.event_type == "kyc.rejected"
    ]
    assert counts == [1, 2, 3, 4, 5]


def test_flag_risk_through_the_api(identity: IdentityService, storage: Storage) -> None:
    customer = new_customer(identity)
    flag = identity.flag_risk(
        ctx(), FlagRisk(customer_id=customer.id, reason="suspicious_activity", severity="low")
    )
    assert (flag.reason, flag.source, flag.kyc_id) == (
        RiskReason.SUSPICIOUS_ACTIVITY,
        RiskSource.API,
        None,
    )
    last = events(storage)[-1]
    assert last.event_type == "risk.flagged"
    assert last.payload["flag_id"] == flag.id
    assert last.aggregate_id == customer.id
    assert last.aggregate_sequence == 2
    with pytest.raises(CustomerNotFound):
        identity.flag_risk(ctx(), FlagRisk(customer_id="missing", reason="other"))


def test_the_fake_provider_scripts_by_document_number(
    identity: IdentityService, provider: FakeKycProvider
) -> None:
    provider.script(FakeVerdict.review(), FakeVerdict.approve(), document_number="XK7741029")
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    review = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert review.kyc.in_review
    identity.handle_provider_callback(
        ctx(), provider.callback(customer.id, verdict=FakeVerdict.approve())
    )
    assert identity.verified_tier(ctx(), customer.id) == "basic"
