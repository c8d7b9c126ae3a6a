"""Test support for the wallet: a KYC tier fake and a one-call tenant limits set-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finfactory.kernel.authz import AllowAll
from finfactory.kernel.clock import Clock, IdGenerator, SystemClock, UuidGenerator
from finfactory.kernel.config import ConfigChange, TenantConfigService
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.primitives.wallet.commands import Limits
from finfactory.primitives.wallet.settings import ANY_TIER, WalletSettings


class StaticCustomerTiers:
    """:class:`~finfactory.primitives.wallet.CustomerTiers` from a dict you change at will.

    ``tiers[customer_id]`` is the customer's verified tier; a missing customer (or ``None``)
    is unknown, unverified or expired. ``calls`` records ``(actor id, customer id)`` of each
    lookup, so a test can check who asked.
    """

    def __init__(self, tiers: Mapping[str, str | None] | None = None) -> None:
        self.tiers: dict[str, str | None] = dict(tiers or {})
        self.calls: list[tuple[str, str]] = []

    def verified_tier(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> str | None:
        self.calls.append((ctx.actor.id, customer_id))
        return self.tiers.get(customer_id)


def configure_wallets(
    storage: Storage,
    tenant_id: str,
    *,
    limits: Mapping[str, Mapping[str, Limits]] | None = None,
    currency: str = "PHP",
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    **settings: Any,
) -> ConfigChange:
    """Store the tenant's :class:`WalletSettings` in one call (as a test system actor).

    Without ``limits``, every verified tier (``"*"``) may hold ``currency`` wallets with no
    limits. Other keyword arguments are further settings (``timezone=...`` etc.).
    """
    chosen = limits if limits is not None else {ANY_TIER: {currency: Limits()}}
    changes = {
        "limits": {
            tier: {cur: lim.model_dump(mode="json") for cur, lim in by_currency.items()}
            for tier, by_currency in chosen.items()
        },
        **settings,
    }
    config = TenantConfigService(
        storage, AllowAll(), clock or SystemClock(), ids or UuidGenerator()
    )
    ctx = RequestContext(tenant_id=tenant_id, actor=Actor("finfactory.testing", ActorKind.SYSTEM))
    return config.update(ctx, WalletSettings, changes, reason="test set-up")
