"""Wallet errors; codes are stable. All are DomainErrors: a refusal under an idempotency key
is stored and replayed like a result."""

from __future__ import annotations

from typing import Any

from finfactory.kernel.errors import AlreadyExists, DomainError, NotFound


class WalletNotFound(NotFound):
    code = "wallet.not_found"


class InvalidTransition(DomainError):
    """The wallet's status does not allow this lifecycle step (closed is final)."""

    code = "wallet.invalid_transition"


class WalletNotActive(DomainError):
    """The wallet may not take part in this movement in its current status."""

    code = "wallet.not_active"


class KycRequired(DomainError):
    """The customer has no verified KYC tier (unknown, not verified, or expired)."""

    code = "wallet.kyc_required"


class TierNotAllowed(DomainError):
    """The customer's tier has no wallet limits configured for the currency, so it may not
    hold (or move money through) a wallet in it."""

    code = "wallet.tier_not_allowed"


class LimitExceeded(DomainError):
    """A movement would break a limit.

    ``details``: ``side`` (``sender`` or ``receiver``: whose limit), ``attempted`` (the
    movement's amount) and, when the limit is the caller's customer's own to know, ``limit``
    (its kind), ``limit_amount`` and ``used`` (amounts as money JSON). When the receiver of
    a transfer or merchant payment is another customer, their limit, usage and balance are
    not the payer's business: the error then says only ``side="receiver"`` (and ``field``),
    and ``limit``/``limit_amount``/``used`` are None here; the audit record of the refusal
    keeps the full story for operators.
    """

    code = "wallet.limit_exceeded"

    @property
    def side(self) -> str:
        return str(self.details["side"])

    @property
    def limit(self) -> str | None:
        found = self.details.get("limit")
        return None if found is None else str(found)

    @property
    def limit_amount(self) -> dict[str, Any] | None:
        found = self.details.get("limit_amount")
        return None if found is None else dict(found)

    @property
    def used(self) -> dict[str, Any] | None:
        found = self.details.get("used")
        return None if found is None else dict(found)

    @property
    def attempted(self) -> dict[str, Any]:
        return dict(self.details["attempted"])


class InsufficientFunds(DomainError):
    """The wallet's available balance does not cover the debit."""

    code = "wallet.insufficient_funds"


class WalletNotEmpty(DomainError):
    """Closing needs a zero balance and no pending holds."""

    code = "wallet.not_empty"


class WalletCurrencyMismatch(DomainError):
    code = "wallet.currency_mismatch"


class NotAMerchantWallet(DomainError):
    code = "wallet.not_a_merchant_wallet"


class TooManyWallets(DomainError):
    code = "wallet.too_many_wallets"


class InvalidSettlementAccount(DomainError):
    """Cash-in and cash-out move money against a settlement account of the product, never
    against another wallet's ledger account, and only the tenant's listed ones if it lists
    any."""

    code = "wallet.invalid_settlement_account"


class DuplicateMovementReference(AlreadyExists):
    code = "wallet.duplicate_reference"
