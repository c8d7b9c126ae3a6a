"""The wallet's ports: the KYC tier it asks Identity for, and its own storage."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from finfactory.kernel.context import RequestContext
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.wallet.model import LimitOverride, Movement, Usage, Wallet


class CustomerTiers(Protocol):
    """Where the wallet learns a customer's KYC standing (the Identity primitive's
    ``IdentityService`` implements it)."""

    def verified_tier(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> str | None:
        """The customer's verified KYC tier; None if the customer is unknown, not verified,
        or their verification has expired."""
        ...


class WalletStore(Protocol):
    """The wallet's tables. One instance serves one command inside one transaction."""

    def add_wallet(self, wallet: Wallet) -> None: ...

    def save_wallet(self, wallet: Wallet) -> None:
        """Persist status, ``updated_at`` and version of a wallet loaded with a lock."""
        ...

    def get_wallet(self, tenant_id: str, wallet_id: str) -> Wallet | None: ...

    def lock_wallets(self, tenant_id: str, wallet_ids: Collection[str]) -> dict[str, Wallet]:
        """Load and lock wallets, in ascending id order."""
        ...

    def customer_wallets(
        self, tenant_id: str, customer_id: str, currency: str | None = None
    ) -> list[Wallet]:
        """The customer's wallets (of ``currency`` if given), oldest first."""
        ...

    def is_wallet_account(self, tenant_id: str, ledger_account_id: str) -> bool: ...

    def lock_usage(
        self, tenant_id: str, keys: Collection[tuple[str, str]], day: str, month: str
    ) -> dict[tuple[str, str], Usage]:
        """Lock the usage rows of (customer id, currency) ``keys`` in ascending order,
        creating missing ones (as of ``day``/``month``)."""
        ...

    def get_usage(self, tenant_id: str, customer_id: str, currency: str) -> Usage | None: ...

    def save_usage(self, usage: Usage) -> None: ...

    def get_override(
        self, tenant_id: str, customer_id: str, currency: str
    ) -> LimitOverride | None: ...

    def save_override(self, override: LimitOverride) -> None:
        """Insert the override (version 1) or replace the stored one."""
        ...

    def reference_taken(self, tenant_id: str, reference: str) -> bool: ...

    def add_movement(self, movement: Movement) -> None: ...

    def movement_position(self, tenant_id: str, wallet_id: str, movement_id: str) -> int | None:
        """Where the wallet's movement ``movement_id`` stands in the order movements were
        recorded; None if it is not one of the wallet's movements."""
        ...

    def movements(
        self, tenant_id: str, wallet_id: str, limit: int, before: int | None = None
    ) -> list[Movement]:
        """The wallet's movements in or out, newest first; only those recorded before
        position ``before`` if given."""
        ...


StoreFactory = Callable[[UnitOfWork], WalletStore]
