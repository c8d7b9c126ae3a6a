"""Fakes for QR Ph: a merchant settlement that records checks and credits, and a switch that
notifies payments (on time, twice, late or out of order)."""

from __future__ import annotations

import attrs

from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import DomainError
from finfactory.kernel.money import Money
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.qrph.commands import PaymentView, SwitchPayment
from finfactory.primitives.qrph.emv import QrKind
from finfactory.primitives.qrph.errors import MerchantWalletNotFound
from finfactory.primitives.qrph.service import QrPaymentService

__all__ = ["FakeQrSwitch", "RecordingMerchantSettlement", "SettlementCall"]


@attrs.frozen
class SettlementCall:
    tenant_id: str
    actor_id: str
    merchant_wallet_id: str
    amount: Money
    reference: str
    payer_wallet_id: str | None
    kind: QrKind
    journal_id: str | None  # None when the credit was refused


class RecordingMerchantSettlement:
    """A :class:`~finfactory.primitives.qrph.MerchantSettlement` that credits nothing and
    records each call.

    ``credits`` holds the credits it accepted, ``refusals`` the ones it refused (after
    :meth:`fail_with`). It is not transactional: a call stays recorded even if the QR
    command's transaction later rolls back. Every wallet id exists for it unless
    ``wallets`` names the ones that do.
    """

    def __init__(self, wallets: set[str] | None = None) -> None:
        self.wallets = wallets
        self.credits: list[SettlementCall] = []
        self.refusals: list[SettlementCall] = []
        self._failures: dict[str | None, DomainError] = {}

    def check_merchant(
        self,
        ctx: RequestContext,
        *,
        merchant_wallet_id: str,
        kind: QrKind,
        currency: str,
        uow: UnitOfWork,
    ) -> None:
        if self.wallets is not None and merchant_wallet_id not in self.wallets:
            raise MerchantWalletNotFound(
                f"wallet {merchant_wallet_id} not found", field="merchant_wallet_id"
            )

    def fail_with(
        self, error: DomainError | None, *, merchant_wallet_id: str | None = None
    ) -> None:
        """Refuse every later credit (to ``merchant_wallet_id`` only, if given) by raising
        ``error``; ``None`` accepts them again."""
        if error is None:
            self._failures.pop(merchant_wallet_id, None)
        else:
            self._failures[merchant_wallet_id] = error

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
        failure = self._failures.get(merchant_wallet_id) or self._failures.get(None)
        journal_id = None if failure else f"journal-{len(self.credits) + 1}"
        call = SettlementCall(
            tenant_id=ctx.tenant_id,
            actor_id=ctx.actor.id,
            merchant_wallet_id=merchant_wallet_id,
            amount=amount,
            reference=reference,
            payer_wallet_id=payer_wallet_id,
            kind=kind,
            journal_id=journal_id,
        )
        if failure is not None:
            self.refusals.append(call)
            raise failure
        assert journal_id is not None
        self.credits.append(call)
        return journal_id

    def total(self, merchant_wallet_id: str | None = None) -> dict[str, Money]:
        """Accepted credits summed per currency (of one merchant wallet, if given)."""
        totals: dict[str, Money] = {}
        for call in self.credits:
            if merchant_wallet_id in (None, call.merchant_wallet_id):
                code = call.amount.currency.code
                totals[code] = totals.get(code, Money(0, code)) + call.amount
        return totals


class FakeQrSwitch:
    """The acquirer or switch side of QR Ph payments, for tests and demos.

    :meth:`pay` notifies a payment at once. :meth:`send_later` keeps the notification back;
    :meth:`deliver` hands one over (in any order, however late), :meth:`redeliver` sends a
    notification again (the duplicates real switches produce).
    """

    def __init__(
        self,
        service: QrPaymentService,
        ctx: RequestContext,
        *,
        institution: str = "FAKEPHM2XXX",
        reference_prefix: str = "SW",
    ) -> None:
        self.service = service
        self.ctx = ctx
        self.institution = institution
        self.reference_prefix = reference_prefix
        self.sent: dict[str, SwitchPayment] = {}
        self._held: list[str] = []

    def next_reference(self) -> str:
        return f"{self.reference_prefix}{len(self.sent) + 1:010d}"

    def notification(
        self,
        payload: str,
        amount: Money,
        *,
        network_reference: str | None = None,
    ) -> SwitchPayment:
        """A notification of ``amount`` paid to the QR code ``payload`` (remembered)."""
        reference = network_reference or self.next_reference()
        note = SwitchPayment(
            network_reference=reference,
            payload=payload,
            amount=amount,
            payer_institution=self.institution,
        )
        self.sent[reference] = note
        return note

    def pay(
        self,
        payload: str,
        amount: Money,
        *,
        network_reference: str | None = None,
    ) -> PaymentView:
        note = self.notification(payload, amount, network_reference=network_reference)
        return self.service.receive_switch_payment(self.ctx, note)

    def send_later(
        self,
        payload: str,
        amount: Money,
        *,
        network_reference: str | None = None,
    ) -> str:
        """Keep a notification back; returns its network reference for :meth:`deliver`."""
        note = self.notification(payload, amount, network_reference=network_reference)
        self._held.append(note.network_reference)
        return note.network_reference

    @property
    def pending(self) -> list[str]:
        return list(self._held)

    def deliver(self, network_reference: str) -> PaymentView:
        """Hand over a notification kept back by :meth:`send_later`."""
        self._held.remove(network_reference)
        return self.service.receive_switch_payment(self.ctx, self.sent[network_reference])

    def deliver_all(self, *, newest_first: bool = False) -> list[PaymentView]:
        order = list(reversed(self._held)) if newest_first else list(self._held)
        return [self.deliver(reference) for reference in order]

    def redeliver(self, network_reference: str) -> PaymentView:
        """Send an already sent notification again."""
        return self.service.receive_switch_payment(self.ctx, self.sent[network_reference])
