"""QR codes and the payments made to them, and the pure rules that decide a payment."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import attrs

from finfactory.kernel.canonical import sha256_hex
from finfactory.primitives.qrph.emv import Initiation, QrKind

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# EMVCo limits the reference label (tag 62, sub-tag 05) to 25 characters; a UUID's 128 bits
# take exactly 25 base-36 digits.
LABEL_LENGTH = 25
# The merchant account a QR code carries (P2M sub-tag 03, P2P sub-tag 04) is a number of this
# many digits, so that a payload shows no internal id; collisions are caught by the schema.
ACCOUNT_NUMBER_DIGITS = 16


class QrStatus(StrEnum):
    ACTIVE = "active"
    PAID = "paid"  # a dynamic QR after its one confirmed payment
    EXPIRED = "expired"  # reported for an unpaid dynamic QR past its expiry; never stored


class PaymentStatus(StrEnum):
    RECEIVED = "received"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class PaymentChannel(StrEnum):
    SWITCH = "switch"  # notified by the acquirer or switch (the payer's money is elsewhere)
    ON_US = "on_us"  # paid from a wallet of the same tenant


class FailureReason(StrEnum):
    EXPIRED = "expired"
    AMOUNT_MISMATCH = "amount_mismatch"
    ALREADY_PAID = "already_paid"
    REJECTED = "rejected"  # the wallet or ledger refused the credit; detail holds its code


@attrs.frozen
class QrCode:
    id: str
    tenant_id: str
    merchant_wallet_id: str
    kind: QrKind
    initiation: Initiation
    status: QrStatus
    payload: str
    acquirer_id: str
    merchant_account: str
    merchant_name: str
    merchant_city: str
    mcc: str
    currency: str
    amount: int | None  # minor units; dynamic QRs only
    reference_label: str | None  # dynamic QRs only
    postal_code: str | None
    expires_at: datetime | None  # dynamic QRs only
    created_at: datetime
    paid_at: datetime | None = None

    def status_at(self, now: datetime) -> QrStatus:
        if self.status is QrStatus.ACTIVE and is_expired(self.expires_at, now):
            return QrStatus.EXPIRED
        return self.status


@attrs.frozen
class QrPayment:
    """A payment to one of our QR codes. ``version`` numbers its events (received = 1)."""

    id: str
    tenant_id: str
    qr_id: str
    merchant_wallet_id: str
    initiation: Initiation
    network_reference: str
    channel: PaymentChannel
    amount: int
    currency: str
    payer_wallet_id: str | None
    payer_institution: str | None
    status: PaymentStatus
    failure_reason: FailureReason | None
    failure_detail: str | None
    journal_id: str | None
    received_at: datetime
    resolved_at: datetime | None
    version: int = 1

    @property
    def request(self) -> PaymentRequest:
        return PaymentRequest(
            qr_id=self.qr_id,
            channel=self.channel,
            amount=self.amount,
            currency=self.currency,
            payer_wallet_id=self.payer_wallet_id,
            payer_institution=self.payer_institution,
        )


@attrs.frozen
class PaymentRequest:
    """The data of a payment notification; a network reference always carries the same."""

    qr_id: str | None
    channel: PaymentChannel
    amount: int
    currency: str
    payer_wallet_id: str | None
    payer_institution: str | None


@attrs.frozen
class Failure:
    reason: FailureReason
    detail: str | None = None


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now


def check_payment(
    qr: QrCode, amount: int, currency: str, now: datetime, max_amount: int
) -> Failure | None:
    """Why a payment of ``amount`` to ``qr`` at ``now`` cannot be confirmed, or None.

    A dynamic QR takes one payment of exactly its amount before it expires; a static QR
    takes any positive amount up to the tenant's maximum, any number of times.
    """
    if qr.status is QrStatus.PAID:
        return Failure(FailureReason.ALREADY_PAID)
    if is_expired(qr.expires_at, now):
        return Failure(FailureReason.EXPIRED)
    if currency != qr.currency:
        return Failure(FailureReason.AMOUNT_MISMATCH, "qrph.currency_mismatch")
    if qr.amount is not None and amount != qr.amount:
        return Failure(FailureReason.AMOUNT_MISMATCH)
    if qr.amount is None and amount > max_amount:
        return Failure(FailureReason.AMOUNT_MISMATCH, "qrph.amount_above_maximum")
    return None


def account_number(seed_id: str) -> str:
    """A merchant's opaque account number, drawn from a fresh id (never from the wallet id)."""
    number = int(sha256_hex("qrph.account:" + seed_id), 16) % 10**ACCOUNT_NUMBER_DIGITS
    return f"{number:0{ACCOUNT_NUMBER_DIGITS}d}"


def generated_label(qr_id: str) -> str:
    """The reference label a dynamic QR gets when the merchant gives none (unique per id)."""
    try:
        number = uuid.UUID(qr_id).int
    except ValueError:
        number = int(sha256_hex(qr_id), 16) % 36**LABEL_LENGTH
    digits = []
    for _ in range(LABEL_LENGTH):
        number, digit = divmod(number, 36)
        digits.append(_BASE36[digit])
    return "".join(reversed(digits))
