"""The confirmation and the merchant's credit share one transaction.

A real primitive (the ledger) stands in for the wallet here, so the kernel's savepoints on
each backend are exercised: a refused credit leaves the payment received and failed and no
money moved; a crash after the credit leaves nothing at all.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.money import Money
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.primitives.ledger import LedgerService, Leg, OpenAccount, PostJournal
from finfactory.primitives.qrph import (
    FailureReason,
    MerchantWalletNotFound,
    PaymentStatus,
    PayQr,
    QrKind,
    QrPaymentService,
    SwitchPayment,
)
from finfactory.testing import ManualClock, SequentialIds
from tests.qrph.conftest import TENANT, actor_ctx, configure, dynamic_qr, php, static_qr

LEDGER_ACTOR = Actor("qrph-test-settlement", ActorKind.SERVICE, frozenset({"ledger.operator"}))


class Crash(RuntimeError):
    pass


class LedgerSettlement:
    """Posts payer (or clearing) -> merchant in the ledger, inside the QR transaction."""

    def __init__(self, ledger: LedgerService, accounts: dict[str, str]) -> None:
        self.ledger = ledger
        self.accounts = accounts
        self.crash_after_posting = False

    def check_merchant(
        self,
        ctx: RequestContext,
        *,
        merchant_wallet_id: str,
        kind: QrKind,
        currency: str,
        uow: UnitOfWork,
    ) -> None:
        if merchant_wallet_id not in self.accounts:
            raise MerchantWalletNotFound("no such account", field="merchant_wallet_id")

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
        source = self.accounts[payer_wallet_id or "clearing"]
        journal = self.ledger.post_journal(
            ctx.delegate(LEDGER_ACTOR),
            PostJournal(
                reference=reference,
                legs=[
                    Leg(account_id=source, direction="debit", amount=amount),
                    Leg(
                        account_id=self.accounts[merchant_wallet_id],
                        direction="credit",
                        amount=amount,
                    ),
                ],
            ),
            uow=uow,
        )
        if self.crash_after_posting:
            raise Crash("the process died after the credit")
        return journal.id


class World:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.clock = ManualClock()
        ids = SequentialIds()
        self.ledger = LedgerService(storage, default_policy(), self.clock, ids)
        admin = actor_ctx("ledger.operator")
        accounts = {}
        for code, kind, bound in (
            ("clearing", "asset", "none"),
            ("merchant-1", "liability", "debits_must_not_exceed_credits"),
            ("payer-1", "liability", "debits_must_not_exceed_credits"),
        ):
            accounts[code] = self.ledger.open_account(
                admin, OpenAccount(code=code, currency="PHP", type=kind, balance_bound=bound)
            ).id
        self.accounts = accounts
        self.settlement = LedgerSettlement(self.ledger, accounts)
        self.qr = QrPaymentService(storage, default_policy(), self.clock, ids, self.settlement)
        configure(storage, self.clock)
        self.ctx = actor_ctx("qrph.operator")

    def balance(self, code: str) -> Money:
        return self.ledger.balance(actor_ctx("auditor"), self.accounts[code]).posted

    def events(self) -> list[str]:
        with self.storage.read() as uow:
            return [e.event_type for e in uow.kernel.read_events(0, 1000, TENANT)]

    def audit(self) -> list[tuple[str, str]]:
        with self.storage.read() as uow:
            return [(r.action, r.outcome.value) for r in uow.kernel.audit_records(TENANT)]


def test_confirmed_payment_posts_in_the_same_transaction(storage: Storage) -> None:
    world = World(storage)
    qr = world.qr.generate_static_qr(world.ctx, static_qr())
    note = SwitchPayment(network_reference="N-1", payload=qr.payload, amount=php("12.00"))
    paid = world.qr.receive_switch_payment(world.ctx, note)
    assert paid.status is PaymentStatus.CONFIRMED
    assert world.ledger.get_journal(world.ctx.delegate(LEDGER_ACTOR), paid.journal_id or "")
    assert world.balance("merchant-1") == php("12.00")
    # The ledger's events are written when its command ends, the payment's when ours does.
    assert world.events()[-5:] == [
        "journal.posted",
        "balance.updated",
        "balance.updated",
        "qr.payment.received",
        "qr.payment.confirmed",
    ]


def test_refused_credit_in_a_savepoint_keeps_the_payment_rows(storage: Storage) -> None:
    world = World(storage)
    qr = world.qr.generate_dynamic_qr(world.ctx, dynamic_qr("30.00"))
    events_before = world.events()
    # The payer's wallet account is empty: the ledger refuses the debit (no overdraft).
    failed = world.qr.pay_qr(world.ctx, PayQr(payload=qr.payload, payer_wallet_id="payer-1"))
    assert failed.status is PaymentStatus.FAILED
    assert failed.failure_reason is FailureReason.REJECTED
    assert failed.failure_detail == "ledger.insufficient_funds"
    assert world.qr.get_payment(world.ctx, failed.id) == failed
    assert world.balance("merchant-1") == php("0.00")
    assert world.events()[len(events_before) :] == ["qr.payment.received", "qr.payment.failed"]
    # Both commands are on the audit trail: the ledger's refusal and the QR command.
    assert world.audit()[-2:] == [
        ("ledger.post_journal", "rejected"),
        ("qrph.pay_qr", "succeeded"),
    ]
    # The QR code is still payable, and is paid once the payer has funds.
    world.ledger.post_journal(
        actor_ctx("ledger.operator"),
        PostJournal(
            reference="top-up",
            legs=[
                Leg(account_id=world.accounts["clearing"], direction="debit", amount=php("30")),
                Leg(account_id=world.accounts["payer-1"], direction="credit", amount=php("30")),
            ],
        ),
    )
    paid = world.qr.pay_qr(world.ctx, PayQr(payload=qr.payload, payer_wallet_id="payer-1"))
    assert paid.status is PaymentStatus.CONFIRMED
    assert world.balance("merchant-1") == php("30.00")
    assert world.balance("payer-1") == php("0.00")


def test_a_crash_after_the_credit_leaves_nothing(storage: Storage) -> None:
    world = World(storage)
    qr = world.qr.generate_static_qr(world.ctx, static_qr())
    before = (world.events(), world.audit())
    world.settlement.crash_after_posting = True
    note = SwitchPayment(network_reference="N-1", payload=qr.payload, amount=php("12.00"))
    with pytest.raises(Crash):
        world.qr.receive_switch_payment(world.ctx, note)
    assert (world.events(), world.audit()) == before
    assert world.balance("merchant-1") == php("0.00")
    assert world.qr.list_payments(world.ctx).payments == []
    # Delivered again, the payment is taken as new (nothing was kept of the first try).
    world.settlement.crash_after_posting = False
    assert world.qr.receive_switch_payment(world.ctx, note).status is PaymentStatus.CONFIRMED


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_in_the_callers_transaction(sql_storage: SqlStorage, outcome: str) -> None:
    world = World(sql_storage)
    qr = world.qr.generate_static_qr(world.ctx, static_qr())
    before = (world.events(), world.audit())
    with sql_storage.engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            note = SwitchPayment(network_reference="N-9", payload=qr.payload, amount=php("8.00"))
            paid = world.qr.receive_switch_payment(world.ctx, note, uow=uow)
            assert world.qr.get_payment(world.ctx, paid.id, uow=uow) == paid
        assert (world.events(), world.audit()) == before  # nothing visible outside yet
        if outcome == "commit":
            tx.commit()
        else:
            tx.rollback()
    rows = _count(sql_storage, "SELECT count(*) FROM qrph_payments")
    if outcome == "commit":
        assert rows == 1
        assert world.balance("merchant-1") == php("8.00")
        assert world.events()[-1] == "qr.payment.confirmed"
    else:
        assert rows == 0
        assert world.balance("merchant-1") == php("0.00")
        assert (world.events(), world.audit()) == before


def _count(storage: SqlStorage, sql: str, **params: Any) -> int:
    with storage.engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def test_database_refuses_a_second_confirmation_of_a_dynamic_qr(sql_storage: SqlStorage) -> None:
    """The one-time rule holds in the schema too, whatever a buggy store might do."""
    world = World(sql_storage)
    qr = world.qr.generate_dynamic_qr(world.ctx, dynamic_qr("5.00"))
    note = SwitchPayment(network_reference="N-1", payload=qr.payload, amount=php("5.00"))
    world.qr.receive_switch_payment(world.ctx, note)
    with sql_storage.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(
            sa.text(
                "INSERT INTO qrph_payments (id, tenant_id, qr_id, merchant_wallet_id,"
                " initiation, network_reference, channel, amount, currency, status,"
                " journal_id, received_at, resolved_at, version) SELECT 'x', tenant_id, qr_id,"
                " merchant_wallet_id, initiation, 'N-2', channel, amount, currency, status,"
                " journal_id, received_at, resolved_at, version FROM qrph_payments"
            )
        )
    with sql_storage.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.text("UPDATE qrph_payments SET journal_id = NULL"))
