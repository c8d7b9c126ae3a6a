"""Events QR Ph publishes. No payer data (names, payload text) ever goes into them; amounts
are money JSON (string amount plus currency)."""

from __future__ import annotations

from datetime import datetime

from finfactory.events.registry import EventPayload, declare_event

PRIMITIVE = "qrph"


class MoneyJson(EventPayload):
    amount: str
    currency: str


@declare_event(
    "qr.generated",
    primitive=PRIMITIVE,
    aggregate_type="qr_code",
    description="A merchant's static QR code or a one-time dynamic QR code was issued",
)
class QrGenerated(EventPayload):
    qr_id: str
    merchant_wallet_id: str
    kind: str
    initiation: str
    amount: MoneyJson | None
    reference_label: str | None
    expires_at: datetime | None


class _PaymentEvent(EventPayload):
    payment_id: str
    qr_id: str
    merchant_wallet_id: str
    network_reference: str
    channel: str
    amount: MoneyJson


@declare_event(
    "qr.payment.received",
    primitive=PRIMITIVE,
    aggregate_type="qr_payment",
    description="A payment to one of our QR codes arrived; it is not confirmed yet",
)
class QrPaymentReceived(_PaymentEvent):
    received_at: datetime


@declare_event(
    "qr.payment.confirmed",
    primitive=PRIMITIVE,
    aggregate_type="qr_payment",
    description="A received QR payment was credited to the merchant's wallet",
)
class QrPaymentConfirmed(_PaymentEvent):
    journal_id: str
    confirmed_at: datetime


@declare_event(
    "qr.payment.failed",
    primitive=PRIMITIVE,
    aggregate_type="qr_payment",
    description="A received QR payment was not credited: expired, amount_mismatch,"
    " already_paid or rejected",
)
class QrPaymentFailed(_PaymentEvent):
    reason: str
    reason_detail: str | None
    failed_at: datetime
