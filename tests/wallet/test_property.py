"""Property: random cash-ins, transfers, cash-outs and clock moves across a few customers
give exactly what a simple model predicts: the same refusals, the same ledger balances, the
same usage counters; no limit is ever exceeded and money is conserved."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import attrs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from finfactory.kernel.errors import DomainError
from finfactory.kernel.money import from_minor, to_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.wallet import (
    CashIn,
    CashOut,
    LimitExceeded,
    Limits,
    Transfer,
    WalletKind,
)
from tests.wallet.conftest import WalletEnv, build_env, context

LIMITS = {
    "per_transaction": 150_00,
    "daily_in": 250_00,
    "monthly_in": 450_00,
    "daily_out": 200_00,
    "monthly_out": 250_00,
    "balance_cap": 400_00,
}
# wallet name -> (customer, kind); customer A has two wallets (limits aggregate over both).
WALLETS = {
    "a1": ("c-a", WalletKind.PERSONAL),
    "a2": ("c-a", WalletKind.MERCHANT),
    "b1": ("c-b", WalletKind.PERSONAL),
    "c1": ("c-c", WalletKind.PERSONAL),
}
NAMES = sorted(WALLETS)
EXAMPLES = {"memory": 100, "sqlite": 25, "postgres": 15}
_namespaces = itertools.count(10)

# Mostly amounts well inside the per-transaction limit, so the day, month and cap limits and
# the balances are what refuses; now and then one above it.
amounts = st.one_of(
    st.integers(min_value=50_00, max_value=140_00),
    st.integers(min_value=1, max_value=140_00),
    st.integers(min_value=1, max_value=200_00),
)
cash_in = st.tuples(st.just("cash_in"), st.sampled_from(NAMES), amounts)
cash_out = st.tuples(st.just("cash_out"), st.sampled_from(NAMES), amounts)
transfer = st.tuples(
    st.just("transfer"),
    st.sampled_from([(s, t) for s in NAMES for t in NAMES if s != t]),
    amounts,
)
operations = st.one_of(
    cash_in,
    cash_in,
    cash_out,
    cash_out,
    transfer,
    transfer,
    transfer,
    st.tuples(
        st.just("advance"),
        st.one_of(st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=800)),
        st.just(0),
    ),
)


@attrs.define
class Model:
    """Balances and counters as the rules say they must be."""

    now: datetime
    balances: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(NAMES, 0))
    usage: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def counters(self, customer: str) -> dict[str, Any]:
        day, month = self.now.date().isoformat(), self.now.strftime("%Y-%m")
        found = self.usage.setdefault(
            customer, {"day": day, "month": month, "di": 0, "do": 0, "mi": 0, "mo": 0}
        )
        if day > found["day"]:
            found.update(day=day, di=0, do=0)
        if month > found["month"]:
            found.update(month=month, mi=0, mo=0)
        return found

    def customer_balance(self, customer: str) -> int:
        return sum(b for w, b in self.balances.items() if WALLETS[w][0] == customer)

    def outcome(self, payer: str | None, payee: str | None, amount: int) -> str | None:
        """The refusal the service must give (``code`` or ``code:limit``), or None."""
        internal = payer and payee and WALLETS[payer][0] == WALLETS[payee][0]
        for wallet, outgoing in ((payer, True), (payee, False)):
            if wallet is None:
                continue
            if amount > LIMITS["per_transaction"]:
                return "wallet.limit_exceeded:per_transaction"
            if internal:
                continue
            used = self.counters(WALLETS[wallet][0])
            if outgoing:
                checks = [("daily_out", used["do"]), ("monthly_out", used["mo"])]
            else:
                checks = [
                    ("daily_in", used["di"]),
                    ("monthly_in", used["mi"]),
                    ("balance_cap", self.customer_balance(WALLETS[wallet][0])),
                ]
            for name, value in checks:
                if value + amount > LIMITS[name]:
                    return f"wallet.limit_exceeded:{name}"
        if payer is not None and self.balances[payer] < amount:
            return "wallet.insufficient_funds"
        return None

    def apply(self, payer: str | None, payee: str | None, amount: int) -> None:
        internal = payer and payee and WALLETS[payer][0] == WALLETS[payee][0]
        if payer is not None:
            self.balances[payer] -= amount
            if not internal:
                used = self.counters(WALLETS[payer][0])
                used["do"] += amount
                used["mo"] += amount
        if payee is not None:
            self.balances[payee] += amount
            if not internal:
                used = self.counters(WALLETS[payee][0])
                used["di"] += amount
                used["mi"] += amount


def parties(kind: str, target: Any) -> tuple[str | None, str | None]:
    """(wallet debited, wallet credited) of an operation; None for the settlement side."""
    if kind == "cash_in":
        return None, target
    if kind == "cash_out":
        return target, None
    return target[0], target[1]


def minor(money: Any) -> int:
    return to_minor(money, allow_negative=True)[0]


def run(env: WalletEnv, ids: dict[str, str], op: tuple[str, Any, int], n: int) -> str | None:
    kind, target, amount = op
    money = from_minor(amount, "PHP")
    try:
        if kind == "cash_in":
            env.wallets.cash_in(
                env.ctx,
                CashIn(
                    wallet_id=ids[target],
                    amount=money,
                    source_account_id=env.settlement,
                    reference=f"op-{n}",
                ),
            )
        elif kind == "cash_out":
            env.wallets.cash_out(
                env.ctx,
                CashOut(
                    wallet_id=ids[target],
                    amount=money,
                    destination_account_id=env.settlement,
                    reference=f"op-{n}",
                ),
            )
        else:
            env.wallets.transfer(
                env.ctx,
                Transfer(
                    from_wallet_id=ids[target[0]],
                    to_wallet_id=ids[target[1]],
                    amount=money,
                    reference=f"op-{n}",
                ),
            )
    except DomainError as err:
        refusal = err
    else:
        return None
    if not isinstance(refusal, LimitExceeded):
        return refusal.code
    # The receiver's limits are withheld from a payer who is another customer; the audit
    # record of the refusal names the limit.
    third_party = kind == "transfer" and WALLETS[target[0]][0] != WALLETS[target[1]][0]
    assert (refusal.limit is None) == (third_party and refusal.side == "receiver")
    named = env.audit()[-1].summary["limit_refusal"]["limit"]
    assert refusal.limit in (None, named)
    return f"{refusal.code}:{named}"


def check_invariants(env: WalletEnv, ids: dict[str, str], model: Model) -> None:
    for name, wallet_id in ids.items():
        assert minor(env.posted(wallet_id)) == model.balances[name], name
    total = 0
    for customer in ("c-a", "c-b", "c-c"):
        view = env.wallets.get_limits(env.ctx, customer, "PHP")
        used = model.counters(customer)
        got = tuple(
            minor(m)
            for m in (
                view.usage.daily_in,
                view.usage.daily_out,
                view.usage.monthly_in,
                view.usage.monthly_out,
            )
        )
        assert got == (used["di"], used["do"], used["mi"], used["mo"]), customer
        limits = ("daily_in", "daily_out", "monthly_in", "monthly_out")
        assert all(value <= LIMITS[name] for value, name in zip(got, limits, strict=True))
        assert 0 <= minor(view.balance) <= LIMITS["balance_cap"]
        total += minor(view.balance)
    # Money is conserved: the settlement account holds what the wallets owe.
    assert minor(env.ledger.get_account(env.ctx, env.settlement).posted) == total


def test_random_movements_match_the_model(storage: Storage, backend: str) -> None:
    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops=st.lists(operations, min_size=8, max_size=40))
    def check(ops: list[tuple[str, Any, int]]) -> None:
        # A fresh tenant per example: the same storage, a world of its own.
        namespace = next(_namespaces)
        env = build_env(storage, ctx=context(tenant=f"prop-{namespace}"), id_namespace=namespace)
        env.configure(
            limits={
                "basic": {"PHP": Limits(**{k: from_minor(v, "PHP") for k, v in LIMITS.items()})}
            }
        )
        ids = {name: env.open(customer, kind=kind).id for name, (customer, kind) in WALLETS.items()}
        model = Model(now=env.clock.now())
        # Some money to start with, paid in over two days (the daily limits allow no more).
        start: list[tuple[str, Any, int]] = [
            ("cash_in", "a1", 140_00),
            ("cash_in", "a1", 60_00),
            ("cash_in", "b1", 140_00),
            ("cash_in", "c1", 140_00),
            ("advance", 24, 0),
            ("cash_in", "a2", 140_00),
            ("advance", 24, 0),
        ]
        for n, op in enumerate(start + ops):
            kind, target, amount = op
            if kind == "advance":
                model.now = env.clock.advance(timedelta(hours=target))
                continue
            payer, payee = parties(kind, target)
            expected = model.outcome(payer, payee, amount)
            event(expected or "succeeded")
            assert run(env, ids, op, n) == expected, (n, op)
            assert n >= len(start) or expected is None
            if expected is None:
                model.apply(payer, payee, amount)
            check_invariants(env, ids, model)

    check()


def test_model_refuses_what_the_rules_refuse() -> None:
    """The model is the rules, not a copy of the code: a spot check of it by hand."""
    model = Model(now=datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    assert model.outcome(None, "a1", 150_01) == "wallet.limit_exceeded:per_transaction"
    assert model.outcome("a1", None, 1) == "wallet.insufficient_funds"
    model.apply(None, "a1", 250_00)
    assert model.outcome(None, "a2", 1) == "wallet.limit_exceeded:daily_in"
    assert model.outcome("a1", "a2", 150_00) is None  # between A's own wallets
    assert model.outcome("a1", "b1", 201_00) == "wallet.limit_exceeded:per_transaction"
