"""Concurrent payments on PostgreSQL: the QR code's row lock and the unique network
reference keep every rule when notifications race each other."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.primitives.qrph import FailureReason, PaymentStatus, SwitchPayment
from tests.qrph.conftest import dynamic_qr, php, static_qr
from tests.qrph.test_transactions import World

T = TypeVar("T")
pytestmark = pytest.mark.postgres
THREADS = 8


def _race(calls: list[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_a_dynamic_qr_is_confirmed_once_under_racing_payments(pg_clean: sa.Engine) -> None:
    world = World(SqlStorage(pg_clean))
    qr = world.qr.generate_dynamic_qr(world.ctx, dynamic_qr("25.00"))

    def pay(n: int) -> Callable[[], PaymentStatus | FailureReason | None]:
        note = SwitchPayment(network_reference=f"R-{n}", payload=qr.payload, amount=php("25"))

        def call() -> PaymentStatus | FailureReason | None:
            view = world.qr.receive_switch_payment(world.ctx, note)
            return view.failure_reason or view.status

        return call

    outcomes = Counter(_race([pay(n) for n in range(THREADS * 2)]))
    assert outcomes == {PaymentStatus.CONFIRMED: 1, FailureReason.ALREADY_PAID: THREADS * 2 - 1}
    assert world.balance("merchant-1") == php("25.00")


def test_racing_duplicates_record_one_payment(pg_clean: sa.Engine) -> None:
    world = World(SqlStorage(pg_clean))
    qr = world.qr.generate_static_qr(world.ctx, static_qr())
    note = SwitchPayment(network_reference="DUP-1", payload=qr.payload, amount=php("4.00"))
    views = _race([lambda: world.qr.receive_switch_payment(world.ctx, note)] * THREADS)
    assert len({v.model_dump_json() for v in views}) == 1
    assert views[0].status is PaymentStatus.CONFIRMED
    assert len(world.qr.list_payments(world.ctx).payments) == 1
    assert world.balance("merchant-1") == php("4.00")
    assert world.events().count("qr.payment.confirmed") == 1


def test_many_payments_to_one_merchant_all_land(pg_clean: sa.Engine) -> None:
    world = World(SqlStorage(pg_clean))
    qrs = [
        world.qr.generate_static_qr(world.ctx, static_qr()),
        world.qr.generate_dynamic_qr(world.ctx, dynamic_qr("1.00")),
        world.qr.generate_dynamic_qr(world.ctx, dynamic_qr("2.00")),
    ]

    def pay(n: int) -> Callable[[], PaymentStatus]:
        qr = qrs[n % 3]
        amount = qr.amount or php("3.00")
        note = SwitchPayment(network_reference=f"M-{n}", payload=qr.payload, amount=amount)
        return lambda: world.qr.receive_switch_payment(world.ctx, note).status

    statuses = Counter(_race([pay(n) for n in range(30)]))
    assert statuses[PaymentStatus.CONFIRMED] == 10 + 1 + 1
    assert world.balance("merchant-1") == php("33.00")


def test_racing_first_codes_of_a_merchant_share_one_account_number(pg_clean: sa.Engine) -> None:
    world = World(SqlStorage(pg_clean))

    def generate(n: int) -> Callable[[], str]:
        return lambda: (
            world.qr.generate_dynamic_qr(world.ctx, dynamic_qr(f"{n + 1}.00")).merchant_account
        )

    accounts = _race([generate(n) for n in range(THREADS)])
    assert len(set(accounts)) == 1
    static = world.qr.generate_static_qr(world.ctx, static_qr())
    assert static.merchant_account == accounts[0]
