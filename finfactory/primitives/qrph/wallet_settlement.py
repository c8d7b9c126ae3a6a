"""The EMI Wallet primitive as QR Ph's merchant settlement.

Kept out of the package's ``__init__`` so that QR Ph's core never depends on the wallet:
a product that settles merchants some other way implements :class:`MerchantSettlement`.
"""

from __future__ import annotations

import attrs

from finfactory.kernel.config import load_settings
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import ConfigurationError
from finfactory.kernel.money import Money
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.qrph.emv import QrKind
from finfactory.primitives.qrph.errors import MerchantWalletNotFound, MerchantWalletNotPayable
from finfactory.primitives.qrph.settings import QrPhSettings
from finfactory.primitives.wallet import (
    CashIn,
    PayMerchant,
    Transfer,
    WalletKind,
    WalletNotFound,
    WalletService,
    WalletStatus,
)

# Its default role (``qrph.service``) may use the wallet's API and read identities, no more.
SERVICE_ACTOR = Actor("finfactory.qrph", ActorKind.SERVICE, frozenset({"qrph.service"}))


@attrs.define
class WalletMerchantSettlement:
    """Checks and credits merchant wallets through :class:`WalletService`, in the QR
    command's transaction.

    On-us payments move money payer wallet -> merchant wallet: ``pay_merchant`` for a P2M
    code (the wallet must be a merchant wallet), ``transfer`` for a P2P code (a person's
    wallet). Payments from the switch credit the merchant wallet (``cash_in``) from the
    ledger account that holds what the switch owes the tenant: the tenant's
    ``QrPhSettings.settlement_account_id`` when set, else ``settlement_account_id`` here.
    """

    wallet: WalletService
    settlement_account_id: str | None = None
    service_actor: Actor = SERVICE_ACTOR

    def check_merchant(
        self,
        ctx: RequestContext,
        *,
        merchant_wallet_id: str,
        kind: QrKind,
        currency: str,
        uow: UnitOfWork,
    ) -> None:
        acting = ctx.delegate(self.service_actor)
        try:
            found = self.wallet.get_wallet(acting, merchant_wallet_id, uow=uow)
        except WalletNotFound:
            raise MerchantWalletNotFound(
                f"wallet {merchant_wallet_id} not found", field="merchant_wallet_id"
            ) from None
        why = None
        if found.status == WalletStatus.CLOSED:
            why = "the wallet is closed"
        elif found.currency != currency:
            why = f"the wallet holds {found.currency}, the QR code is in {currency}"
        elif kind == QrKind.P2M and found.kind != WalletKind.MERCHANT:
            why = "a P2M (merchant) QR code needs a merchant wallet; use a P2P code"
        if why is not None:
            raise MerchantWalletNotPayable(why, field="merchant_wallet_id")

    def credit_merchant(
        self,
        ctx: RequestContext,
        *,
        merchant_wallet_id: str,
        amount: Money,
        reference: str,
        payer_wallet_id: str | None,
        kind: QrKind,
        uow: UnitOfWork,
    ) -> str:
        settings = load_settings(uow, ctx.tenant_id, QrPhSettings)
        note = settings.settlement_note
        acting = ctx.delegate(self.service_actor)
        if payer_wallet_id is None:
            source = settings.settlement_account_id or self.settlement_account_id
            if source is None:
                raise ConfigurationError(
                    f"tenant {ctx.tenant_id} has no QR Ph settlement account",
                    setting="settlement_account_id",
                )
            credited = self.wallet.cash_in(
                acting,
                CashIn(
                    wallet_id=merchant_wallet_id,
                    amount=amount,
                    source_account_id=source,
                    reference=reference,
                    description=note,
                ),
                uow=uow,
            )
            return credited.journal_id
        if kind is QrKind.P2P:
            sent = self.wallet.transfer(
                acting,
                Transfer(
                    from_wallet_id=payer_wallet_id,
                    to_wallet_id=merchant_wallet_id,
                    amount=amount,
                    reference=reference,
                    description=note,
                ),
                uow=uow,
            )
            return sent.journal_id
        paid = self.wallet.pay_merchant(
            acting,
            PayMerchant(
                from_wallet_id=payer_wallet_id,
                merchant_wallet_id=merchant_wallet_id,
                amount=amount,
                reference=reference,
                description=note,
            ),
            uow=uow,
        )
        return paid.journal_id
