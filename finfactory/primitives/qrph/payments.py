"""How a payment to one of our QR codes is recorded and confirmed, whichever way it came.

received -> (checks, then the merchant's credit) -> confirmed | failed, in the command's
transaction. A refused credit still leaves the received and failed states and their events.
"""

from __future__ import annotations

from typing import Any

import attrs

from finfactory.kernel.commands import CommandScope
from finfactory.kernel.config import load_settings
from finfactory.kernel.errors import DomainError
from finfactory.kernel.money import from_minor, minor_to_json, to_minor
from finfactory.primitives.qrph import events as ev
from finfactory.primitives.qrph.commands import PaymentView
from finfactory.primitives.qrph.emv import Initiation, MerchantQrSpec, read_merchant_qr
from finfactory.primitives.qrph.errors import (
    NetworkReferenceConflict,
    PayloadMismatch,
    QrNotFound,
)
from finfactory.primitives.qrph.model import (
    Failure,
    FailureReason,
    PaymentChannel,
    PaymentRequest,
    PaymentStatus,
    QrCode,
    QrPayment,
    QrStatus,
    check_payment,
)
from finfactory.primitives.qrph.ports import MerchantSettlement, QrStore
from finfactory.primitives.qrph.settings import QrPhSettings
from finfactory.primitives.qrph.views import payment_view


@attrs.frozen
class Incoming:
    """A payment as it arrived, before it is matched to a QR code."""

    network_reference: str
    channel: PaymentChannel
    amount: int
    currency: str
    qr_id: str | None = None
    decoded: MerchantQrSpec | None = None
    payer_wallet_id: str | None = None
    payer_institution: str | None = None

    def request(self, qr_id: str | None) -> PaymentRequest:
        return PaymentRequest(
            qr_id=qr_id,
            channel=self.channel,
            amount=self.amount,
            currency=self.currency,
            payer_wallet_id=self.payer_wallet_id,
            payer_institution=self.payer_institution,
        )


def find_qr_id(store: QrStore, tenant_id: str, decoded: MerchantQrSpec) -> str | None:
    """Our QR code a decoded payload refers to: a static one by its merchant account, a
    dynamic one by merchant account and reference label."""
    if decoded.initiation is Initiation.STATIC:
        return store.static_qr_id(tenant_id, decoded.merchant_account)
    if decoded.reference_label is None:
        return None
    return store.dynamic_qr_id(tenant_id, decoded.merchant_account, decoded.reference_label)


def receive(
    scope: CommandScope, store: QrStore, settlement: MerchantSettlement, incoming: Incoming
) -> PaymentView:
    """Record ``incoming`` once per network reference and try to confirm it."""
    tenant = scope.ctx.tenant_id
    qr_id = incoming.qr_id
    if incoming.decoded is not None:
        qr_id = find_qr_id(store, tenant, incoming.decoded)
    # The QR code is locked first: payments to it queue here, so the checks below see the
    # outcome of every earlier payment (a dynamic QR is confirmed at most once).
    qr = None if qr_id is None else store.lock_qr(tenant, qr_id)
    decoded = incoming.decoded
    if qr is not None and decoded is not None and read_merchant_qr(qr.payload) != decoded:
        raise PayloadMismatch(
            "the payload differs from the QR code we issued", qr_id=qr.id, field="payload"
        )
    request = incoming.request(None if qr is None else qr.id)
    scope.summary = {
        "network_reference": incoming.network_reference,
        "channel": incoming.channel.value,
        "amount": minor_to_json(incoming.amount, incoming.currency),
    }
    first = store.payment_by_reference(tenant, incoming.network_reference)
    if first is not None:
        scope.resource_id = first.id
        if first.request != request:
            raise NetworkReferenceConflict(
                f"network reference {incoming.network_reference} was used for another payment",
                field="network_reference",
                payment_id=first.id,
            )
        scope.summary.update(duplicate=True, status=first.status.value)
        return payment_view(first)
    if qr is None:
        raise QrNotFound("no QR code of this tenant matches", field=_target_field(incoming))
    return _record(scope, store, settlement, qr, incoming)


def _target_field(incoming: Incoming) -> str:
    return "qr_id" if incoming.decoded is None else "payload"


def _record(
    scope: CommandScope,
    store: QrStore,
    settlement: MerchantSettlement,
    qr: QrCode,
    incoming: Incoming,
) -> PaymentView:
    settings = load_settings(scope.uow, scope.ctx.tenant_id, QrPhSettings)
    payment = QrPayment(
        id=scope.ids.new_id(),
        tenant_id=scope.ctx.tenant_id,
        qr_id=qr.id,
        merchant_wallet_id=qr.merchant_wallet_id,
        initiation=qr.initiation,
        network_reference=incoming.network_reference,
        channel=incoming.channel,
        amount=incoming.amount,
        currency=incoming.currency,
        payer_wallet_id=incoming.payer_wallet_id,
        payer_institution=incoming.payer_institution,
        status=PaymentStatus.RECEIVED,
        failure_reason=None,
        failure_detail=None,
        journal_id=None,
        received_at=scope.now,
        resolved_at=None,
    )
    scope.resource_id = payment.id
    store.add_payment(payment)
    store.flush()
    # Wait for the row before the credit runs: a clash on the network reference (a
    # concurrent duplicate) must fail this command here, not inside the wallet's savepoint.
    scope.uow.flush()
    scope.emit(ev.QrPaymentReceived, _payload(payment, received_at=_iso(scope)), payment.id, 1)

    failure = check_payment(
        qr, payment.amount, payment.currency, scope.now, to_minor(settings.max_amount)[0]
    )
    journal_id: str | None = None
    if failure is None:
        try:
            journal_id = settlement.credit_merchant(
                scope.ctx,
                merchant_wallet_id=qr.merchant_wallet_id,
                amount=from_minor(payment.amount, payment.currency),
                reference=f"qrph:{payment.id}",
                payer_wallet_id=payment.payer_wallet_id,
                kind=qr.kind,
                uow=scope.uow,
            )
        except DomainError as refused:
            # The wallet's command ran in a savepoint and wrote nothing but its audit record
            # of the refusal; this payment keeps its received row and fails.
            failure = Failure(FailureReason.REJECTED, refused.code)

    if failure is None:
        assert journal_id is not None
        payment = attrs.evolve(
            payment,
            status=PaymentStatus.CONFIRMED,
            journal_id=journal_id,
            resolved_at=scope.now,
            version=2,
        )
        scope.emit(
            ev.QrPaymentConfirmed,
            _payload(payment, journal_id=journal_id, confirmed_at=_iso(scope)),
            payment.id,
            2,
        )
        if qr.initiation is Initiation.DYNAMIC:
            store.mark_paid(attrs.evolve(qr, status=QrStatus.PAID, paid_at=scope.now))
    else:
        payment = attrs.evolve(
            payment,
            status=PaymentStatus.FAILED,
            failure_reason=failure.reason,
            failure_detail=failure.detail,
            resolved_at=scope.now,
            version=2,
        )
        scope.emit(
            ev.QrPaymentFailed,
            _payload(
                payment,
                reason=failure.reason.value,
                reason_detail=failure.detail,
                failed_at=_iso(scope),
            ),
            payment.id,
            2,
        )
    store.save_payment(payment)
    store.flush()
    scope.summary.update(
        qr_id=qr.id,
        status=payment.status.value,
        reason=None if failure is None else failure.reason.value,
        detail=None if failure is None else failure.detail,
    )
    return payment_view(payment)


def _iso(scope: CommandScope) -> str:
    return str(scope.now.isoformat())


def _payload(p: QrPayment, **extra: Any) -> dict[str, Any]:
    return dict(
        payment_id=p.id,
        qr_id=p.qr_id,
        merchant_wallet_id=p.merchant_wallet_id,
        network_reference=p.network_reference,
        channel=p.channel.value,
        amount=minor_to_json(p.amount, p.currency),
        **extra,
    )
