"""Entities -> API results."""

from __future__ import annotations

from datetime import datetime

from finfactory.kernel.money import from_minor
from finfactory.primitives.qrph.commands import PaymentView, QrView
from finfactory.primitives.qrph.model import QrCode, QrPayment


def qr_view(qr: QrCode, now: datetime) -> QrView:
    return QrView.model_construct(
        id=qr.id,
        merchant_wallet_id=qr.merchant_wallet_id,
        kind=qr.kind,
        initiation=qr.initiation,
        status=qr.status_at(now),
        payload=qr.payload,
        amount=None if qr.amount is None else from_minor(qr.amount, qr.currency),
        currency=qr.currency,
        acquirer_id=qr.acquirer_id,
        merchant_account=qr.merchant_account,
        merchant_name=qr.merchant_name,
        merchant_city=qr.merchant_city,
        mcc=qr.mcc,
        postal_code=qr.postal_code,
        reference_label=qr.reference_label,
        expires_at=qr.expires_at,
        created_at=qr.created_at,
    )


def payment_view(p: QrPayment) -> PaymentView:
    return PaymentView.model_construct(
        id=p.id,
        qr_id=p.qr_id,
        merchant_wallet_id=p.merchant_wallet_id,
        network_reference=p.network_reference,
        channel=p.channel,
        amount=from_minor(p.amount, p.currency),
        status=p.status,
        failure_reason=p.failure_reason,
        failure_detail=p.failure_detail,
        journal_id=p.journal_id,
        payer_wallet_id=p.payer_wallet_id,
        payer_institution=p.payer_institution,
        received_at=p.received_at,
        resolved_at=p.resolved_at,
    )
