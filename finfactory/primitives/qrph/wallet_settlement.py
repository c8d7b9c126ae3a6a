"""The EMI Wallet primitive as QR Ph's merchant settlement.

Kept out of the package's ``__init__`` so that QR Ph's core never depends on the wallet:
a product that settles merchants some other way implements :class:`MerchantSettlement`.
"""

from __future__ import annotations

import attrs

from finfactory.kernel.config import load_settings
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.money import Money
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.qrph.settings import QrPhSettings
from finfactory.primitives.wallet import CashIn, PayMerchant, WalletService

# Its default role (``qrph.service``) may use the wallet's API and read identities, no more.
SERVICE_ACTOR = Actor("finfactory.qrph", ActorKind.SERVICE, frozenset({"qrph.service"}))


@attrs.define
class WalletMerchantSettlement:
    """Credits merchant wallets through :class:`WalletService`, in the QR command's
    transaction.

    On-us payments move money payer wallet -> merchant wallet (``pay_merchant``); payments
    from the switch credit the merchant wallet from ``settlement_account_id``, the ledger
    account that holds what the switch owes the tenant (``cash_in``).
    """

    wallet: WalletService
    settlement_account_id: str
    service_actor: Actor = SERVICE_ACTOR

    def credit_merchant(
        self,
        ctx: RequestContext,
        *,
        merchant_wallet_id: str,
        amount: Money,
        reference: str,
        payer_wallet_id: str | None,
        uow: UnitOfWork,
    ) -> str:
        note = load_settings(uow, ctx.tenant_id, QrPhSettings).settlement_note
        acting = ctx.delegate(self.service_actor)
        if payer_wallet_id is not None:
            paid = self.wallet.pay_merchant(
                acting,
                PayMerchant(
                    from_wallet_id=payer_wallet_id,
                    merchant_wallet_id=merchant_wallet_id,
                    amount=amount,
                    reference=reference,
                    description=note,
                ),
                idempotency_key=None,
                uow=uow,
            )
            return paid.journal_id
        credited = self.wallet.cash_in(
            acting,
            CashIn(
                wallet_id=merchant_wallet_id,
                amount=amount,
                source_account_id=self.settlement_account_id,
                reference=reference,
                description=note,
            ),
            idempotency_key=None,
            uow=uow,
        )
        return credited.journal_id
