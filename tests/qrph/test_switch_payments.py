"""Payments notified by the switch: received, then confirmed or failed, once per reference."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from finfactory.kernel.errors import DomainError, ValidationError
from finfactory.kernel.money import Money
from finfactory.primitives.qrph import (
    FailureReason,
    NetworkReferenceConflict,
    PayloadMismatch,
    PaymentChannel,
    PaymentNotFound,
    PaymentStatus,
    QrFormatError,
    QrNotFound,
    QrStatus,
    SwitchPayment,
    build_payload,
    read_merchant_qr,
)
from tests.qrph.conftest import QrEnv, actor_ctx, dynamic_qr, php, static_qr

GCASH_SAMPLE = (
    "00020101021128620011ph.ppmi.p2m0111GXCHPHM2XXX032121702000000060243306005030005204581253036"
    "085802PH5908Gong Cha60037626104122462660012ph.ppmi.qrph0309GCRD0000105212170500000670039620"
    "680708GEN0000863049B84"
)


class MerchantSuspended(DomainError):
    code = "test_qrph.merchant_suspended"


def test_switch_payment_to_static_qr_is_received_then_confirmed(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    paid = env.switch.pay(qr.payload, php("120.75"))
    assert paid.status is PaymentStatus.CONFIRMED
    assert paid.channel is PaymentChannel.SWITCH
    assert (paid.qr_id, paid.merchant_wallet_id, paid.amount) == (
        qr.id,
        "merchant-1",
        php("120.75"),
    )
    assert paid.journal_id == "journal-1"
    assert paid.failure_reason is None
    assert paid.payer_institution == "FAKEPHM2XXX"
    assert paid.resolved_at == paid.received_at
    [credit] = env.settlement.credits
    assert (credit.merchant_wallet_id, credit.amount, credit.payer_wallet_id) == (
        "merchant-1",
        php("120.75"),
        None,
    )
    assert credit.reference == f"qrph:{paid.id}"
    assert env.service.get_payment(env.ctx, paid.id) == paid
    events = env.events()
    assert [name for name, _ in events] == [
        "qr.generated",
        "qr.payment.received",
        "qr.payment.confirmed",
    ]
    common = {
        "payment_id": paid.id,
        "qr_id": qr.id,
        "merchant_wallet_id": "merchant-1",
        "network_reference": paid.network_reference,
        "channel": "switch",
        "amount": {"amount": "120.75", "currency": "PHP"},
    }
    assert events[1][1] == {**common, "received_at": paid.received_at.isoformat()}
    assert events[2][1] == {
        **common,
        "journal_id": "journal-1",
        "confirmed_at": paid.received_at.isoformat(),
    }
    # A static QR code takes any number of payments.
    again = env.switch.pay(qr.payload, php("1.00"))
    assert again.status is PaymentStatus.CONFIRMED
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.ACTIVE


def test_payment_by_qr_id(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("99.00"))
    note = SwitchPayment(network_reference="NR-1", qr_id=qr.id, amount=php("99.00"))
    paid = env.service.receive_switch_payment(env.switch.ctx, note)
    assert paid.status is PaymentStatus.CONFIRMED
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.PAID


def test_duplicate_notification_returns_the_first_result_and_changes_nothing(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("40.00"))
    first = env.switch.pay(qr.payload, php("40.00"))
    events = env.events()
    for _ in range(2):
        assert env.switch.redeliver(first.network_reference) == first
    assert env.events() == events
    assert len(env.settlement.credits) == 1
    assert env.payment_count() == 1
    # Each delivery is audited; the repeats say so.
    receipts = [r for r in env.audit() if r.action == "qrph.receive_switch_payment"]
    assert [r.summary.get("duplicate", False) for r in receipts] == [False, True, True]
    assert {r.resource_id for r in receipts} == {first.id}
    # A duplicate of a failed payment is the same failure.
    failed = env.switch.pay(qr.payload, php("40.00"))
    assert failed.failure_reason is FailureReason.ALREADY_PAID
    assert env.switch.redeliver(failed.network_reference) == failed


def test_same_network_reference_with_other_data_is_a_conflict(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    other = env.service.generate_static_qr(env.ctx, static_qr("merchant-2"))
    env.switch.pay(qr.payload, php("10.00"), network_reference="NR-7")
    events = env.events()
    for payload, amount, institution in (
        (qr.payload, "10.01", "FAKEPHM2XXX"),
        (other.payload, "10.00", "FAKEPHM2XXX"),
        (qr.payload, "10.00", "OTHRPHM2XXX"),
    ):
        note = SwitchPayment(
            network_reference="NR-7",
            payload=payload,
            amount=php(amount),
            payer_institution=institution,
        )
        with pytest.raises(NetworkReferenceConflict):
            env.service.receive_switch_payment(env.switch.ctx, note)
    assert env.events() == events
    assert env.payment_count() == 1
    assert [r.outcome.value for r in env.audit()][-3:] == ["rejected"] * 3


def test_expired_dynamic_qr_fails_and_credits_nothing(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("15.00", expires_in_seconds=60))
    env.clock.advance(timedelta(seconds=60))
    failed = env.switch.pay(qr.payload, php("15.00"))
    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_reason is FailureReason.EXPIRED
    assert failed.journal_id is None
    assert env.settlement.credits == []
    name, payload = env.events()[-1]
    assert name == "qr.payment.failed"
    assert (payload["reason"], payload["reason_detail"]) == ("expired", None)
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.EXPIRED


def test_late_delivery_fails_as_expired_even_if_paid_in_time(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("15.00", expires_in_seconds=60))
    reference = env.switch.send_later(qr.payload, php("15.00"))
    env.clock.advance(timedelta(minutes=5))
    late = env.switch.deliver(reference)
    assert late.failure_reason is FailureReason.EXPIRED
    assert env.switch.pending == []


def test_out_of_order_deliveries_confirm_the_first_delivered_only(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("30.00"))
    older = env.switch.send_later(qr.payload, php("30.00"))
    newer = env.switch.send_later(qr.payload, php("30.00"))
    views = env.switch.deliver_all(newest_first=True)
    assert [v.network_reference for v in views] == [newer, older]
    assert [v.status for v in views] == [PaymentStatus.CONFIRMED, PaymentStatus.FAILED]
    assert views[1].failure_reason is FailureReason.ALREADY_PAID
    assert len(env.settlement.credits) == 1


def test_amount_mismatch_leaves_the_dynamic_qr_payable(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("30.00"))
    short = env.switch.pay(qr.payload, php("29.99"))
    assert short.failure_reason is FailureReason.AMOUNT_MISMATCH
    assert short.failure_detail is None
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.ACTIVE
    assert env.switch.pay(qr.payload, php("30.00")).status is PaymentStatus.CONFIRMED
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.PAID
    late = env.switch.pay(qr.payload, php("30.00"))
    assert late.failure_reason is FailureReason.ALREADY_PAID


def test_static_qr_amount_limits(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    assert env.switch.pay(qr.payload, php("50000.00")).status is PaymentStatus.CONFIRMED
    over = env.switch.pay(qr.payload, php("50000.01"))
    assert over.failure_reason is FailureReason.AMOUNT_MISMATCH
    assert over.failure_detail == "qrph.amount_above_maximum"
    dollars = env.switch.pay(qr.payload, Money("5.00", "USD"))
    assert dollars.failure_reason is FailureReason.AMOUNT_MISMATCH
    assert dollars.failure_detail == "qrph.currency_mismatch"
    assert dollars.amount == Money("5.00", "USD")
    assert len(env.settlement.credits) == 1


def test_refused_credit_keeps_received_and_failed(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("75.00"))
    env.settlement.fail_with(MerchantSuspended("merchant wallet is suspended"))
    failed = env.switch.pay(qr.payload, php("75.00"))
    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_reason is FailureReason.REJECTED
    assert failed.failure_detail == "test_qrph.merchant_suspended"
    assert env.service.get_payment(env.ctx, failed.id) == failed
    assert env.settlement.credits == []
    assert len(env.settlement.refusals) == 1
    assert env.event_types()[-2:] == ["qr.payment.received", "qr.payment.failed"]
    assert env.events()[-1][1]["reason_detail"] == "test_qrph.merchant_suspended"
    # The command itself succeeded: the payment was recorded and answered.
    assert env.audit()[-1].outcome.value == "succeeded"
    assert env.audit()[-1].summary["detail"] == "test_qrph.merchant_suspended"
    # Still payable once the merchant can be credited again.
    env.settlement.fail_with(None)
    assert env.switch.pay(qr.payload, php("75.00")).status is PaymentStatus.CONFIRMED


def test_unknown_foreign_malformed_and_altered_payloads(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("20.00"))
    with pytest.raises(QrNotFound):
        env.switch.pay(GCASH_SAMPLE, php("1.00"))
    with pytest.raises(QrNotFound):
        env.service.receive_switch_payment(
            env.switch.ctx, SwitchPayment(network_reference="X1", qr_id="nope", amount=php("1"))
        )
    with pytest.raises(QrFormatError):
        env.switch.pay(qr.payload[:-1] + ("0" if qr.payload[-1] != "0" else "1"), php("20.00"))
    with pytest.raises(ValidationError):
        SwitchPayment(network_reference="X2", amount=php("1.00"))  # neither qr_id nor payload
    spec = read_merchant_qr(qr.payload)
    altered = build_payload(attrs.evolve(spec, amount_minor=100))  # the same label, 1.00
    with pytest.raises(PayloadMismatch):
        env.switch.pay(altered, php("1.00"))
    assert env.payment_count() == 0
    assert env.settlement.credits == []
    assert env.event_types() == ["qr.generated"]
    rejected = [r for r in env.audit() if r.outcome.value == "rejected"]
    assert [r.reason.split(":")[0] for r in rejected] == [
        "qrph.qr_not_found",
        "qrph.qr_not_found",
        "qrph.payload_mismatch",
    ]


def test_list_payments_by_qr_merchant_and_pages(env: QrEnv) -> None:
    qr1 = env.service.generate_static_qr(env.ctx, static_qr())
    qr2 = env.service.generate_static_qr(env.ctx, static_qr("merchant-2"))
    ids1 = []
    for i in range(5):
        ids1.append(env.switch.pay(qr1.payload, php(f"{i + 1}.00")).id)
        env.clock.advance(timedelta(seconds=1))
    two = env.switch.pay(qr2.payload, php("9.00"))
    assert [p.id for p in env.service.list_payments(env.ctx, qr_id=qr1.id).payments] == ids1
    by_merchant = env.service.list_payments(env.ctx, merchant_wallet_id="merchant-2")
    assert [p.id for p in by_merchant.payments] == [two.id]
    seen = []
    page = env.service.list_payments(env.ctx, qr_id=qr1.id, limit=2)
    while True:
        seen += [p.id for p in page.payments]
        if page.next_after is None:
            break
        page = env.service.list_payments(env.ctx, qr_id=qr1.id, limit=2, after=page.next_after)
    assert seen == ids1
    assert len(env.service.list_payments(env.ctx).payments) == 6
    with pytest.raises(PaymentNotFound):
        env.service.list_payments(env.ctx, after="missing")
    with pytest.raises(PaymentNotFound):
        env.service.get_payment(env.ctx, "missing")


def test_payments_in_the_same_instant_page_in_id_order(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    ids = sorted(env.switch.pay(qr.payload, php("1.00")).id for _ in range(4))
    page = env.service.list_payments(env.ctx, qr_id=qr.id, limit=3)
    rest = env.service.list_payments(env.ctx, qr_id=qr.id, after=page.next_after)
    assert [p.id for p in page.payments + rest.payments] == ids


def test_switch_actor_needs_only_the_receive_permission(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    switch_ctx = actor_ctx("switch", actor="switch-1")
    from finfactory.kernel.authz import RoleBasedPolicy
    from finfactory.primitives.qrph import QrPaymentService

    policy = RoleBasedPolicy(roles={"switch": frozenset({"qrph.switch.receive"})})
    service = QrPaymentService(env.storage, policy, env.clock, env.service.ids, env.settlement)
    note = SwitchPayment(network_reference="P-1", payload=qr.payload, amount=php("3.00"))
    assert service.receive_switch_payment(switch_ctx, note).status is PaymentStatus.CONFIRMED


def test_refusal_for_one_merchant_only(env: QrEnv) -> None:
    one = env.service.generate_static_qr(env.ctx, static_qr())
    two = env.service.generate_static_qr(env.ctx, static_qr("merchant-2"))
    env.settlement.fail_with(MerchantSuspended("suspended"), merchant_wallet_id="merchant-2")
    assert env.switch.pay(one.payload, php("2.00")).status is PaymentStatus.CONFIRMED
    assert env.switch.pay(two.payload, php("3.00")).failure_reason is FailureReason.REJECTED
    assert env.settlement.total() == {"PHP": php("2.00")}
    assert env.settlement.total("merchant-2") == {}
