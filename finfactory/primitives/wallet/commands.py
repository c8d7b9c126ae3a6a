"""Typed commands and results of the wallet API (pydantic; errors name the field)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, model_validator

from finfactory.kernel.model import MetadataValue, Model, MoneyAmount, PositiveMoney
from finfactory.kernel.money import Money
from finfactory.primitives.wallet.model import (
    LIMIT_KINDS,
    MovementKind,
    WalletKind,
    WalletStatus,
)

Id = Annotated[str, Field(min_length=1, max_length=64)]
# Customer ids are the Identity primitive's (opaque, never personal data). At most 60
# characters: the limits' event stream is keyed by "<customer>:<currency>".
CustomerId = Annotated[
    str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
# The ledger journal is referenced "wallet:<reference>" (the ledger allows 128 characters).
Reference = Annotated[str, Field(min_length=1, max_length=120)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]
Text = Annotated[str, Field(max_length=500)]


def _sorted(value: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(value.items()))


Metadata = Annotated[dict[str, MetadataValue], Field(max_length=50), AfterValidator(_sorted)]


def _not_negative(value: Money) -> Money:
    if value.amount < 0:
        raise ValueError("a limit must not be negative")
    return value


LimitAmount = Annotated[MoneyAmount, AfterValidator(_not_negative)]


class Limits(Model):
    """Limits of one currency; ``None`` means no limit of that kind. Zero blocks."""

    balance_cap: LimitAmount | None = None
    daily_in: LimitAmount | None = None
    monthly_in: LimitAmount | None = None
    daily_out: LimitAmount | None = None
    monthly_out: LimitAmount | None = None
    per_transaction: LimitAmount | None = None

    def currencies(self) -> set[str]:
        found = (getattr(self, k.value) for k in LIMIT_KINDS)
        return {m.currency.code for m in found if m is not None}


# -- commands --------------------------------------------------------------------------------


class OpenWallet(Model):
    customer_id: CustomerId
    currency: Currency
    kind: WalletKind = WalletKind.PERSONAL
    metadata: Metadata = Field(default_factory=dict)


class ActivateWallet(Model):
    wallet_id: Id
    reason: Text | None = None


class SuspendWallet(Model):
    wallet_id: Id
    reason: Reason


class CloseWallet(Model):
    wallet_id: Id
    reason: Reason


class UpdateLimits(Model):
    """Set the customer's own limits in ``currency``: each limit given replaces the tier's;
    the ones left ``None`` follow the tier. This replaces any earlier override whole, so
    ``Limits()`` returns the customer to the tier's limits."""

    customer_id: CustomerId
    currency: Currency
    limits: Limits
    reason: Reason

    @model_validator(mode="after")
    def _same_currency(self) -> Self:
        others = self.limits.currencies() - {self.currency}
        if others:
            raise ValueError(f"limits must be in {self.currency}, not {sorted(others)[0]}")
        return self


class CashIn(Model):
    """Money into a wallet from a ledger settlement account the product owns (for example
    the bank account the customer paid into)."""

    wallet_id: Id
    amount: PositiveMoney
    source_account_id: Id
    reference: Reference
    description: Text | None = None


class CashOut(Model):
    wallet_id: Id
    amount: PositiveMoney
    destination_account_id: Id
    reference: Reference
    description: Text | None = None


class Transfer(Model):
    from_wallet_id: Id
    to_wallet_id: Id
    amount: PositiveMoney
    reference: Reference
    description: Text | None = None

    @model_validator(mode="after")
    def _two_wallets(self) -> Self:
        if self.from_wallet_id == self.to_wallet_id:
            raise ValueError("a transfer needs two different wallets")
        return self


class PayMerchant(Model):
    from_wallet_id: Id
    merchant_wallet_id: Id
    amount: PositiveMoney
    reference: Reference
    description: Text | None = None

    @model_validator(mode="after")
    def _two_wallets(self) -> Self:
        if self.from_wallet_id == self.merchant_wallet_id:
            raise ValueError("a merchant payment needs two different wallets")
        return self


# -- results ---------------------------------------------------------------------------------


class WalletView(Model):
    id: str
    customer_id: str
    currency: str
    kind: WalletKind
    status: WalletStatus
    ledger_account_id: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    posted: MoneyAmount
    available: MoneyAmount


class MovementView(Model):
    id: str
    journal_id: str
    reference: str
    kind: MovementKind
    amount: MoneyAmount
    from_wallet_id: str | None
    to_wallet_id: str | None
    counterparty_account_id: str | None
    description: str
    posted_at: datetime


class UsageView(Model):
    """What the customer moved in the current day and month (tenant time zone)."""

    day: str
    daily_in: MoneyAmount
    daily_out: MoneyAmount
    month: str
    monthly_in: MoneyAmount
    monthly_out: MoneyAmount


class LimitsView(Model):
    customer_id: str
    currency: str
    tier: str | None
    tier_limits: Limits | None
    overrides: Limits
    effective: Limits
    usage: UsageView
    balance: MoneyAmount
