"""In-memory QR Ph store; mirrors the SQL store's uniqueness rules and buffering."""

from __future__ import annotations

from datetime import datetime

from finfactory.adapters.memory import MemoryUnitOfWork
from finfactory.kernel.errors import IntegrityViolation
from finfactory.primitives.qrph.emv import Initiation
from finfactory.primitives.qrph.model import PaymentStatus, QrCode, QrPayment

ACCOUNTS = "qrph_merchant_accounts"
ACCOUNT_NUMBERS = "qrph_merchant_accounts_number"
CODES = "qrph_codes"
STATIC = "qrph_codes_static"
LABELS = "qrph_codes_label"
PAYMENTS = "qrph_payments"
REFERENCES = "qrph_payments_reference"
ONE_TIME = "qrph_payments_one_time"


class MemoryQrStore:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow
        self._pending: list[tuple[str, QrCode | QrPayment]] = []
        self._accounts: list[tuple[str, str, str]] = []

    def account_number(self, tenant_id: str, merchant_wallet_id: str) -> str | None:
        found: str | None = self._uow.get(ACCOUNTS, (tenant_id, merchant_wallet_id))
        return found

    def add_account_number(
        self, tenant_id: str, merchant_wallet_id: str, account_number: str, created_at: datetime
    ) -> None:
        self._accounts.append((tenant_id, merchant_wallet_id, account_number))

    def get_qr(self, tenant_id: str, qr_id: str) -> QrCode | None:
        qr = self._uow.get(CODES, qr_id)
        return qr if isinstance(qr, QrCode) and qr.tenant_id == tenant_id else None

    def lock_qr(self, tenant_id: str, qr_id: str) -> QrCode | None:
        return self.get_qr(tenant_id, qr_id)  # one writer at a time in memory

    def static_qr_id(self, tenant_id: str, merchant_account: str) -> str | None:
        found: str | None = self._uow.get(STATIC, (tenant_id, merchant_account))
        return found

    def dynamic_qr_id(
        self, tenant_id: str, merchant_account: str, reference_label: str
    ) -> str | None:
        found: str | None = self._uow.get(LABELS, (tenant_id, merchant_account, reference_label))
        return found

    def payment_by_reference(self, tenant_id: str, network_reference: str) -> QrPayment | None:
        payment_id = self._uow.get(REFERENCES, (tenant_id, network_reference))
        return None if payment_id is None else self.get_payment(tenant_id, payment_id)

    def get_payment(self, tenant_id: str, payment_id: str) -> QrPayment | None:
        p = self._uow.get(PAYMENTS, payment_id)
        return p if isinstance(p, QrPayment) and p.tenant_id == tenant_id else None

    def list_payments(
        self,
        tenant_id: str,
        *,
        qr_id: str | None,
        merchant_wallet_id: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[QrPayment]:
        found = [
            p
            for p in self._uow.rows(PAYMENTS)
            if p.tenant_id == tenant_id
            and (qr_id is None or p.qr_id == qr_id)
            and (merchant_wallet_id is None or p.merchant_wallet_id == merchant_wallet_id)
            and (after is None or (p.received_at, p.id) > after)
        ]
        found.sort(key=lambda p: (p.received_at, p.id))
        return found[:limit]

    def add_qr(self, qr: QrCode) -> None:
        self._pending.append(("qr", qr))

    def mark_paid(self, qr: QrCode) -> None:
        self._pending.append(("saved_qr", qr))

    def add_payment(self, payment: QrPayment) -> None:
        self._pending.append(("payment", payment))

    def save_payment(self, payment: QrPayment) -> None:
        self._pending.append(("saved_payment", payment))

    def flush(self) -> None:
        for tenant_id, wallet_id, number in self._accounts:
            if self._uow.get(ACCOUNTS, (tenant_id, wallet_id)) is not None:
                raise IntegrityViolation("the merchant already has an account number")
            if self._uow.get(ACCOUNT_NUMBERS, (tenant_id, number)) is not None:
                raise IntegrityViolation("account number already given to another merchant")
            self._uow.put(ACCOUNTS, (tenant_id, wallet_id), number)
            self._uow.put(ACCOUNT_NUMBERS, (tenant_id, number), wallet_id)
        self._accounts.clear()
        for kind, item in self._pending:
            if isinstance(item, QrCode):
                if kind == "qr":
                    self._insert_qr(item)
                self._uow.put(CODES, item.id, item)
            else:
                if kind == "payment":
                    self._insert_payment(item)
                self._check_one_time(item)
                self._uow.put(PAYMENTS, item.id, item)
        self._pending.clear()

    def _insert_qr(self, qr: QrCode) -> None:
        uow = self._uow
        if uow.get(CODES, qr.id) is not None:
            raise IntegrityViolation("duplicate QR id")
        if qr.initiation is Initiation.STATIC:
            key: tuple[str, ...] = (qr.tenant_id, qr.merchant_account)
            table = STATIC
        else:
            assert qr.reference_label is not None
            key = (qr.tenant_id, qr.merchant_account, qr.reference_label)
            table = LABELS
        if uow.get(table, key) is not None:
            raise IntegrityViolation(f"{table} already holds {key}")
        uow.put(table, key, qr.id)

    def _insert_payment(self, payment: QrPayment) -> None:
        key = (payment.tenant_id, payment.network_reference)
        if self._uow.get(REFERENCES, key) is not None:
            raise IntegrityViolation("network reference already used")
        self._uow.put(REFERENCES, key, payment.id)

    def _check_one_time(self, payment: QrPayment) -> None:
        if payment.initiation is not Initiation.DYNAMIC:
            return
        if payment.status is not PaymentStatus.CONFIRMED:
            return
        holder = self._uow.get(ONE_TIME, payment.qr_id)
        if holder is not None and holder != payment.id:
            raise IntegrityViolation("a dynamic QR code was confirmed twice")
        self._uow.put(ONE_TIME, payment.qr_id, payment.id)
