"""Typed commands and results of the ledger API (pydantic; errors name the field)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from finfactory.kernel.model import MetadataValue, Model, MoneyAmount, PositiveMoney
from finfactory.primitives.ledger.model import (
    AccountStatus,
    AccountType,
    BalanceBound,
    Direction,
    HoldStatus,
)

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
Reference = Annotated[str, Field(min_length=1, max_length=128)]
Id = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=500)]


def _sorted(value: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(value.items()))


# Sorted so that the same metadata in another key order is the same idempotent request.
Metadata = Annotated[dict[str, MetadataValue], Field(max_length=50), AfterValidator(_sorted)]
MAX_LEGS = 100
MAX_BATCH = 1000


def _aware(value: datetime | None) -> datetime | None:
    """Aware datetimes only, kept in UTC so every adapter stores and returns the same."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # the last hours of year 9999 in a zone behind UTC
        raise ValueError("is out of range") from None


class OpenAccount(Model):
    code: Code
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    type: AccountType
    balance_bound: BalanceBound = BalanceBound.NONE
    metadata: Metadata = Field(default_factory=dict)


class ChangeAccountStatus(Model):
    account_id: Id
    status: AccountStatus
    reason: Text = ""


class Leg(Model):
    account_id: Id
    direction: Direction
    amount: PositiveMoney


class PostJournal(Model):
    reference: Reference
    legs: Annotated[list[Leg], Field(min_length=2, max_length=MAX_LEGS)]
    effective_date: date | None = None
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)


class PostJournals(Model):
    journals: Annotated[list[PostJournal], Field(min_length=1, max_length=MAX_BATCH)]


class CreateHold(Model):
    reference: Reference
    debit_account_id: Id
    credit_account_id: Id
    amount: PositiveMoney
    expires_at: datetime | None = None
    metadata: Metadata = Field(default_factory=dict)

    _check_expiry = field_validator("expires_at")(_aware)

    @field_validator("credit_account_id")
    @classmethod
    def _another_account(cls, value: str, info: ValidationInfo) -> str:
        # A hold on one account would reserve a customer's funds with no one to receive
        # them, and its capture would move nothing.
        if value == info.data.get("debit_account_id"):
            raise PydanticCustomError("same_account", "a hold needs two different accounts")
        return value


class CaptureHold(Model):
    hold_id: Id
    reference: Reference
    amount: PositiveMoney | None = None
    effective_date: date | None = None
    description: Text = ""


class VoidHold(Model):
    hold_id: Id
    reason: Text = ""


class ExpireHolds(Model):
    limit: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 1000


class ReverseJournal(Model):
    journal_id: Id
    reference: Reference
    reason: Text = ""
    effective_date: date | None = None


# -- results ---------------------------------------------------------------------------------


class AccountView(Model):
    id: str
    code: str
    currency: str
    type: AccountType
    balance_bound: BalanceBound
    status: AccountStatus
    metadata: dict[str, Any]
    posted: MoneyAmount
    held: MoneyAmount
    available: MoneyAmount


class LegView(Model):
    account_id: str
    direction: Direction
    amount: MoneyAmount


class JournalView(Model):
    id: str
    reference: str
    effective_date: date
    posted_at: datetime
    description: str
    reverses_journal_id: str | None
    legs: list[LegView]
    metadata: dict[str, Any]


class BatchView(Model):
    journals: list[JournalView]


class HoldView(Model):
    id: str
    reference: str
    debit_account_id: str
    credit_account_id: str
    amount: MoneyAmount
    captured: MoneyAmount
    status: HoldStatus
    expires_at: datetime | None
    capture_journal_id: str | None


class ExpiredHolds(Model):
    hold_ids: list[str]


class BalanceView(Model):
    account_id: str
    posted: MoneyAmount
    held: MoneyAmount
    available: MoneyAmount


class StatementLine(Model):
    sequence: int
    journal_id: str
    direction: Direction
    amount: MoneyAmount
    balance_after: MoneyAmount
    posted_at: datetime


class Statement(Model):
    account_id: str
    lines: list[StatementLine]
    next_after: int | None
