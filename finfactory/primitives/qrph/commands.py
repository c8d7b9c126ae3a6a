"""Typed commands and results of the QR Ph API (pydantic; errors name the field)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from finfactory.kernel.model import Model, MoneyAmount, PositiveMoney
from finfactory.primitives.qrph.emv import Initiation, QrKind
from finfactory.primitives.qrph.model import (
    FailureReason,
    PaymentChannel,
    PaymentStatus,
    QrStatus,
)
from finfactory.primitives.qrph.settings import Bic

Id = Annotated[str, Field(min_length=1, max_length=64)]
# EMVCo MPM limits: printable ASCII ("ans"); merchant name 25 characters, city 15, postal
# code 10, reference label 25. The wallet id never goes into a payload (the merchant gets an
# opaque account number), so it only has to fit our columns.
_ANS = r"^[\x20-\x7e]+$"
MerchantName = Annotated[str, Field(min_length=1, max_length=25, pattern=_ANS)]
MerchantCity = Annotated[str, Field(min_length=1, max_length=15, pattern=_ANS)]
MerchantWalletId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
PostalCode = Annotated[str, Field(min_length=1, max_length=10, pattern=r"^[A-Za-z0-9 -]+$")]
Mcc = Annotated[str, Field(pattern=r"^[0-9]{4}$")]
ReferenceLabel = Annotated[
    str, Field(min_length=1, max_length=25, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/#-]*$")
]
_REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
NetworkReference = Annotated[str, Field(min_length=1, max_length=64, pattern=_REFERENCE)]
# On-us payments have references of their own, ON_US_PREFIX + the payer's reference, so that
# nobody who can pay on-us can take a reference the switch will use (and block its payment).
ON_US_PREFIX = "onus-"
OnUsReference = Annotated[
    str, Field(min_length=1, max_length=64 - len(ON_US_PREFIX), pattern=_REFERENCE)
]
Payload = Annotated[str, Field(min_length=1, max_length=512)]
# A code, not free text (no spaces): nothing personal fits in it by accident.
InstitutionCode = Annotated[str, Field(min_length=1, max_length=64, pattern=_REFERENCE)]


def _aware(value: datetime | None) -> datetime | None:
    """Aware datetimes only, kept in UTC so every adapter stores and returns the same."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be timezone-aware")
    return value.astimezone(UTC)


class _MerchantDetails(Model):
    merchant_wallet_id: MerchantWalletId
    merchant_name: MerchantName
    merchant_city: MerchantCity
    kind: QrKind = QrKind.P2M
    mcc: Mcc | None = Field(default=None, description="the tenant's default_mcc when omitted")
    acquirer_id: Bic | None = Field(
        default=None, description="the tenant's acquirer_id when omitted"
    )
    postal_code: PostalCode | None = None


class GenerateStaticQr(_MerchantDetails):
    """The merchant's one static QR code: the payer enters the amount."""


class GenerateDynamicQr(_MerchantDetails):
    """A one-time QR code for ``amount``, valid until its expiry.

    Give ``expires_in_seconds`` or ``expires_at`` (not both); with neither, the tenant's
    default lifetime applies.
    """

    amount: PositiveMoney
    expires_in_seconds: Annotated[int, Field(ge=1, strict=True)] | None = None
    expires_at: datetime | None = None
    reference_label: ReferenceLabel | None = Field(
        default=None, description="unique per merchant; generated when omitted"
    )

    _check_expiry = field_validator("expires_at")(_aware)

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_in_seconds is not None and self.expires_at is not None:
            raise ValueError("give expires_in_seconds or expires_at, not both")
        return self


class SwitchPayment(Model):
    """A payment notified by the acquirer or switch, for a QR named by id or by its payload.

    The switch adapter leaves the payer's personal data (name, account) behind the port.
    """

    network_reference: NetworkReference = Field(
        description=f"the switch's reference of the payment; never starts with {ON_US_PREFIX!r}"
    )
    amount: PositiveMoney
    qr_id: Id | None = None
    payload: Payload | None = None
    payer_institution: InstitutionCode | None = Field(
        default=None,
        description="the payer's bank or e-wallet as a code (e.g. its BIC). The payer's name"
        " is not taken: QR Ph keeps no personal data of payers",
    )

    @field_validator("network_reference")
    @classmethod
    def _not_on_us(cls, value: str) -> str:
        if value.startswith(ON_US_PREFIX):
            raise ValueError(f"references starting with {ON_US_PREFIX!r} are on-us payments'")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.qr_id is None) == (self.payload is None):
            raise ValueError("give exactly one of qr_id and payload")
        return self


class PayQr(Model):
    """An on-us payment: the payer's wallet pays the QR code whose payload it scanned."""

    payload: Payload
    payer_wallet_id: Id
    amount: PositiveMoney | None = Field(
        default=None, description="required for a static QR; for a dynamic QR omit it or repeat"
    )
    reference: OnUsReference | None = Field(
        default=None,
        description=f"the payer's reference; the payment's network reference is {ON_US_PREFIX!r}"
        " followed by it, or by a hash of the idempotency key, or by a new id",
    )


# -- results ---------------------------------------------------------------------------------


class QrView(Model):
    id: str
    merchant_wallet_id: str
    kind: QrKind
    initiation: Initiation
    status: QrStatus
    payload: str
    amount: MoneyAmount | None
    currency: str
    acquirer_id: str
    merchant_account: str = Field(description="the opaque account number the payload carries")
    merchant_name: str
    merchant_city: str
    mcc: str
    postal_code: str | None
    reference_label: str | None
    expires_at: datetime | None
    created_at: datetime


class PaymentView(Model):
    id: str
    qr_id: str
    merchant_wallet_id: str
    network_reference: str
    channel: PaymentChannel
    amount: MoneyAmount
    status: PaymentStatus
    failure_reason: FailureReason | None
    failure_detail: str | None
    journal_id: str | None
    payer_wallet_id: str | None
    payer_institution: str | None
    received_at: datetime
    resolved_at: datetime | None


class PaymentPage(Model):
    payments: list[PaymentView]
    next_after: str | None = Field(description="pass back as ``after`` for the next page")
