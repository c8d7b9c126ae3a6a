"""Per-tenant ledger settings."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from finfactory.kernel.config import TenantSettings

MAX_HOLD_TTL_SECONDS = 10 * 366 * 24 * 3600


class LedgerSettings(TenantSettings):
    section: ClassVar[str] = "ledger"

    allowed_currencies: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(
        default_factory=list, description="ISO codes accounts may use; empty allows any"
    )
    max_batch_size: Annotated[int, Field(ge=1, le=1000)] = 1000
    # Up to ten years: a hold is a reservation, not a way to lock funds for ever.
    default_hold_ttl_seconds: Annotated[int, Field(ge=1, le=MAX_HOLD_TTL_SECONDS)] | None = Field(
        default=None, description="expiry given to holds created without one (at most 10 years)"
    )
