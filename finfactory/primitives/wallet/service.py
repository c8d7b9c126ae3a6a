"""The wallet's public API. Every command: validated, authorized, idempotent, audited, and
written with its events, and the ledger postings it makes, in one transaction.

The wallet reaches its money only through the ledger's public API, as its own service actor
(``service_actor``, role ``wallet.service``): a customer-facing caller needs wallet
permissions only, and the audit trail shows both the caller's command and the wallet's
ledger calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs
from pydantic import BaseModel

from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.config import load_settings
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.money import currency as check_currency
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives.ledger import (
    AccountNotEmpty,
    AccountStatus,
    AccountType,
    BalanceBound,
    ChangeAccountStatus,
    LedgerService,
    OpenAccount,
)
from finfactory.primitives.wallet import commands as cmd
from finfactory.primitives.wallet import events as ev
from finfactory.primitives.wallet.errors import (
    TooManyWallets,
    WalletNotEmpty,
    WalletNotFound,
)
from finfactory.primitives.wallet.limits import limit_set, limits_json, period_keys
from finfactory.primitives.wallet.model import (
    LimitOverride,
    LimitSet,
    Wallet,
    WalletStatus,
)
from finfactory.primitives.wallet.movements import MovementEngine, plan_for
from finfactory.primitives.wallet.ports import CustomerTiers, StoreFactory, WalletStore
from finfactory.primitives.wallet.queries import WalletQueries
from finfactory.primitives.wallet.settings import WalletSettings
from finfactory.primitives.wallet.stores import default_store_factory
from finfactory.primitives.wallet.views import (
    wallet_view,
)

R = TypeVar("R", bound=BaseModel)
SERVICE_ACTOR = Actor("finfactory.wallet", ActorKind.SERVICE, frozenset({"wallet.service"}))


def _spec(action: str, permission: str, resource: str, result: type[R]) -> CommandSpec[R]:
    # Streaming: the handler runs in a savepoint, so a refusal after the first write (a
    # limit, the ledger's no-overdraft bound) leaves nothing but its audit record.
    return CommandSpec(f"wallet.{action}", f"wallet.{permission}", resource, result, streaming=True)


OPEN = _spec("open_wallet", "open", "wallet", cmd.WalletView)
ACTIVATE = _spec("activate_wallet", "manage", "wallet", cmd.WalletView)
SUSPEND = _spec("suspend_wallet", "manage", "wallet", cmd.WalletView)
CLOSE = _spec("close_wallet", "manage", "wallet", cmd.WalletView)
LIMITS = _spec("update_limits", "limits.update", "wallet_limits", cmd.LimitsView)
CASH_IN = _spec("cash_in", "cash_in", "wallet_movement", cmd.MovementView)
CASH_OUT = _spec("cash_out", "cash_out", "wallet_movement", cmd.MovementView)
TRANSFER = _spec("transfer", "transfer", "wallet_movement", cmd.MovementView)
PAY_MERCHANT = _spec("pay_merchant", "pay_merchant", "wallet_movement", cmd.MovementView)


@attrs.define
class WalletService(WalletQueries):
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    ledger: LedgerService
    customers: CustomerTiers
    store_factory: StoreFactory = default_store_factory
    service_actor: Actor = SERVICE_ACTOR
    _runner: CommandRunner = attrs.field(init=False)
    _reads: ReadGuard = attrs.field(init=False)
    _engine: MovementEngine = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._runner = CommandRunner(self.storage, self.policy, self.clock, self.ids, "wallet")
        self._reads = ReadGuard(self.storage, self.policy, self.clock, self.ids, "wallet.read")
        self._engine = MovementEngine(
            self.ledger, self.customers, self.store_factory, self.service_actor
        )

    def _lock(self, store: WalletStore, ctx: RequestContext, wallet_id: str) -> Wallet:
        found = store.lock_wallets(ctx.tenant_id, [wallet_id]).get(wallet_id)
        if found is None:
            raise WalletNotFound(f"wallet {wallet_id} not found", field="wallet_id")
        return found

    # -- lifecycle ------------------------------------------------------------------------
    def open_wallet(
        self,
        ctx: RequestContext,
        command: cmd.OpenWallet,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.WalletView:
        """Open a wallet (status ``created``) and its ledger account."""

        def handle(scope: CommandScope) -> cmd.WalletView:
            store = self.store_factory(scope.uow)
            settings = load_settings(scope.uow, ctx.tenant_id, WalletSettings)
            day, month = period_keys(scope.now, settings.timezone)
            # The customer's usage row serialises their openings, so the count holds.
            store.lock_usage(ctx.tenant_id, [(command.customer_id, command.currency)], day, month)
            mine = store.customer_wallets(ctx.tenant_id, command.customer_id, command.currency)
            held = [w for w in mine if w.status is not WalletStatus.CLOSED]
            if len(held) >= settings.max_wallets_per_customer:
                raise TooManyWallets(
                    f"the customer already has {len(held)} {command.currency} wallets",
                    limit=settings.max_wallets_per_customer,
                )
            wallet_id = scope.ids.new_id()
            scope.resource_id = wallet_id
            account = self.ledger.open_account(
                self._service(ctx),
                OpenAccount(
                    code=f"wallet:{wallet_id}",
                    currency=command.currency,
                    type=AccountType.LIABILITY,
                    balance_bound=BalanceBound.DEBITS_NOT_OVER_CREDITS,
                    metadata={"wallet_id": wallet_id, "wallet_kind": command.kind.value},
                ),
                uow=scope.uow,
            )
            wallet = Wallet(
                id=wallet_id,
                tenant_id=ctx.tenant_id,
                customer_id=command.customer_id,
                currency=command.currency,
                kind=command.kind,
                status=WalletStatus.CREATED,
                ledger_account_id=account.id,
                metadata=dict(command.metadata),
                created_at=scope.now,
                updated_at=scope.now,
            )
            store.add_wallet(wallet)
            scope.summary = {
                "after": {
                    "customer_id": wallet.customer_id,
                    "currency": wallet.currency,
                    "kind": wallet.kind.value,
                    "status": wallet.status.value,
                    "ledger_account_id": account.id,
                }
            }
            scope.emit(
                ev.WalletCreated,
                dict(
                    wallet_id=wallet.id,
                    customer_id=wallet.customer_id,
                    currency=wallet.currency,
                    kind=wallet.kind.value,
                    status=wallet.status.value,
                    ledger_account_id=account.id,
                ),
                wallet.id,
                wallet.version,
            )
            return wallet_view(wallet, account.posted, account.available)

        check_currency(command.currency)
        return self._runner.run(
            ctx, OPEN, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def activate_wallet(
        self,
        ctx: RequestContext,
        command: cmd.ActivateWallet,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.WalletView:
        """created -> active, or suspended -> active; the customer's KYC must allow it."""

        def handle(scope: CommandScope) -> cmd.WalletView:
            store = self.store_factory(scope.uow)
            wallet = self._lock(store, ctx, command.wallet_id)
            activated = wallet.moved_to(WalletStatus.ACTIVE, scope.now)
            settings = load_settings(scope.uow, ctx.tenant_id, WalletSettings)
            tier, _ = self._engine.tier_limits(self._service(ctx), scope.uow, settings, wallet)
            store.save_wallet(activated)
            self._changed(scope, wallet, activated, command.reason, tier=tier)
            scope.emit(
                ev.WalletActivated,
                dict(
                    wallet_id=wallet.id,
                    customer_id=wallet.customer_id,
                    previous_status=wallet.status.value,
                    kyc_tier=tier,
                    reason=command.reason,
                ),
                wallet.id,
                activated.version,
            )
            return self._view(ctx, scope.uow, activated)

        return self._status_command(ctx, ACTIVATE, command, handle, idempotency_key, uow)

    def suspend_wallet(
        self,
        ctx: RequestContext,
        command: cmd.SuspendWallet,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.WalletView:
        """active -> suspended: the wallet refuses debits and still receives money."""

        def handle(scope: CommandScope) -> cmd.WalletView:
            store = self.store_factory(scope.uow)
            wallet = self._lock(store, ctx, command.wallet_id)
            suspended = wallet.moved_to(WalletStatus.SUSPENDED, scope.now)
            store.save_wallet(suspended)
            self._changed(scope, wallet, suspended, command.reason)
            scope.emit(
                ev.WalletSuspended,
                dict(wallet_id=wallet.id, customer_id=wallet.customer_id, reason=command.reason),
                wallet.id,
                suspended.version,
            )
            return self._view(ctx, scope.uow, suspended)

        return self._status_command(ctx, SUSPEND, command, handle, idempotency_key, uow)

    def close_wallet(
        self,
        ctx: RequestContext,
        command: cmd.CloseWallet,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.WalletView:
        """Close for good; needs a zero balance and no pending holds. Closes the ledger
        account too."""

        def handle(scope: CommandScope) -> cmd.WalletView:
            store = self.store_factory(scope.uow)
            svc = self._service(ctx)
            wallet = self._lock(store, ctx, command.wallet_id)
            closed = wallet.moved_to(WalletStatus.CLOSED, scope.now)
            account = self.ledger.get_account(svc, wallet.ledger_account_id, uow=scope.uow)
            if account.posted.amount != 0 or account.held.amount != 0:
                raise WalletNotEmpty(
                    f"wallet {wallet.id} has a balance or pending holds", wallet_id=wallet.id
                )
            try:
                account = self.ledger.change_account_status(
                    svc,
                    ChangeAccountStatus(
                        account_id=wallet.ledger_account_id,
                        status=AccountStatus.CLOSED,
                        reason=command.reason,
                    ),
                    uow=scope.uow,
                )
            except AccountNotEmpty:
                raise WalletNotEmpty(
                    f"wallet {wallet.id} has pending holds", wallet_id=wallet.id
                ) from None
            store.save_wallet(closed)
            self._changed(scope, wallet, closed, command.reason)
            scope.emit(
                ev.WalletClosed,
                dict(
                    wallet_id=wallet.id,
                    customer_id=wallet.customer_id,
                    previous_status=wallet.status.value,
                    reason=command.reason,
                ),
                wallet.id,
                closed.version,
            )
            return wallet_view(closed, account.posted, account.available)

        return self._status_command(ctx, CLOSE, command, handle, idempotency_key, uow)

    def _status_command(
        self,
        ctx: RequestContext,
        spec: CommandSpec[cmd.WalletView],
        command: cmd.ActivateWallet | cmd.SuspendWallet | cmd.CloseWallet,
        handle: Callable[[CommandScope], cmd.WalletView],
        idempotency_key: str | None,
        uow: UnitOfWork | None,
    ) -> cmd.WalletView:
        return self._runner.run(
            ctx,
            spec,
            command,
            handle,
            idempotency_key=idempotency_key,
            resource_id=command.wallet_id,
            uow=uow,
        )

    @staticmethod
    def _changed(
        scope: CommandScope,
        before: Wallet,
        after: Wallet,
        reason: str | None,
        *,
        tier: str | None = None,
    ) -> None:
        scope.resource_id = after.id
        scope.summary = {
            "before": {"status": before.status.value},
            "after": {"status": after.status.value},
            "reason": reason,
        }
        if tier is not None:
            scope.summary["kyc_tier"] = tier

    # -- limits ---------------------------------------------------------------------------
    def update_limits(
        self,
        ctx: RequestContext,
        command: cmd.UpdateLimits,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.LimitsView:
        """Set the customer's own limits in a currency (replacing any earlier override)."""
        new_limits = limit_set(command.limits)
        customer, currency = command.customer_id, command.currency

        def handle(scope: CommandScope) -> cmd.LimitsView:
            store = self.store_factory(scope.uow)
            settings = load_settings(scope.uow, ctx.tenant_id, WalletSettings)
            day, month = period_keys(scope.now, settings.timezone)
            # The usage row is what movements lock: a change waits for them and vice versa.
            usage = store.lock_usage(ctx.tenant_id, [(customer, currency)], day, month)
            old = store.get_override(ctx.tenant_id, customer, currency)
            override = LimitOverride(
                tenant_id=ctx.tenant_id,
                customer_id=customer,
                currency=currency,
                limits=new_limits,
                reason=command.reason,
                updated_by=ctx.actor.id,
                updated_at=scope.now,
                version=1 if old is None else old.version + 1,
            )
            store.save_override(override)
            before = limits_json(LimitSet() if old is None else old.limits, currency)
            after = limits_json(new_limits, currency)
            scope.resource_id = f"{customer}:{currency}"
            scope.summary = {"before": before, "after": after, "reason": command.reason}
            scope.emit(
                ev.WalletLimitUpdated,
                dict(
                    customer_id=customer,
                    currency=currency,
                    old=before,
                    new=after,
                    reason=command.reason,
                    changed_by=ctx.actor.id,
                    changed_by_kind=ctx.actor.kind.value,
                ),
                f"{customer}:{currency}",
                override.version,
            )
            rolled = usage[(customer, currency)].rolled(day, month)
            return self._engine.limits_view(
                self._service(ctx), scope.uow, settings, rolled, override
            )

        check_currency(command.currency)
        return self._runner.run(
            ctx,
            LIMITS,
            command,
            handle,
            idempotency_key=idempotency_key,
            resource_id=f"{customer}:{currency}",
            uow=uow,
        )

    # -- movements ------------------------------------------------------------------------
    def cash_in(
        self,
        ctx: RequestContext,
        command: cmd.CashIn,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.MovementView:
        """Credit a wallet from a settlement account (debited in the ledger)."""
        return self._move(ctx, CASH_IN, command, idempotency_key, uow)

    def cash_out(
        self,
        ctx: RequestContext,
        command: cmd.CashOut,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.MovementView:
        """Debit a wallet to a settlement account (credited in the ledger)."""
        return self._move(ctx, CASH_OUT, command, idempotency_key, uow)

    def transfer(
        self,
        ctx: RequestContext,
        command: cmd.Transfer,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.MovementView:
        """Move money from one wallet to another."""
        return self._move(ctx, TRANSFER, command, idempotency_key, uow)

    def pay_merchant(
        self,
        ctx: RequestContext,
        command: cmd.PayMerchant,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.MovementView:
        """Pay a merchant-kind wallet."""
        return self._move(ctx, PAY_MERCHANT, command, idempotency_key, uow)

    def _move(
        self,
        ctx: RequestContext,
        spec: CommandSpec[cmd.MovementView],
        command: cmd.CashIn | cmd.CashOut | cmd.Transfer | cmd.PayMerchant,
        idempotency_key: str | None,
        uow: UnitOfWork | None,
    ) -> cmd.MovementView:
        plan = plan_for(command)
        return self._runner.run(
            ctx,
            spec,
            command,
            lambda scope: self._engine.run(scope, plan),
            idempotency_key=idempotency_key,
            uow=uow,
        )
