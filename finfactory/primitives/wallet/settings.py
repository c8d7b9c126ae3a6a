"""Per-tenant wallet settings: limits per KYC tier and currency, and the calendar they count in."""

from __future__ import annotations

from typing import Annotated, ClassVar, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from finfactory.kernel.config import TenantSettings
from finfactory.primitives.wallet.commands import Limits

ANY_TIER = "*"
TierName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^(\*|[A-Za-z0-9_.:-]+)$")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class WalletSettings(TenantSettings):
    section: ClassVar[str] = "wallet"

    limits: dict[TierName, dict[CurrencyCode, Limits]] = Field(
        default_factory=dict,
        description=(
            "KYC tier -> currency -> limits. A customer may hold (and use) a wallet in a"
            " currency only if their verified tier, or the catch-all tier '*', has an entry"
            " for it; an entry with no limits set allows any amount."
        ),
    )
    timezone: str = Field(
        default="UTC", description="IANA time zone whose days and months the counters use"
    )
    max_wallets_per_customer: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="wallets (not closed) one customer may have in one currency"
    )
    settlement_account_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        description=(
            "ledger accounts cash-in may debit and cash-out may credit; empty allows any"
            " account that is not a wallet's"
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _currencies_match(self) -> Self:
        for tier, by_currency in self.limits.items():
            for code, limits in by_currency.items():
                others = limits.currencies() - {code}
                if others:
                    raise ValueError(
                        f"limits of tier {tier!r} in {code} are given in {sorted(others)[0]}"
                    )
        return self

    def tier_limits(self, tier: str, currency: str) -> Limits | None:
        """The tier's limits in ``currency``, else the catch-all tier's, else None."""
        for name in (tier, ANY_TIER):
            found = self.limits.get(name, {}).get(currency)
            if found is not None:
                return found
        return None
