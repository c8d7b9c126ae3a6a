"""Ports of QR Ph: its storage, and the settlement that credits merchants (a wallet)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from finfactory.kernel.context import RequestContext
from finfactory.kernel.money import Money
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.qrph.emv import QrKind
from finfactory.primitives.qrph.model import QrCode, QrPayment


class MerchantSettlement(Protocol):
    """Where the merchants' money is: checks a wallet can be paid, and moves the money of a
    confirmed payment into it.

    Both calls run inside the QR command's transaction (``uow``). A refusal is raised as a
    :class:`~finfactory.kernel.errors.DomainError` that has written nothing but, at most, its
    own audit record.
    """

    def check_merchant(
        self,
        ctx: RequestContext,
        *,
        merchant_wallet_id: str,
        kind: QrKind,
        currency: str,
        uow: UnitOfWork,
    ) -> None:
        """Before a QR code is issued (a read, no writes): raise
        :class:`~finfactory.primitives.qrph.errors.MerchantWalletNotFound` if the wallet does
        not exist, :class:`~finfactory.primitives.qrph.errors.MerchantWalletNotPayable` if it
        cannot take ``currency`` through a code of ``kind``."""
        ...

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
        """On-us (``payer_wallet_id`` given): move funds payer wallet -> merchant wallet, as a
        merchant payment for a P2M code and as a person-to-person transfer for a P2P code.
        Off-us (None): credit the merchant wallet from the switch settlement account.
        Returns the ledger journal id. A refusal fails the payment as ``rejected`` with the
        error's code."""
        ...


class QrStore(Protocol):
    """One instance serves one command inside one transaction; writes may be buffered
    until :meth:`flush`."""

    def account_number(self, tenant_id: str, merchant_wallet_id: str) -> str | None:
        """The account number the merchant's QR codes carry, once it has one."""
        ...

    def add_account_number(
        self, tenant_id: str, merchant_wallet_id: str, account_number: str, created_at: datetime
    ) -> None:
        """Give the merchant its account number (unique per tenant, one per merchant)."""
        ...

    def get_qr(self, tenant_id: str, qr_id: str) -> QrCode | None: ...

    def lock_qr(self, tenant_id: str, qr_id: str) -> QrCode | None:
        """Load a QR code and lock it until the transaction ends (payments to it queue)."""
        ...

    def static_qr_id(self, tenant_id: str, merchant_account: str) -> str | None: ...

    def dynamic_qr_id(
        self, tenant_id: str, merchant_account: str, reference_label: str
    ) -> str | None: ...

    def payment_by_reference(self, tenant_id: str, network_reference: str) -> QrPayment | None: ...

    def get_payment(self, tenant_id: str, payment_id: str) -> QrPayment | None: ...

    def list_payments(
        self,
        tenant_id: str,
        *,
        qr_id: str | None,
        merchant_wallet_id: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[QrPayment]:
        """Payments in (received_at, id) order, strictly after ``after``."""
        ...

    def add_qr(self, qr: QrCode) -> None: ...

    def mark_paid(self, qr: QrCode) -> None:
        """Persist the status and paid_at of a QR code loaded with :meth:`lock_qr`."""
        ...

    def add_payment(self, payment: QrPayment) -> None: ...

    def save_payment(self, payment: QrPayment) -> None:
        """Persist the outcome (status, failure, journal, resolved_at, version)."""
        ...

    def flush(self) -> None: ...
