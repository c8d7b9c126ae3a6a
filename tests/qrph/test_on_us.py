"""On-us payments: a wallet of the same tenant pays a QR code it scanned."""

from __future__ import annotations

from datetime import timedelta

import pytest

from finfactory.kernel.errors import IdempotencyConflict, ValidationError
from finfactory.kernel.money import Money
from finfactory.primitives.qrph import (
    FailureReason,
    InvalidPaymentAmount,
    NetworkReferenceConflict,
    PaymentChannel,
    PaymentStatus,
    PayQr,
    QrFormatError,
    QrNotFound,
    QrStatus,
    SwitchPayment,
)
from tests.qrph.conftest import QrEnv, dynamic_qr, php, static_qr
from tests.qrph.test_switch_payments import GCASH_SAMPLE


def test_on_us_payment_moves_payer_to_merchant(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    paid = env.service.pay_qr(
        env.ctx, PayQr(payload=qr.payload, payer_wallet_id="payer-1", amount=php("42.00"))
    )
    assert paid.status is PaymentStatus.CONFIRMED
    assert paid.channel is PaymentChannel.ON_US
    assert paid.payer_wallet_id == "payer-1"
    assert paid.qr_id == qr.id
    assert paid.network_reference.startswith("onus-")
    [credit] = env.settlement.credits
    assert (credit.payer_wallet_id, credit.merchant_wallet_id, credit.amount) == (
        "payer-1",
        "merchant-1",
        php("42.00"),
    )
    assert env.event_types() == ["qr.generated", "qr.payment.received", "qr.payment.confirmed"]
    assert env.events()[1][1]["channel"] == "on_us"
    assert "payer-1" not in str(env.events())


def test_amount_rules(env: QrEnv) -> None:
    static = env.service.generate_static_qr(env.ctx, static_qr())
    dynamic = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("18.50"))
    with pytest.raises(InvalidPaymentAmount) as err:
        env.service.pay_qr(env.ctx, PayQr(payload=static.payload, payer_wallet_id="p"))
    assert err.value.field == "amount"
    for wrong in (php("18.49"), Money("18.50", "USD")):
        with pytest.raises(InvalidPaymentAmount):
            env.service.pay_qr(
                env.ctx, PayQr(payload=dynamic.payload, payer_wallet_id="p", amount=wrong)
            )
    assert env.payment_count() == 0
    omitted = env.service.pay_qr(env.ctx, PayQr(payload=dynamic.payload, payer_wallet_id="p"))
    assert omitted.amount == php("18.50")
    assert omitted.status is PaymentStatus.CONFIRMED
    again = env.service.pay_qr(
        env.ctx, PayQr(payload=dynamic.payload, payer_wallet_id="p", amount=php("18.50"))
    )
    assert again.failure_reason is FailureReason.ALREADY_PAID
    assert len(env.settlement.credits) == 1


def test_reference_from_idempotency_key_or_given(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    command = PayQr(payload=qr.payload, payer_wallet_id="p", amount=php("5.00"))
    first = env.service.pay_qr(env.ctx, command, idempotency_key="tap-1")
    assert env.service.pay_qr(env.ctx, command, idempotency_key="tap-1") == first
    other = env.service.pay_qr(env.ctx, command, idempotency_key="tap-2")
    assert other.network_reference != first.network_reference
    with pytest.raises(IdempotencyConflict):
        env.service.pay_qr(
            env.ctx, command.model_copy(update={"payer_wallet_id": "q"}), idempotency_key="tap-1"
        )
    given = command.model_copy(update={"reference": "POS-0001"})
    paid = env.service.pay_qr(env.ctx, given)
    assert paid.network_reference == "onus-POS-0001"
    assert env.service.pay_qr(env.ctx, given) == paid  # the reference deduplicates too
    with pytest.raises(NetworkReferenceConflict):
        env.service.pay_qr(env.ctx, given.model_copy(update={"amount": php("6.00")}))
    # Without key or reference, every call is a new payment.
    env.service.pay_qr(env.ctx, command)
    env.service.pay_qr(env.ctx, command)
    assert len(env.settlement.credits) == 5


def test_expired_and_foreign_payloads(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("7.00", expires_in_seconds=10))
    env.clock.advance(timedelta(seconds=11))
    late = env.service.pay_qr(env.ctx, PayQr(payload=qr.payload, payer_wallet_id="p"))
    assert late.failure_reason is FailureReason.EXPIRED
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.EXPIRED
    with pytest.raises(QrNotFound):
        env.service.pay_qr(
            env.ctx, PayQr(payload=GCASH_SAMPLE, payer_wallet_id="p", amount=php("1.00"))
        )
    with pytest.raises(QrFormatError):
        env.service.pay_qr(
            env.ctx, PayQr(payload="000201", payer_wallet_id="p", amount=php("1.00"))
        )
    assert env.payment_count() == 1
    assert env.settlement.credits == []


def test_on_us_references_cannot_take_the_switchs(env: QrEnv) -> None:
    """A payer who can pay on-us must not be able to use up a reference the switch will
    send: the two have separate namespaces."""
    static = env.service.generate_static_qr(env.ctx, static_qr())
    own = env.service.pay_qr(
        env.ctx,
        PayQr(payload=static.payload, payer_wallet_id="p", amount=php("1.00"), reference="IP-777"),
    )
    assert own.network_reference == "onus-IP-777"
    from_switch = env.switch.pay(static.payload, php("9.00"), network_reference="IP-777")
    assert (from_switch.status, from_switch.network_reference) == (
        PaymentStatus.CONFIRMED,
        "IP-777",
    )
    with pytest.raises(ValidationError):
        SwitchPayment(network_reference="onus-IP-777", qr_id=static.id, amount=php("1.00"))
    assert len(env.settlement.credits) == 2
