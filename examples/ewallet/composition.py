"""The reference e-wallet's composition root: every primitive wired to one database.

This is the one place that knows the concrete adapters. A product team copies it, swaps the
fakes (KYC provider, QR switch) for its vendors' adapters and the demo keys for its KMS.
"""

from __future__ import annotations

from typing import Any

import attrs
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy import SqlStorage, create_engine, migrate
from finfactory.kernel.authz import DEFAULT_ROLES, RoleBasedPolicy
from finfactory.kernel.clock import Clock, IdGenerator, SystemClock, UuidGenerator
from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import ConfigurationError
from finfactory.primitives import identity as idn
from finfactory.primitives import ledger as lg
from finfactory.primitives import qrph, wallet
from finfactory.primitives.qrph.wallet_settlement import WalletMerchantSettlement
from finfactory.testing.kyc import FakeKycProvider

DEFAULT_URL = "sqlite:///ewallet.db"

# Roles of this product on top of the SDK's defaults: the switch and the KYC vendor may only
# deliver their notifications; a customer may pay and transfer from, and read, their own.
APP_ROLES = {
    **DEFAULT_ROLES,
    "qr.switch": frozenset({"qrph.switch.receive"}),
    "kyc.webhook": frozenset({"identity.kyc.callback"}),
    # Self-service customers: the API also checks that the wallet is theirs.
    "customer": frozenset({"wallet.transfer", "wallet.read", "identity.read", "qrph.pay"}),
}
OPERATOR_ROLES = frozenset(
    {"identity.operator", "wallet.operator", "qrph.operator", "ledger.operator", "config.admin"}
)

# The EMI's own ledger accounts: where cash-ins come from, cash-outs go to, and where the QR Ph
# switch settles incoming payments. Asset accounts: money the EMI holds at its banks.
SETTLEMENT_ACCOUNTS = {
    "cash_in": "EMI-BANK-CASHIN",
    "cash_out": "EMI-BANK-CASHOUT",
    "qr_clearing": "QRPH-CLEARING",
}


def wallet_limits(currency: str = "PHP") -> dict[str, Any]:
    """Tier limits of the reference product (an issuer's risk-based choice, BSP Circ. 1166)."""

    def amounts(**values: str) -> dict[str, Any]:
        return {k: {"amount": v, "currency": currency} for k, v in values.items()}

    return {
        "basic": {
            currency: amounts(
                balance_cap="50000.00",
                daily_in="20000.00",
                monthly_in="100000.00",
                daily_out="10000.00",
                monthly_out="50000.00",
                per_transaction="5000.00",
            )
        },
        "full": {
            currency: amounts(
                balance_cap="500000.00",
                daily_in="200000.00",
                monthly_in="1000000.00",
                daily_out="100000.00",
                monthly_out="500000.00",
                per_transaction="50000.00",
            )
        },
    }


@attrs.frozen
class Settlement:
    cash_in: str
    cash_out: str
    qr_clearing: str


@attrs.define
class Ewallet:
    """The services of one product, sharing one database, clock, id generator and policy."""

    engine: sa.Engine
    storage: SqlStorage
    clock: Clock
    ids: IdGenerator
    policy: RoleBasedPolicy
    config: TenantConfigService
    ledger: lg.LedgerService
    identity: idn.IdentityService
    wallets: wallet.WalletService
    qr: qrph.QrPaymentService
    kyc_provider: FakeKycProvider
    settlement_by_tenant: dict[str, Settlement] = attrs.field(factory=dict)

    def operator(self, tenant_id: str) -> RequestContext:
        return RequestContext(
            tenant_id=tenant_id, actor=Actor("ewallet-bootstrap", ActorKind.SYSTEM, OPERATOR_ROLES)
        )

    def bootstrap_tenant(self, tenant_id: str, *, acquirer_id: str = "FFEWPHM2XXX") -> Settlement:
        """Idempotent set-up of a tenant: settlement accounts and configuration."""
        ctx = self.operator(tenant_id)
        ids = {}
        for role, code in SETTLEMENT_ACCOUNTS.items():
            account = self.ledger.open_account(
                ctx,
                lg.OpenAccount(
                    code=code,
                    currency="PHP",
                    type=lg.AccountType.ASSET,
                    balance_bound=lg.BalanceBound.NONE,
                ),
                idempotency_key=f"bootstrap:account:{code}",
            )
            ids[role] = account.id
        settlement = Settlement(**ids)
        self.config.update(
            ctx,
            wallet.WalletSettings,
            {
                "limits": wallet_limits(),
                "timezone": "Asia/Manila",
                "settlement_account_ids": [
                    settlement.cash_in,
                    settlement.cash_out,
                    settlement.qr_clearing,
                ],
            },
            reason="reference e-wallet tier limits",
            idempotency_key="bootstrap:config:wallet",
        )
        self.config.update(
            ctx,
            qrph.QrPhSettings,
            {"acquirer_id": acquirer_id, "settlement_account_id": settlement.qr_clearing},
            reason="reference e-wallet acquirer",
            idempotency_key="bootstrap:config:qrph",
        )
        self.settlement_by_tenant[tenant_id] = settlement
        return settlement

    def settlement(self, tenant_id: str) -> Settlement:
        found = self.settlement_by_tenant.get(tenant_id)
        if found is None:
            raise ConfigurationError(f"tenant {tenant_id} is not set up; run bootstrap_tenant")
        return found


def build(
    database_url: str = DEFAULT_URL,
    *,
    engine: sa.Engine | None = None,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    keyring: idn.PiiCipher | None = None,
    kyc_provider: FakeKycProvider | None = None,
) -> Ewallet:
    """Build the app's services on ``database_url`` or ``engine`` (migrated to the newest
    schema).

    ``keyring`` defaults to fresh random keys, which suits a demo whose database lives as long
    as the process; a product loads its keys from its KMS.
    """
    engine = engine or create_engine(database_url)
    migrate(engine)
    storage = SqlStorage(engine)
    clock = clock or SystemClock()
    ids = ids or UuidGenerator()
    policy = RoleBasedPolicy(roles=APP_ROLES)
    provider = kyc_provider or FakeKycProvider()
    keys = keyring or idn.PiiKeyring({1: idn.generate_key()}, hash_key=idn.generate_key())
    ledger = lg.LedgerService(storage, policy, clock, ids)
    identity = idn.IdentityService(storage, policy, clock, ids, keys, provider)
    wallets = wallet.WalletService(storage, policy, clock, ids, ledger, identity)
    return Ewallet(
        engine=engine,
        storage=storage,
        clock=clock,
        ids=ids,
        policy=policy,
        config=TenantConfigService(storage, policy, clock, ids),
        ledger=ledger,
        identity=identity,
        wallets=wallets,
        # Switch payments settle from each tenant's clearing account (QrPhSettings).
        qr=qrph.QrPaymentService(storage, policy, clock, ids, WalletMerchantSettlement(wallets)),
        kyc_provider=provider,
    )
