"""A wallet service on each storage backend, with a settlement account and KYC fake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from finfactory.adapters.memory import MemoryStorage
from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.events.envelope import EventEnvelope
from finfactory.events.outbox import OutboxReader
from finfactory.kernel.audit import AuditRecord
from finfactory.kernel.authz import AuthorizationPolicy, default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.money import Money
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import AccountType, LedgerService, OpenAccount
from finfactory.primitives.wallet import (
    ActivateWallet,
    CashIn,
    Limits,
    OpenWallet,
    WalletKind,
    WalletService,
    WalletView,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.wallet import StaticCustomerTiers, configure_wallets

TENANT = "tenant-a"
# Tables whose rows a refused command may still write: its audit record and the
# idempotency outcome stored under its key.
REJECTION_TABLES = {"ff_audit_log", "ff_audit_heads", "ff_idempotency"}


def php(amount: str) -> Money:
    return Money(amount, "PHP")


def money_json(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "PHP"}


def context(
    tenant: str = TENANT, roles: frozenset[str] = frozenset({"admin"}), actor: str = "ops-1"
) -> RequestContext:
    return RequestContext(tenant_id=tenant, actor=Actor(actor, ActorKind.USER, roles))


@attrs.define
class WalletEnv:
    storage: Storage
    clock: ManualClock
    ledger: LedgerService
    wallets: WalletService
    tiers: StaticCustomerTiers
    ctx: RequestContext
    settlement: str
    config_ids: SequentialIds  # ids of settings changes, apart from the services' own
    _refs: int = 0

    @property
    def tenant(self) -> str:
        return self.ctx.tenant_id

    def configure(
        self, limits: Mapping[str, Mapping[str, Limits]] | None = None, **settings: Any
    ) -> None:
        configure_wallets(
            self.storage,
            self.tenant,
            limits=limits,
            clock=self.clock,
            ids=self.config_ids,
            **settings,
        )

    def ref(self) -> str:
        self._refs += 1
        return f"ref-{self._refs}"

    def open(
        self,
        customer: str,
        *,
        kind: WalletKind = WalletKind.PERSONAL,
        tier: str | None = "basic",
        activate: bool = True,
        ctx: RequestContext | None = None,
    ) -> WalletView:
        ctx = ctx or self.ctx
        if tier is not None:
            self.tiers.tiers[customer] = tier
        view = self.wallets.open_wallet(
            ctx, OpenWallet(customer_id=customer, currency="PHP", kind=kind)
        )
        if activate:
            view = self.wallets.activate_wallet(ctx, ActivateWallet(wallet_id=view.id))
        return view

    def fund(self, wallet_id: str, amount: str) -> None:
        self.wallets.cash_in(
            self.ctx,
            CashIn(
                wallet_id=wallet_id,
                amount=php(amount),
                source_account_id=self.settlement,
                reference=self.ref(),
            ),
        )

    def posted(self, wallet_id: str) -> Money:
        return self.wallets.get_wallet(self.ctx, wallet_id).posted

    def events(self, tenant: str | None = None) -> list[EventEnvelope]:
        return list(OutboxReader(self.storage, tenant_id=tenant or self.tenant).drain())

    def audit(self, tenant: str | None = None) -> list[AuditRecord]:
        with self.storage.read() as tx:
            return list(tx.kernel.audit_records(tenant or self.tenant))

    def row_counts(self) -> dict[str, int]:
        """Rows per table, leaving out the tables a refusal may write to."""
        if isinstance(self.storage, MemoryStorage):
            counts = self.storage.db.row_counts()
        else:
            assert isinstance(self.storage, SqlStorage)
            with self.storage.engine.connect() as conn:
                names = sa.inspect(conn).get_table_names()
                counts = {
                    n: conn.execute(sa.text(f"SELECT COUNT(*) FROM {n}")).scalar_one()
                    for n in names
                    if n.startswith(("ff_", "ledger_", "wallet_"))
                }
        return {n: c for n, c in counts.items() if n not in REJECTION_TABLES}


def build_env(
    storage: Storage,
    *,
    policy: AuthorizationPolicy | None = None,
    ctx: RequestContext | None = None,
    id_namespace: int = 0,
) -> WalletEnv:
    """Services with ids of their own: give each env sharing a storage its own namespace."""
    clock = ManualClock()
    ids = SequentialIds(namespace=2 * id_namespace)
    policy = policy or default_policy()
    ledger = LedgerService(storage, policy, clock, ids)
    tiers = StaticCustomerTiers()
    wallets = WalletService(storage, policy, clock, ids, ledger, tiers)
    ctx = ctx or context()
    settlement = ledger.open_account(
        ctx, OpenAccount(code="settlement.bank", currency="PHP", type=AccountType.ASSET)
    ).id
    config_ids = SequentialIds(namespace=2 * id_namespace + 1)
    return WalletEnv(storage, clock, ledger, wallets, tiers, ctx, settlement, config_ids)


@pytest.fixture
def env(storage: Storage) -> WalletEnv:
    built = build_env(storage)
    built.configure()
    return built
