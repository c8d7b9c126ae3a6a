"""Per-tenant QR Ph settings (section ``qrph``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import Field, model_validator

from finfactory.kernel.config import TenantSettings
from finfactory.kernel.model import PositiveMoney
from finfactory.kernel.money import Money

# A BIC: 4 bank, 2 country, 2 location letters/digits, optional 3-character branch.
Bic = Annotated[str, Field(pattern=r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")]


class QrPhSettings(TenantSettings):
    section: ClassVar[str] = "qrph"

    acquirer_id: Bic | None = Field(
        default=None,
        description="BIC of the acquirer encoded in the tenant's QR codes (a command may name"
        " another); QR generation is refused while neither is set",
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = Field(
        default="PHP", description="the one currency QR codes and payments use"
    )
    default_mcc: Annotated[str, Field(pattern=r"^[0-9]{4}$")] = Field(
        default="0000", description="merchant category code used when a command gives none"
    )
    default_dynamic_ttl_seconds: Annotated[int, Field(ge=1, strict=True)] = Field(
        default=900, description="lifetime of a dynamic QR created without an expiry"
    )
    max_dynamic_ttl_seconds: Annotated[int, Field(ge=1, strict=True)] = Field(
        default=86_400, description="longest lifetime a dynamic QR may be given"
    )
    max_amount: PositiveMoney = Field(
        default=Money("50000.00", "PHP"),
        description="largest amount of a dynamic QR, and of a payment to a static QR",
    )
    settlement_account_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="ledger account holding what the switch owes the tenant; switch payments"
        " are credited to merchants from it (else the settlement adapter's own account)",
    )
    settlement_note: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        default="QR Ph payment",
        description="description given to the wallet movement that settles a payment",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_amount.currency.code != self.currency:
            raise ValueError("max_amount must be in the settings' currency")
        if self.default_dynamic_ttl_seconds > self.max_dynamic_ttl_seconds:
            raise ValueError("default_dynamic_ttl_seconds exceeds max_dynamic_ttl_seconds")
        return self
