"""Per-tenant identity settings: the KYC tiers a tenant offers."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from finfactory.kernel.config import TenantSettings
from finfactory.kernel.model import Model
from finfactory.primitives.identity.model import DocumentType, KycCheck


class KycTier(Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    level: Annotated[int, Field(ge=1, le=100)] = Field(
        description="rank: a customer verified at a level may start only a higher one"
    )
    required_checks: Annotated[list[KycCheck], Field(min_length=1)]
    accepted_documents: Annotated[list[DocumentType], Field(min_length=1)] = Field(
        default_factory=lambda: list(DocumentType),
        description="document types accepted when the tier requires the document check",
    )
    validity_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(
        default=365, description="maximum age of a verification; None for no maximum"
    )
    expire_with_document: bool = Field(
        default=True, description="a verification also ends when its identity document expires"
    )
    session_timeout_minutes: Annotated[int, Field(ge=1, le=43_200)] = Field(
        default=1440, description="an open provider session expires after this long"
    )
    review_timeout_minutes: Annotated[int, Field(ge=1, le=525_600)] = Field(
        default=20_160,
        description="an attempt under the provider's manual review expires (kind session,"
        " reason review_timeout) this long after the review started",
    )
    max_retryable_rejections: Annotated[int, Field(ge=0, le=100)] = Field(
        default=3,
        description="retryable rejections of this tier a customer may have; one more raises"
        " a risk flag",
    )


def _default_tiers() -> list[KycTier]:
    return [
        KycTier(
            name="basic",
            level=1,
            required_checks=[KycCheck.DOCUMENT, KycCheck.WATCHLIST],
            validity_days=730,
        ),
        KycTier(
            name="full",
            level=2,
            required_checks=[
                KycCheck.DOCUMENT,
                KycCheck.SELFIE,
                KycCheck.LIVENESS,
                KycCheck.WATCHLIST,
                KycCheck.PROOF_OF_ADDRESS,
            ],
            accepted_documents=[DocumentType.PASSPORT, DocumentType.NATIONAL_ID],
            validity_days=365,
        ),
    ]


class IdentitySettings(TenantSettings):
    section: ClassVar[str] = "identity"

    tiers: Annotated[list[KycTier], Field(min_length=1, max_length=20)] = Field(
        default_factory=_default_tiers
    )

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: list[KycTier]) -> list[KycTier]:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        return tiers

    def tier(self, name: str) -> KycTier | None:
        return next((t for t in self.tiers if t.name == name), None)
