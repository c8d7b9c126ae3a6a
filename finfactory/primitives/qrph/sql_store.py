"""SQLAlchemy implementation of the QR Ph store. Reads (and row locks) go out at once;
writes are queued on the driver session at :meth:`flush` (sent at once on PostgreSQL, run at
the next read or commit on SQLite)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, or_, select

from finfactory.adapters.sqlalchemy.driver import DriverSession
from finfactory.primitives.qrph.emv import Initiation, QrKind
from finfactory.primitives.qrph.model import (
    FailureReason,
    PaymentChannel,
    PaymentStatus,
    QrCode,
    QrPayment,
    QrStatus,
)
from finfactory.primitives.qrph.tables import codes, merchant_accounts, payments


class SqlQrStore:
    def __init__(self, conn: Connection, driver: DriverSession) -> None:
        self._conn = conn
        self._drv = driver
        self._lock = conn.dialect.name == "postgresql"

    def _core(self) -> Connection:
        self._drv.flush()
        return self._conn

    def _first(self, stmt: Select[Any]) -> Any:
        row = self._core().execute(stmt).first()
        return None if row is None else row._mapping

    # -- reads ----------------------------------------------------------------------------
    def account_number(self, tenant_id: str, merchant_wallet_id: str) -> str | None:
        t = merchant_accounts
        m = self._first(
            select(t.c.account_number).where(
                t.c.tenant_id == tenant_id, t.c.merchant_wallet_id == merchant_wallet_id
            )
        )
        return None if m is None else str(m["account_number"])

    def get_qr(self, tenant_id: str, qr_id: str) -> QrCode | None:
        m = self._first(select(codes).where(codes.c.tenant_id == tenant_id, codes.c.id == qr_id))
        return None if m is None else _qr(m)

    def lock_qr(self, tenant_id: str, qr_id: str) -> QrCode | None:
        stmt = select(codes).where(codes.c.tenant_id == tenant_id, codes.c.id == qr_id)
        m = self._first(stmt.with_for_update() if self._lock else stmt)
        return None if m is None else _qr(m)

    def static_qr_id(self, tenant_id: str, merchant_account: str) -> str | None:
        m = self._first(
            select(codes.c.id).where(
                codes.c.tenant_id == tenant_id,
                codes.c.merchant_account == merchant_account,
                codes.c.initiation == Initiation.STATIC.value,
            )
        )
        return None if m is None else str(m["id"])

    def dynamic_qr_id(
        self, tenant_id: str, merchant_account: str, reference_label: str
    ) -> str | None:
        m = self._first(
            select(codes.c.id).where(
                codes.c.tenant_id == tenant_id,
                codes.c.merchant_account == merchant_account,
                codes.c.reference_label == reference_label,
            )
        )
        return None if m is None else str(m["id"])

    def payment_by_reference(self, tenant_id: str, network_reference: str) -> QrPayment | None:
        m = self._first(
            select(payments).where(
                payments.c.tenant_id == tenant_id,
                payments.c.network_reference == network_reference,
            )
        )
        return None if m is None else _payment(m)

    def get_payment(self, tenant_id: str, payment_id: str) -> QrPayment | None:
        m = self._first(
            select(payments).where(payments.c.tenant_id == tenant_id, payments.c.id == payment_id)
        )
        return None if m is None else _payment(m)

    def list_payments(
        self,
        tenant_id: str,
        *,
        qr_id: str | None,
        merchant_wallet_id: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[QrPayment]:
        # Code-point order of ids on every backend (a database collation may order otherwise).
        pid = payments.c.id.collate("C") if self._lock else payments.c.id
        stmt = select(payments).where(payments.c.tenant_id == tenant_id)
        if qr_id is not None:
            stmt = stmt.where(payments.c.qr_id == qr_id)
        if merchant_wallet_id is not None:
            stmt = stmt.where(payments.c.merchant_wallet_id == merchant_wallet_id)
        if after is not None:
            at, payment_id = after
            stmt = stmt.where(
                or_(
                    payments.c.received_at > at,
                    and_(payments.c.received_at == at, pid > payment_id),
                )
            )
        rows = self._core().execute(stmt.order_by(payments.c.received_at, pid).limit(limit))
        return [_payment(r._mapping) for r in rows]

    # -- queued writes --------------------------------------------------------------------
    def add_account_number(
        self, tenant_id: str, merchant_wallet_id: str, account_number: str, created_at: datetime
    ) -> None:
        self._drv.queue(
            _INSERT_ACCOUNT,
            [
                {
                    "tenant_id": tenant_id,
                    "merchant_wallet_id": merchant_wallet_id,
                    "account_number": account_number,
                    "created_at": self._drv.ts(created_at),
                }
            ],
        )

    def add_qr(self, qr: QrCode) -> None:
        drv = self._drv
        drv.queue(
            _INSERT_QR,
            [
                {
                    "id": qr.id,
                    "tenant_id": qr.tenant_id,
                    "merchant_wallet_id": qr.merchant_wallet_id,
                    "kind": qr.kind.value,
                    "initiation": qr.initiation.value,
                    "status": qr.status.value,
                    "payload": qr.payload,
                    "acquirer_id": qr.acquirer_id,
                    "merchant_account": qr.merchant_account,
                    "merchant_name": qr.merchant_name,
                    "merchant_city": qr.merchant_city,
                    "mcc": qr.mcc,
                    "currency": qr.currency,
                    "amount": qr.amount,
                    "reference_label": qr.reference_label,
                    "postal_code": qr.postal_code,
                    "expires_at": drv.ts(qr.expires_at),
                    "created_at": drv.ts(qr.created_at),
                    "paid_at": drv.ts(qr.paid_at),
                }
            ],
        )

    def mark_paid(self, qr: QrCode) -> None:
        self._drv.queue(
            _MARK_PAID,
            [{"id": qr.id, "status": qr.status.value, "paid_at": self._drv.ts(qr.paid_at)}],
        )

    def add_payment(self, payment: QrPayment) -> None:
        drv = self._drv
        p = payment
        drv.queue(
            _INSERT_PAYMENT,
            [
                {
                    "id": p.id,
                    "tenant_id": p.tenant_id,
                    "qr_id": p.qr_id,
                    "merchant_wallet_id": p.merchant_wallet_id,
                    "initiation": p.initiation.value,
                    "network_reference": p.network_reference,
                    "channel": p.channel.value,
                    "amount": p.amount,
                    "currency": p.currency,
                    "payer_wallet_id": p.payer_wallet_id,
                    "payer_institution": p.payer_institution,
                    "status": p.status.value,
                    "failure_reason": None if p.failure_reason is None else p.failure_reason.value,
                    "failure_detail": p.failure_detail,
                    "journal_id": p.journal_id,
                    "received_at": drv.ts(p.received_at),
                    "resolved_at": drv.ts(p.resolved_at),
                    "version": p.version,
                }
            ],
        )

    def save_payment(self, payment: QrPayment) -> None:
        p = payment
        self._drv.queue(
            _SAVE_PAYMENT,
            [
                {
                    "id": p.id,
                    "status": p.status.value,
                    "reason": None if p.failure_reason is None else p.failure_reason.value,
                    "detail": p.failure_detail,
                    "journal_id": p.journal_id,
                    "resolved_at": self._drv.ts(p.resolved_at),
                    "version": p.version,
                }
            ],
        )

    def flush(self) -> None:
        self._drv.send()


def _insert_sql(table: str, columns: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"


_INSERT_ACCOUNT = _insert_sql(
    "qrph_merchant_accounts", "tenant_id, merchant_wallet_id, account_number, created_at"
)
_INSERT_QR = _insert_sql(
    "qrph_codes",
    "id, tenant_id, merchant_wallet_id, kind, initiation, status, payload, acquirer_id,"
    " merchant_account, merchant_name, merchant_city, mcc, currency, amount, reference_label,"
    " postal_code, expires_at, created_at, paid_at",
)
_INSERT_PAYMENT = _insert_sql(
    "qrph_payments",
    "id, tenant_id, qr_id, merchant_wallet_id, initiation, network_reference, channel, amount,"
    " currency, payer_wallet_id, payer_institution, status, failure_reason,"
    " failure_detail, journal_id, received_at, resolved_at, version",
)
_MARK_PAID = "UPDATE qrph_codes SET status = :status, paid_at = :paid_at WHERE id = :id"
_SAVE_PAYMENT = (
    "UPDATE qrph_payments SET status = :status, failure_reason = :reason,"
    " failure_detail = :detail, journal_id = :journal_id, resolved_at = :resolved_at,"
    " version = :version WHERE id = :id"
)


def _qr(m: Any) -> QrCode:
    return QrCode(
        id=m["id"],
        tenant_id=m["tenant_id"],
        merchant_wallet_id=m["merchant_wallet_id"],
        kind=QrKind(m["kind"]),
        initiation=Initiation(m["initiation"]),
        status=QrStatus(m["status"]),
        payload=m["payload"],
        acquirer_id=m["acquirer_id"],
        merchant_account=m["merchant_account"],
        merchant_name=m["merchant_name"],
        merchant_city=m["merchant_city"],
        mcc=m["mcc"],
        currency=m["currency"],
        amount=None if m["amount"] is None else int(m["amount"]),
        reference_label=m["reference_label"],
        postal_code=m["postal_code"],
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        paid_at=m["paid_at"],
    )


def _payment(m: Any) -> QrPayment:
    reason = m["failure_reason"]
    return QrPayment(
        id=m["id"],
        tenant_id=m["tenant_id"],
        qr_id=m["qr_id"],
        merchant_wallet_id=m["merchant_wallet_id"],
        initiation=Initiation(m["initiation"]),
        network_reference=m["network_reference"],
        channel=PaymentChannel(m["channel"]),
        amount=int(m["amount"]),
        currency=m["currency"],
        payer_wallet_id=m["payer_wallet_id"],
        payer_institution=m["payer_institution"],
        status=PaymentStatus(m["status"]),
        failure_reason=None if reason is None else FailureReason(reason),
        failure_detail=m["failure_detail"],
        journal_id=m["journal_id"],
        received_at=m["received_at"],
        resolved_at=m["resolved_at"],
        version=int(m["version"]),
    )
