"""The wallet's queries (permission ``wallet.read``), kept apart from its commands."""

from __future__ import annotations

from finfactory.kernel.clock import Clock, utc_now
from finfactory.kernel.config import load_settings
from finfactory.kernel.context import Actor, RequestContext
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.money import currency as check_currency
from finfactory.kernel.paging import page_limit
from finfactory.kernel.ports import UnitOfWork
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives.ledger import LedgerService
from finfactory.primitives.wallet import commands as cmd
from finfactory.primitives.wallet.errors import WalletNotFound
from finfactory.primitives.wallet.limits import period_keys
from finfactory.primitives.wallet.model import Usage, Wallet
from finfactory.primitives.wallet.movements import MovementEngine
from finfactory.primitives.wallet.ports import StoreFactory
from finfactory.primitives.wallet.settings import WalletSettings
from finfactory.primitives.wallet.views import movement_view, wallet_view


class WalletQueries:
    """Read side of :class:`~finfactory.primitives.wallet.WalletService`."""

    clock: Clock
    ledger: LedgerService
    store_factory: StoreFactory
    service_actor: Actor
    _reads: ReadGuard
    _engine: MovementEngine

    def _service(self, ctx: RequestContext) -> RequestContext:
        return ctx.delegate(self.service_actor)

    def _view(self, ctx: RequestContext, uow: UnitOfWork, wallet: Wallet) -> cmd.WalletView:
        account = self.ledger.get_account(self._service(ctx), wallet.ledger_account_id, uow=uow)
        return wallet_view(wallet, account.posted, account.available)

    def get_wallet(
        self, ctx: RequestContext, wallet_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.WalletView:
        """The wallet with its posted and available balance."""
        with self._reads.view(ctx, uow) as tx:
            wallet = self.store_factory(tx).get_wallet(ctx.tenant_id, wallet_id)
            if wallet is None:
                raise WalletNotFound(f"wallet {wallet_id} not found", field="wallet_id")
            return self._view(ctx, tx, wallet)

    def list_wallets(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> list[cmd.WalletView]:
        """The customer's wallets, oldest first (closed ones included)."""
        with self._reads.view(ctx, uow) as tx:
            wallets = self.store_factory(tx).customer_wallets(ctx.tenant_id, customer_id)
            return [self._view(ctx, tx, w) for w in wallets]

    def history(
        self,
        ctx: RequestContext,
        wallet_id: str,
        *,
        limit: int = 50,
        after: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> list[cmd.MovementView]:
        """The wallet's movements in and out, newest first (at most ``limit``, ≤ 1000).

        For the next page pass ``after``: the id of the last movement of the page before;
        the page then holds the movements recorded before that one. Pages stay exact while
        new movements arrive (they go on top, not into the pages already read).
        """
        limit = page_limit(limit, 1000)
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            if store.get_wallet(ctx.tenant_id, wallet_id) is None:
                raise WalletNotFound(f"wallet {wallet_id} not found", field="wallet_id")
            before = None
            if after is not None:
                before = store.movement_position(ctx.tenant_id, wallet_id, after)
                if before is None:
                    raise ValidationError(
                        f"movement {after} is not in the history of wallet {wallet_id}",
                        field="after",
                    )
            found = store.movements(ctx.tenant_id, wallet_id, limit, before)
        return [movement_view(m) for m in found]

    def get_limits(
        self,
        ctx: RequestContext,
        customer_id: str,
        currency: str,
        *,
        uow: UnitOfWork | None = None,
    ) -> cmd.LimitsView:
        """The customer's tier, tier limits, overrides, effective limits and usage."""
        check_currency(currency)
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            settings = load_settings(tx, ctx.tenant_id, WalletSettings)
            day, month = period_keys(utc_now(self.clock), settings.timezone)
            usage = store.get_usage(ctx.tenant_id, customer_id, currency) or Usage(
                ctx.tenant_id, customer_id, currency, day, 0, 0, month, 0, 0
            )
            override = store.get_override(ctx.tenant_id, customer_id, currency)
            return self._engine.limits_view(
                self._service(ctx), tx, settings, usage.rolled(day, month), override
            )
