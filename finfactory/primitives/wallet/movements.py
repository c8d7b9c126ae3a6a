"""Money movements: one ledger posting per movement, with the limit checks of every customer
it touches, all in the command's transaction.

Lock order, the same in every movement (so concurrent movements cannot deadlock): the
wallets (ascending id), then the customers' usage rows (ascending customer id), then the
ledger accounts (the ledger locks them in ascending id), then the outbox and audit head.
Holding the usage rows while the ledger posts is what makes a limit check and the posting
one atomic step: a concurrent movement of the same customer waits and then sees this one's
counters and balance.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from finfactory.kernel.commands import CommandScope
from finfactory.kernel.config import load_settings
from finfactory.kernel.context import Actor, RequestContext
from finfactory.kernel.money import from_minor, minor_to_json, to_minor
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.ledger import (
    BalanceBoundExceeded,
    Direction,
    DuplicateReference,
    LedgerService,
    Leg,
    PostJournal,
)
from finfactory.primitives.wallet import commands as cmd
from finfactory.primitives.wallet.errors import (
    DuplicateMovementReference,
    InsufficientFunds,
    InvalidSettlementAccount,
    KycRequired,
    LimitExceeded,
    NotAMerchantWallet,
    TierNotAllowed,
    WalletCurrencyMismatch,
    WalletNotActive,
    WalletNotFound,
)
from finfactory.primitives.wallet.limits import (
    Party,
    check_party,
    limit_set,
    period_keys,
    withheld,
)
from finfactory.primitives.wallet.model import (
    LimitOverride,
    LimitSet,
    Movement,
    MovementKind,
    Usage,
    Wallet,
    WalletKind,
    WalletStatus,
)
from finfactory.primitives.wallet.ports import CustomerTiers, WalletStore
from finfactory.primitives.wallet.settings import WalletSettings
from finfactory.primitives.wallet.views import limits_model, movement_view, usage_view

JOURNAL_PREFIX = "wallet:"


@attrs.frozen
class MovementPlan:
    """A movement as the engine sees it. Exactly one side may be a settlement account."""

    kind: MovementKind
    reference: str
    amount: int
    currency: str
    debit_wallet_id: str | None
    credit_wallet_id: str | None
    settlement_account_id: str | None
    description: str
    debit_field: str = "wallet_id"
    credit_field: str = "wallet_id"


def plan_for(command: cmd.CashIn | cmd.CashOut | cmd.Transfer | cmd.PayMerchant) -> MovementPlan:
    amount, currency = to_minor(command.amount, allow_zero=False)
    description = command.description or ""
    if isinstance(command, cmd.CashIn):
        return MovementPlan(
            MovementKind.CASH_IN,
            command.reference,
            amount,
            currency,
            debit_wallet_id=None,
            credit_wallet_id=command.wallet_id,
            settlement_account_id=command.source_account_id,
            description=description,
        )
    if isinstance(command, cmd.CashOut):
        return MovementPlan(
            MovementKind.CASH_OUT,
            command.reference,
            amount,
            currency,
            debit_wallet_id=command.wallet_id,
            credit_wallet_id=None,
            settlement_account_id=command.destination_account_id,
            description=description,
        )
    if isinstance(command, cmd.Transfer):
        return MovementPlan(
            MovementKind.TRANSFER,
            command.reference,
            amount,
            currency,
            debit_wallet_id=command.from_wallet_id,
            credit_wallet_id=command.to_wallet_id,
            settlement_account_id=None,
            description=description,
            debit_field="from_wallet_id",
            credit_field="to_wallet_id",
        )
    return MovementPlan(
        MovementKind.MERCHANT_PAYMENT,
        command.reference,
        amount,
        currency,
        debit_wallet_id=command.from_wallet_id,
        credit_wallet_id=command.merchant_wallet_id,
        settlement_account_id=None,
        description=description,
        debit_field="from_wallet_id",
        credit_field="merchant_wallet_id",
    )


@attrs.define
class MovementEngine:
    ledger: LedgerService
    customers: CustomerTiers
    store_factory: Callable[[UnitOfWork], WalletStore]
    service_actor: Actor

    def tier_limits(
        self, svc: RequestContext, uow: UnitOfWork, settings: WalletSettings, wallet: Wallet
    ) -> tuple[str, LimitSet]:
        """The customer's verified tier and its limits in the wallet's currency, or the
        refusal that the customer may not hold (or use) the wallet."""
        tier = self.customers.verified_tier(svc, wallet.customer_id, uow=uow)
        if tier is None:
            raise KycRequired(
                f"the owner of wallet {wallet.id} has no verified KYC tier",
                wallet_id=wallet.id,
            )
        limits = settings.tier_limits(tier, wallet.currency)
        if limits is None:
            raise TierNotAllowed(
                f"KYC tier {tier!r} has no wallet limits configured in {wallet.currency}"
                " (WalletSettings.limits)",
                wallet_id=wallet.id,
                tier=tier,
                currency=wallet.currency,
            )
        return tier, limit_set(limits)

    def customer_balance(
        self, svc: RequestContext, uow: UnitOfWork, customer_id: str, currency: str
    ) -> int:
        """Posted balance over all the customer's wallets in ``currency``."""
        total = 0
        store = self.store_factory(uow)
        for w in store.customer_wallets(svc.tenant_id, customer_id, currency):
            if w.status is not WalletStatus.CLOSED:
                posted = self.ledger.get_account(svc, w.ledger_account_id, uow=uow).posted
                total += to_minor(posted, allow_negative=True)[0]
        return total

    def limits_view(
        self,
        svc: RequestContext,
        uow: UnitOfWork,
        settings: WalletSettings,
        usage: Usage,
        override: LimitOverride | None,
    ) -> cmd.LimitsView:
        """The customer's tier, tier limits, own overrides, effective limits and usage."""
        customer, currency = usage.customer_id, usage.currency
        tier = self.customers.verified_tier(svc, customer, uow=uow)
        tier_limits = None if tier is None else settings.tier_limits(tier, currency)
        own = LimitSet() if override is None else override.limits
        return cmd.LimitsView.model_construct(
            customer_id=customer,
            currency=currency,
            tier=tier,
            tier_limits=tier_limits,
            overrides=limits_model(own, currency),
            effective=limits_model(limit_set(tier_limits).overlaid(own), currency),
            usage=usage_view(usage),
            balance=from_minor(self.customer_balance(svc, uow, customer, currency), currency),
        )

    def run(self, scope: CommandScope, plan: MovementPlan) -> cmd.MovementView:
        ctx, uow = scope.ctx, scope.uow
        svc = ctx.delegate(self.service_actor)
        store = self.store_factory(uow)
        # What was attempted: the audit record of a refusal carries it too.
        scope.summary = {
            "kind": plan.kind.value,
            "reference": plan.reference,
            "amount": minor_to_json(plan.amount, plan.currency),
            "from_wallet_id": plan.debit_wallet_id,
            "to_wallet_id": plan.credit_wallet_id,
            "settlement_account_id": plan.settlement_account_id,
        }
        if store.reference_taken(ctx.tenant_id, plan.reference):
            raise DuplicateMovementReference(
                f"movement reference {plan.reference} is already used", field="reference"
            )
        wallets = store.lock_wallets(
            ctx.tenant_id,
            {w for w in (plan.debit_wallet_id, plan.credit_wallet_id) if w is not None},
        )
        payer = _wallet(wallets, plan.debit_wallet_id, plan.debit_field)
        payee = _wallet(wallets, plan.credit_wallet_id, plan.credit_field)
        self._check_wallets(plan, payer, payee)
        settings = load_settings(uow, ctx.tenant_id, WalletSettings)
        self._check_settlement(store, ctx.tenant_id, settings, plan.settlement_account_id)
        counters = self._check_limits(scope, svc, store, settings, plan, payer, payee)

        journal_id = self._post(svc, uow, plan, payer, payee)
        for usage in counters:
            store.save_usage(usage)
        movement = Movement(
            id=scope.ids.new_id(),
            tenant_id=ctx.tenant_id,
            reference=plan.reference,
            kind=plan.kind,
            journal_id=journal_id,
            amount=plan.amount,
            currency=plan.currency,
            from_wallet_id=plan.debit_wallet_id,
            to_wallet_id=plan.credit_wallet_id,
            counterparty_account_id=plan.settlement_account_id,
            description=plan.description,
            posted_at=scope.now,
        )
        store.add_movement(movement)
        scope.resource_id = movement.id
        scope.summary["journal_id"] = journal_id
        return movement_view(movement)

    def _check_limits(
        self,
        scope: CommandScope,
        svc: RequestContext,
        store: WalletStore,
        settings: WalletSettings,
        plan: MovementPlan,
        payer: Wallet | None,
        payee: Wallet | None,
    ) -> list[Usage]:
        """Lock the customers' usage rows and check every limit of both sides; return the
        rows as they must be saved once the posting succeeds."""
        uow, tenant = scope.uow, scope.ctx.tenant_id
        owners = {w.customer_id: w for w in (payer, payee) if w is not None}
        limits = {c: self.tier_limits(svc, uow, settings, w)[1] for c, w in sorted(owners.items())}
        day, month = period_keys(scope.now, settings.timezone)
        locked = store.lock_usage(tenant, [(c, plan.currency) for c in limits], day, month)
        usage = {customer: row.rolled(day, month) for (customer, _), row in locked.items()}
        for customer in sorted(limits):
            override = store.get_override(tenant, customer, plan.currency)
            if override is not None:
                limits[customer] = limits[customer].overlaid(override.limits)

        # Between two wallets of one customer nothing enters or leaves the customer's money.
        internal = len(owners) == 1 and payer is not None and payee is not None
        flows = {c: [0, 0] for c in limits}  # customer -> [incoming, outgoing]
        if not internal:
            if payer is not None:
                flows[payer.customer_id][1] += plan.amount
            if payee is not None:
                flows[payee.customer_id][0] += plan.amount
        for side, wallet in (("sender", payer), ("receiver", payee)):
            if wallet is None:
                continue
            customer = wallet.customer_id
            incoming, outgoing = flows[customer]
            capped = incoming and limits[customer].balance_cap is not None
            balance = self.customer_balance(svc, uow, customer, plan.currency) if capped else 0
            party = Party(
                side, plan.currency, limits[customer], usage[customer], balance, incoming, outgoing
            )
            try:
                check_party(party, plan.amount)
            except LimitExceeded as refusal:
                # The audit record of the refusal tells operators the whole story.
                scope.summary["limit_refusal"] = dict(refusal.details)
                if wallet is payee and payer is not None and not internal:
                    raise withheld(refusal, plan.credit_field) from None
                raise
        return [
            usage[c].plus(incoming, outgoing)
            for c, (incoming, outgoing) in sorted(flows.items())
            if incoming or outgoing or usage[c] != locked[(c, plan.currency)]
        ]

    @staticmethod
    def _check_wallets(plan: MovementPlan, payer: Wallet | None, payee: Wallet | None) -> None:
        for wallet, field in ((payer, plan.debit_field), (payee, plan.credit_field)):
            if wallet is not None and wallet.currency != plan.currency:
                raise WalletCurrencyMismatch(
                    f"wallet {wallet.id} holds {wallet.currency}, not {plan.currency}",
                    field=field,
                    wallet_id=wallet.id,
                )
        if payer is not None and not payer.accepts_debits:
            raise WalletNotActive(
                f"wallet {payer.id} is {payer.status.value} and cannot send money",
                field=plan.debit_field,
                wallet_id=payer.id,
                status=payer.status.value,
            )
        if payee is not None and not payee.accepts_credits:
            raise WalletNotActive(
                f"wallet {payee.id} is {payee.status.value} and cannot receive money",
                field=plan.credit_field,
                wallet_id=payee.id,
                status=payee.status.value,
            )
        if (
            plan.kind is MovementKind.MERCHANT_PAYMENT
            and payee is not None
            and payee.kind is not WalletKind.MERCHANT
        ):
            raise NotAMerchantWallet(
                f"wallet {payee.id} is not a merchant wallet", field=plan.credit_field
            )

    @staticmethod
    def _check_settlement(
        store: WalletStore, tenant: str, settings: WalletSettings, account_id: str | None
    ) -> None:
        if account_id is None:
            return
        # Moving money against another wallet's ledger account would skip that wallet's
        # status and limit checks.
        if store.is_wallet_account(tenant, account_id) or (
            settings.settlement_account_ids and account_id not in settings.settlement_account_ids
        ):
            raise InvalidSettlementAccount(
                f"ledger account {account_id} is not a settlement account of this tenant",
                account_id=account_id,
            )

    def _post(
        self,
        svc: RequestContext,
        uow: UnitOfWork,
        plan: MovementPlan,
        payer: Wallet | None,
        payee: Wallet | None,
    ) -> str:
        debit = payer.ledger_account_id if payer is not None else plan.settlement_account_id
        credit = payee.ledger_account_id if payee is not None else plan.settlement_account_id
        assert debit is not None
        assert credit is not None
        amount = from_minor(plan.amount, plan.currency)
        journal = PostJournal(
            reference=JOURNAL_PREFIX + plan.reference,
            legs=[
                Leg(account_id=debit, direction=Direction.DEBIT, amount=amount),
                Leg(account_id=credit, direction=Direction.CREDIT, amount=amount),
            ],
            description=plan.description,
            metadata={"wallet_movement": plan.kind.value},
        )
        try:
            return self.ledger.post_journal(svc, journal, uow=uow).id
        except BalanceBoundExceeded as err:
            if payer is None or err.details.get("account_id") != payer.ledger_account_id:
                raise
            raise InsufficientFunds(
                f"wallet {payer.id} has not enough available funds",
                field=plan.debit_field,
                wallet_id=payer.id,
            ) from None
        except DuplicateReference:
            raise DuplicateMovementReference(
                f"movement reference {plan.reference} is already used", field="reference"
            ) from None


def _wallet(wallets: dict[str, Wallet], wallet_id: str | None, field: str) -> Wallet | None:
    if wallet_id is None:
        return None
    found = wallets.get(wallet_id)
    if found is None:
        raise WalletNotFound(f"wallet {wallet_id} not found", field=field)
    return found
