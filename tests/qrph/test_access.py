"""Authorization (denials audited) and tenant isolation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from finfactory.kernel.audit import AuditRecord
from finfactory.kernel.errors import PermissionDenied
from finfactory.primitives.qrph import (
    PaymentNotFound,
    PayQr,
    QrNotFound,
    SwitchPayment,
)
from tests.qrph.conftest import QrEnv, actor_ctx, configure, dynamic_qr, php, static_qr


def test_each_command_needs_its_permission_and_denials_are_audited(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    stranger = actor_ctx("ledger.operator", actor="intruder")
    calls: list[Callable[[], object]] = [
        lambda: env.service.generate_static_qr(stranger, static_qr("m-9")),
        lambda: env.service.generate_dynamic_qr(stranger, dynamic_qr()),
        lambda: env.service.receive_switch_payment(
            stranger, SwitchPayment(network_reference="N", qr_id=qr.id, amount=php("1.00"))
        ),
        lambda: env.service.pay_qr(
            stranger, PayQr(payload=qr.payload, payer_wallet_id="p", amount=php("1.00"))
        ),
        lambda: env.service.get_qr(stranger, qr.id),
        lambda: env.service.list_payments(stranger),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    denied = [r for r in _all_audit(env) if r.actor_id == "intruder"]
    assert [r.outcome.value for r in denied] == ["denied"] * len(calls)
    assert [r.action for r in denied] == [
        "qrph.generate_static_qr",
        "qrph.generate_dynamic_qr",
        "qrph.receive_switch_payment",
        "qrph.pay_qr",
        "qrph.read",
        "qrph.read",
    ]
    assert env.event_types() == ["qr.generated"]
    assert env.settlement.credits == []


def _all_audit(env: QrEnv) -> list[AuditRecord]:
    with env.storage.read() as uow:
        return list(uow.kernel.audit_records("shop-a"))


def test_auditor_reads_but_cannot_pay(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    auditor = actor_ctx("auditor", actor="aud-1")
    assert env.service.get_qr(auditor, qr.id).id == qr.id
    with pytest.raises(PermissionDenied):
        env.service.pay_qr(
            auditor, PayQr(payload=qr.payload, payer_wallet_id="p", amount=php("1.00"))
        )


def test_tenants_are_isolated(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_qr())
    paid = env.switch.pay(qr.payload, php("3.00"))
    configure(env.storage, env.clock, "shop-b")
    other = actor_ctx("qrph.operator", tenant="shop-b")
    with pytest.raises(QrNotFound):
        env.service.get_qr(other, qr.id)
    with pytest.raises(PaymentNotFound):
        env.service.get_payment(other, paid.id)
    assert env.service.list_payments(other, qr_id=qr.id).payments == []
    # Tenant A's QR code is not tenant B's, by id or by payload.
    with pytest.raises(QrNotFound):
        env.service.receive_switch_payment(
            other, SwitchPayment(network_reference="B-1", qr_id=qr.id, amount=php("3.00"))
        )
    with pytest.raises(QrNotFound):
        env.service.pay_qr(other, PayQr(payload=qr.payload, payer_wallet_id="p", amount=php("3")))
    # The same wallet id and network reference are independent per tenant; each tenant
    # gives the merchant its own account number.
    own = env.service.generate_static_qr(other, static_qr())
    assert own.id != qr.id
    assert own.merchant_account != qr.merchant_account
    note = SwitchPayment(
        network_reference=paid.network_reference, payload=own.payload, amount=php("3.00")
    )
    in_b = env.service.receive_switch_payment(other, note)
    assert in_b.qr_id == own.id
    assert in_b.id != paid.id
    assert env.event_types("shop-b") == [
        "qr.generated",
        "qr.payment.received",
        "qr.payment.confirmed",
    ]
    assert [c.tenant_id for c in env.settlement.credits] == ["shop-a", "shop-b"]


def test_denied_whatever_the_payload_says(env: QrEnv) -> None:
    """The permission is checked before the payload is read: a caller without it learns
    nothing about the payload and its attempt is on the audit trail."""
    stranger = actor_ctx("ledger.operator", actor="intruder")
    for payload in ("not a QR code", "000201"):
        with pytest.raises(PermissionDenied):
            env.service.pay_qr(
                stranger, PayQr(payload=payload, payer_wallet_id="p", amount=php("1.00"))
            )
        with pytest.raises(PermissionDenied):
            env.service.receive_switch_payment(
                stranger,
                SwitchPayment(network_reference="N-1", payload=payload, amount=php("1.00")),
            )
    denied = [r for r in _all_audit(env) if r.actor_id == "intruder"]
    assert [(r.action, r.outcome.value) for r in denied] == [
        ("qrph.pay_qr", "denied"),
        ("qrph.receive_switch_payment", "denied"),
    ] * 2
