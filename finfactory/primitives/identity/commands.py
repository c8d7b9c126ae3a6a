"""Typed commands and results of the identity API.

Input errors are :class:`~.errors.InvalidIdentityInput` (code ``identity.invalid_input``)
naming the field; personal data is normalised on the way in (e-mail lower-cased, phone and
document numbers stripped of separators) so that lookups by keyed hash find it again.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from finfactory.kernel.errors import ValidationError
from finfactory.kernel.model import Model
from finfactory.primitives.identity.errors import InvalidIdentityInput
from finfactory.primitives.identity.model import (
    CallbackEffect,
    DocumentType,
    ExpiryKind,
    KycReason,
    KycStatus,
    RejectionKind,
    RiskReason,
    RiskSeverity,
    RiskSource,
)
from finfactory.primitives.identity.ports import ProviderOutcome

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[1-9][0-9]{5,14}$")
_DOCUMENT_NUMBER = re.compile(r"^[A-Z0-9]{1,40}$")
_SEPARATORS = re.compile(r"[\s\-().]")


def _clean_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def normalise_email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("is not an e-mail address")
    return value


def normalise_phone(value: str) -> str:
    value = _SEPARATORS.sub("", value)
    if not _PHONE.match(value):
        raise ValueError("is not a phone number (digits, optional leading +, 6-15 digits)")
    return value


def normalise_document_number(value: str) -> str:
    value = _SEPARATORS.sub("", value).upper()
    if not _DOCUMENT_NUMBER.match(value):
        raise ValueError("must be 1-40 letters and digits (spaces and dashes are ignored)")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean_text)]
Email = Annotated[str, Field(max_length=300), AfterValidator(normalise_email)]
Phone = Annotated[str, Field(max_length=40), AfterValidator(normalise_phone)]
DocumentNumber = Annotated[str, Field(max_length=80), AfterValidator(normalise_document_number)]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
Id = Annotated[str, Field(min_length=1, max_length=64)]
TierName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
DocumentRef = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_clean_text)]


class IdentityModel(Model):
    """:class:`Model` whose input errors carry the identity code ``identity.invalid_input``."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _identity_error(err) from None

    @classmethod
    def parse(cls, data: Any) -> Self:
        try:
            return super().parse(data)
        except ValidationError as err:
            raise _identity_error(err) from None


def _identity_error(err: ValidationError) -> ValidationError:
    if isinstance(err, InvalidIdentityInput):
        return err
    return InvalidIdentityInput(err.message, field=err.field)


class IdDocument(IdentityModel):
    type: DocumentType
    number: DocumentNumber = Field(repr=False)
    issuing_country: Country
    expires_on: date | None = Field(default=None, repr=False)


class CreateCustomer(IdentityModel):
    """Personal data (left out of ``repr``, so it stays out of logs and tracebacks)."""

    given_name: Name = Field(repr=False)
    family_name: Name = Field(repr=False)
    birth_date: date = Field(repr=False)
    email: Email | None = Field(default=None, repr=False)
    phone: Phone | None = Field(default=None, repr=False)
    id_document: IdDocument | None = Field(default=None, repr=False)
    document_refs: Annotated[list[DocumentRef], Field(max_length=20)] = Field(
        default_factory=list,
        repr=False,
        description="references to document images in the product's own store",
    )


class UpdateContact(IdentityModel):
    """New contact details for a customer: give ``email`` and/or ``phone`` to change them,
    ``remove_email`` / ``remove_phone`` to delete them; what is not mentioned stays."""

    customer_id: Id
    email: Email | None = Field(default=None, repr=False)
    phone: Phone | None = Field(default=None, repr=False)
    remove_email: bool = False
    remove_phone: bool = False

    @model_validator(mode="after")
    def _one_change_per_field(self) -> Self:
        if (
            self.email is None
            and self.phone is None
            and not (self.remove_email or self.remove_phone)
        ):
            raise ValueError("nothing to change: give email, phone, remove_email or remove_phone")
        if (self.email is not None and self.remove_email) or (
            self.phone is not None and self.remove_phone
        ):
            raise ValueError("a field cannot be both changed and removed")
        return self


class StartKyc(IdentityModel):
    customer_id: Id
    tier: TierName
    id_document: IdDocument | None = Field(
        default=None,
        repr=False,
        description="a new identity document for this attempt; replaces the customer's",
    )


class ProviderCallback(IdentityModel):
    """A provider's verdict, already translated by the provider adapter."""

    reference: Annotated[str, Field(min_length=1, max_length=128)]
    outcome: ProviderOutcome
    reason_codes: Annotated[list[KycReason], Field(max_length=20)] = Field(default_factory=list)
    watchlist_hit: bool = False
    document_expires_on: date | None = Field(
        default=None, description="expiry of the document the provider checked, if it read one"
    )
    callback_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="the provider's delivery id, when it gives one (dedup)"
    )


class ExpireDue(IdentityModel):
    limit: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 1000


class FlagRisk(IdentityModel):
    customer_id: Id
    reason: RiskReason
    severity: RiskSeverity = RiskSeverity.HIGH


class RotateKeys(IdentityModel):
    limit: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 500


# -- results ---------------------------------------------------------------------------------


class IdDocumentView(Model):
    type: DocumentType
    issuing_country: str
    number: str = Field(repr=False)
    expires_on: date | None = Field(repr=False)


class CustomerView(Model):
    """A customer. With ``pii == "masked"`` the personal fields are masked (``J***``,
    ``j***@example.com``, last four digits of phone and document number; birth date, document
    expiry and document references withheld)."""

    id: str
    created_at: datetime
    pii: Literal["clear", "masked"]
    given_name: str = Field(repr=False)
    family_name: str = Field(repr=False)
    birth_date: date | None = Field(repr=False)
    email: str | None = Field(repr=False)
    phone: str | None = Field(repr=False)
    id_document: IdDocumentView | None = Field(repr=False)
    document_refs: list[str] = Field(repr=False)
    kyc_status: KycStatus | None
    latest_kyc_id: str | None
    verified_tier: str | None
    verified_until: datetime | None
    kyc_blocked: bool
    risk_flags: int


class KycView(Model):
    id: str
    customer_id: str
    tier: str
    attempt: int
    status: KycStatus
    in_review: bool
    rejection: RejectionKind | None
    expiry: ExpiryKind | None
    reason_codes: list[KycReason]
    started_at: datetime
    session_expires_at: datetime
    decided_at: datetime | None
    valid_until: datetime | None
    expired_at: datetime | None
    superseded_by: str | None


class CallbackResult(Model):
    effect: CallbackEffect
    kyc: KycView
    risk_flag_ids: list[str]


class RiskFlagView(Model):
    id: str
    customer_id: str
    kyc_id: str | None
    reason: RiskReason
    severity: RiskSeverity
    source: RiskSource
    flagged_at: datetime


class ExpiredKyc(Model):
    kyc_ids: list[str]
    sessions: int
    validity: int


class KeyRotation(Model):
    key_version: int
    rotated: int
    remaining: int
