"""Merchants' account numbers: opaque, one per merchant, unique in the tenant; and no QR code
for a wallet the settlement does not know."""

from __future__ import annotations

import re

import pytest

from finfactory.kernel.authz import default_policy
from finfactory.kernel.ports import Storage
from finfactory.primitives.qrph import (
    MerchantWalletNotFound,
    PaymentStatus,
    PayQr,
    QrKind,
    QrPaymentService,
    read_merchant_qr,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.qrph import RecordingMerchantSettlement
from tests.qrph.conftest import (
    TENANT,
    QrEnv,
    actor_ctx,
    configure,
    dynamic_qr,
    php,
    static_qr,
)


def test_one_opaque_account_number_per_merchant(env: QrEnv) -> None:
    static = env.service.generate_static_qr(env.ctx, static_qr("merchant-1"))
    dynamic = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(wallet="merchant-1"))
    other = env.service.generate_static_qr(env.ctx, static_qr("merchant-2"))
    assert static.merchant_account == dynamic.merchant_account != other.merchant_account
    for qr, wallet in ((static, "merchant-1"), (dynamic, "merchant-1"), (other, "merchant-2")):
        assert re.fullmatch("[0-9]{16}", qr.merchant_account)
        assert read_merchant_qr(qr.payload).merchant_account == qr.merchant_account
        assert wallet not in qr.payload
        assert qr.merchant_wallet_id == wallet
    # Payments find the code, and the wallet behind it, by the account number.
    paid = env.switch.pay(other.payload, php("3.00"))
    assert (paid.qr_id, paid.merchant_wallet_id) == (other.id, "merchant-2")
    [credit] = env.settlement.credits
    assert credit.merchant_wallet_id == "merchant-2"


def test_the_settlement_learns_the_kind_of_each_payment(env: QrEnv) -> None:
    person = env.service.generate_static_qr(env.ctx, static_qr("person-1", kind="p2p"))
    shop = env.service.generate_static_qr(env.ctx, static_qr("merchant-1"))
    env.service.pay_qr(env.ctx, PayQr(payload=person.payload, payer_wallet_id="p", amount=php("1")))
    env.switch.pay(shop.payload, php("2.00"))
    assert [(c.kind, c.payer_wallet_id) for c in env.settlement.credits] == [
        (QrKind.P2P, "p"),
        (QrKind.P2M, None),
    ]


def test_no_qr_code_for_a_wallet_the_settlement_does_not_know(storage: Storage) -> None:
    clock = ManualClock()
    settlement = RecordingMerchantSettlement(wallets={"merchant-1"})
    service = QrPaymentService(storage, default_policy(), clock, SequentialIds(), settlement)
    configure(storage, clock)
    ctx = actor_ctx("qrph.operator")
    with pytest.raises(MerchantWalletNotFound) as err:
        service.generate_static_qr(ctx, static_qr("ghost"))
    assert (err.value.code, err.value.details["field"]) == (
        "qrph.merchant_wallet_not_found",
        "merchant_wallet_id",
    )
    with pytest.raises(MerchantWalletNotFound):
        service.generate_dynamic_qr(ctx, dynamic_qr(wallet="ghost"))
    with storage.read() as uow:
        audit = [(r.action, r.outcome.value) for r in uow.kernel.audit_records(TENANT)]
        events = uow.kernel.read_events(0, 100, TENANT)
    assert audit[-2:] == [
        ("qrph.generate_static_qr", "rejected"),
        ("qrph.generate_dynamic_qr", "rejected"),
    ]
    assert events == []
    qr = service.generate_static_qr(ctx, static_qr("merchant-1"))
    paid = service.pay_qr(ctx, PayQr(payload=qr.payload, payer_wallet_id="p", amount=php("1")))
    assert paid.status is PaymentStatus.CONFIRMED
