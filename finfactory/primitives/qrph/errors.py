"""QR Ph errors; codes are stable. (The codec's own errors live in ``qrph.emv``.)"""

from __future__ import annotations

from finfactory.kernel.errors import AlreadyExists, DomainError, NotFound, ValidationError


class QrNotFound(NotFound):
    """No QR code of this tenant has that id, or matches that payload."""

    code = "qrph.qr_not_found"


class PaymentNotFound(NotFound):
    code = "qrph.payment_not_found"


class PayloadMismatch(DomainError):
    """The payload names one of our QR codes but differs from what we issued (altered)."""

    code = "qrph.payload_mismatch"


class StaticQrConflict(AlreadyExists):
    """The merchant already has a static QR code, with other details."""

    code = "qrph.static_qr_conflict"


class DuplicateReferenceLabel(AlreadyExists):
    code = "qrph.duplicate_reference_label"


class NetworkReferenceConflict(DomainError):
    """The network reference was already used for a payment with other data."""

    code = "qrph.network_reference_conflict"


class AcquirerNotConfigured(DomainError):
    code = "qrph.acquirer_not_configured"


class CurrencyNotSupported(DomainError):
    code = "qrph.currency_not_supported"


class AmountAboveMaximum(DomainError):
    code = "qrph.amount_above_maximum"


class InvalidExpiry(DomainError):
    """The expiry is in the past or further away than the tenant allows."""

    code = "qrph.invalid_expiry"


class InvalidPaymentAmount(ValidationError):
    """An on-us payment to a static QR without an amount, or with another amount than a
    dynamic QR's."""

    code = "qrph.invalid_payment_amount"


class MerchantWalletNotFound(NotFound):
    """The merchant settlement knows no wallet with that id (raised by its adapter)."""

    code = "qrph.merchant_wallet_not_found"


class MerchantWalletNotPayable(DomainError):
    """The wallet exists but cannot take payments to QR codes of that kind: closed, in
    another currency, or a personal wallet behind a P2M (merchant) code."""

    code = "qrph.merchant_wallet_not_payable"
