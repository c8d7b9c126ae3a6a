"""Limits under concurrency on PostgreSQL: many threads move money for the same customers at
once. However they interleave, no limit is passed in total, no update is lost and no
transaction deadlocks."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.money import from_minor, money_from_json, to_minor
from finfactory.primitives.wallet import (
    CashIn,
    CashOut,
    InsufficientFunds,
    LimitExceeded,
    Limits,
    MovementView,
    Transfer,
    WalletKind,
)
from tests.wallet.conftest import WalletEnv, build_env

pytestmark = pytest.mark.postgres

THREADS = 8
OPS_PER_THREAD = 25
JOIN_TIMEOUT = 120.0  # only to detect a hang; never asserted as a duration


def run_threads(workers: list[Callable[[], list[object]]]) -> list[object]:
    """Start the workers together; return every result or exception they produced."""
    barrier = threading.Barrier(len(workers), timeout=JOIN_TIMEOUT)
    results: list[list[object]] = [[] for _ in workers]

    def body(index: int) -> None:
        barrier.wait()
        results[index] = workers[index]()

    threads = [
        threading.Thread(target=body, args=(i,), name=f"wallet-worker-{i}", daemon=True)
        for i in range(len(workers))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads never finished (deadlock?): {hung}"
    return [r for batch in results for r in batch]


def minor(amount: object) -> int:
    return to_minor(amount)[0]


@pytest.fixture
def pg_env(pg_clean: sa.Engine) -> WalletEnv:
    return build_env(SqlStorage(pg_clean))


def test_concurrent_spending_never_passes_the_daily_limit(pg_env: WalletEnv) -> None:
    env = pg_env
    daily_out = 1_000_00
    env.configure(
        limits={
            "basic": {"PHP": Limits(daily_out=from_minor(daily_out, "PHP"))},
            "receiver": {"PHP": Limits()},
        }
    )
    spender = [env.open("c-spender").id, env.open("c-spender", kind=WalletKind.MERCHANT).id]
    receivers = [env.open(f"c-recv-{i}", tier="receiver").id for i in range(4)]
    for wallet in spender:
        env.fund(wallet, "5000.00")

    def worker(n: int) -> Callable[[], list[object]]:
        rng = random.Random(n)

        def run() -> list[object]:
            out: list[object] = []
            for i in range(OPS_PER_THREAD):
                amount = rng.randint(10_00, 90_00)
                command = Transfer(
                    from_wallet_id=rng.choice(spender),
                    to_wallet_id=rng.choice(receivers),
                    amount=from_minor(amount, "PHP"),
                    reference=f"t{n}-{i}",
                )
                try:
                    out.append(env.wallets.transfer(env.ctx, command))
                except LimitExceeded as err:
                    out.append(err)
            return out

        return run

    results = run_threads([worker(n) for n in range(THREADS)])
    moved = [r for r in results if isinstance(r, MovementView)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(moved) + len(refused) == THREADS * OPS_PER_THREAD
    assert moved, "some transfers must have gone through"
    assert refused, "the limit must have been reached"
    total = sum(minor(m.amount) for m in moved)
    assert total <= daily_out
    # Usage grows only: a refusal stays justified against the final total.
    for err in refused:
        assert err.limit == "daily_out"
        assert total + minor(money_from_json(err.attempted)) > daily_out
    limits = env.wallets.get_limits(env.ctx, "c-spender", "PHP")
    assert minor(limits.usage.daily_out) == total  # no lost update of the counter
    assert minor(limits.balance) == 10_000_00 - total  # nor of the balances
    received = sum(minor(env.posted(w)) for w in receivers)
    assert received == total


def test_crossing_transfers_and_cash_ins_keep_caps_and_do_not_deadlock(
    pg_env: WalletEnv, pg_clean: sa.Engine
) -> None:
    env = pg_env
    cap, daily_in = 1_500_00, 2_000_00
    env.configure(
        limits={
            "basic": {
                "PHP": Limits(
                    balance_cap=from_minor(cap, "PHP"), daily_in=from_minor(daily_in, "PHP")
                )
            }
        }
    )
    wallets = {
        customer: [
            env.open(customer).id,
            env.open(customer, kind=WalletKind.MERCHANT).id,
        ]
        for customer in ("c-x", "c-y")
    }
    everyone = [w for ws in wallets.values() for w in ws]
    owner = {w: c for c, ws in wallets.items() for w in ws}
    for customer in wallets:
        env.fund(wallets[customer][0], "500.00")

    def worker(n: int) -> Callable[[], list[object]]:
        rng = random.Random(100 + n)

        def run() -> list[object]:
            out: list[object] = []
            for i in range(OPS_PER_THREAD):
                amount = from_minor(rng.randint(5_00, 120_00), "PHP")
                try:
                    if rng.random() < 0.4:
                        target = rng.choice(everyone)
                        view = env.wallets.cash_in(
                            env.ctx,
                            CashIn(
                                wallet_id=target,
                                amount=amount,
                                source_account_id=env.settlement,
                                reference=f"in{n}-{i}",
                            ),
                        )
                    else:
                        source, target = rng.sample(everyone, 2)
                        view = env.wallets.transfer(
                            env.ctx,
                            Transfer(
                                from_wallet_id=source,
                                to_wallet_id=target,
                                amount=amount,
                                reference=f"tr{n}-{i}",
                            ),
                        )
                    out.append(view)
                except (LimitExceeded, InsufficientFunds) as err:
                    out.append(err)
            return out

        return run

    results = run_threads([worker(n) for n in range(THREADS)])
    unexpected = [
        r for r in results if not isinstance(r, MovementView | LimitExceeded | InsufficientFunds)
    ]
    assert not unexpected
    moved = [r for r in results if isinstance(r, MovementView)]
    assert any(isinstance(r, LimitExceeded) for r in results)

    # Replay the successful movements: every wallet's balance and counter must match.
    expected = {w: 0 for w in everyone}
    incoming = {c: 0 for c in wallets}
    for customer in wallets:
        expected[wallets[customer][0]] += 500_00
        incoming[customer] += 500_00
    for m in moved:
        amount = minor(m.amount)
        if m.from_wallet_id is not None:
            expected[m.from_wallet_id] -= amount
        assert m.to_wallet_id is not None
        expected[m.to_wallet_id] += amount
        if m.from_wallet_id is None or owner[m.from_wallet_id] != owner[m.to_wallet_id]:
            incoming[owner[m.to_wallet_id]] += amount
    for wallet in everyone:
        assert minor(env.posted(wallet)) == expected[wallet]
    for customer in wallets:
        view = env.wallets.get_limits(env.ctx, customer, "PHP")
        assert minor(view.usage.daily_in) == incoming[customer] <= daily_in
        assert minor(view.balance) <= cap
    settlement = env.ledger.get_account(env.ctx, env.settlement).posted
    assert minor(settlement) == sum(expected.values())

    # A customer's movements take their usage row's lock, so their positions follow the
    # order they committed in: replaying them shows the cap held at every step.
    with pg_clean.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT from_wallet_id, to_wallet_id, amount FROM wallet_movements"
                " ORDER BY position"
            )
        ).all()
    running = {c: 0 for c in wallets}
    for source, target, amount in rows:
        if source is not None:
            running[owner[source]] -= amount
        running[owner[target]] += amount
        assert running[owner[target]] <= cap
        assert min(running.values()) >= 0
    assert running == {c: sum(expected[w] for w in ws) for c, ws in wallets.items()}


def test_cash_ins_to_several_wallets_of_one_customer_never_pass_the_cap_together(
    pg_env: WalletEnv, pg_clean: sa.Engine
) -> None:
    """The cap counts the customer's balance over all their wallets. Threads pay into, and
    out of, four wallets of one customer at once, keeping the total near the cap: each must
    see the balance the others left, not the one before it waited for them."""
    env = pg_env
    cap = 1_000_00
    env.configure(limits={"basic": {"PHP": Limits(balance_cap=from_minor(cap, "PHP"))}})
    mine = [env.open("c-capped").id for _ in range(4)]

    def worker(n: int) -> Callable[[], list[object]]:
        rng = random.Random(1000 + n)

        def run() -> list[object]:
            out: list[object] = []
            for i in range(OPS_PER_THREAD):
                wallet, amount = rng.choice(mine), from_minor(rng.randint(20_00, 200_00), "PHP")
                try:
                    if rng.random() < 0.75:
                        paid_in = CashIn(
                            wallet_id=wallet,
                            amount=amount,
                            source_account_id=env.settlement,
                            reference=f"in{n}-{i}",
                        )
                        out.append(env.wallets.cash_in(env.ctx, paid_in))
                    else:
                        paid_out = CashOut(
                            wallet_id=wallet,
                            amount=amount,
                            destination_account_id=env.settlement,
                            reference=f"out{n}-{i}",
                        )
                        out.append(env.wallets.cash_out(env.ctx, paid_out))
                except (LimitExceeded, InsufficientFunds) as err:
                    out.append(err)
            return out

        return run

    results = run_threads([worker(n) for n in range(THREADS)])
    assert all(isinstance(r, MovementView | LimitExceeded | InsufficientFunds) for r in results)
    refusals = [r for r in results if isinstance(r, LimitExceeded)]
    assert refusals, "the cap must have been reached"
    assert {r.limit for r in refusals} == {"balance_cap"}
    # The usage row orders the customer's movements: replayed in the order they were
    # recorded, the customer's total never passed the cap.
    with pg_clean.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT from_wallet_id, amount FROM wallet_movements"
                " WHERE tenant_id = :t ORDER BY position"
            ),
            {"t": env.tenant},
        ).all()
    total = 0
    for source, amount in rows:
        total += -amount if source is not None else amount
        assert 0 <= total <= cap
    assert total == sum(minor(env.posted(w)) for w in mine)
    assert minor(env.wallets.get_limits(env.ctx, "c-capped", "PHP").balance) == total
