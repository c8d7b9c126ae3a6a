"""Limits by KYC tier: each kind, aggregated per customer, over the day and month of the
tenant's time zone, with per-customer overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from finfactory.kernel.audit import Outcome
from finfactory.kernel.errors import PermissionDenied, ValidationError
from finfactory.kernel.money import Money
from finfactory.primitives.wallet import (
    CashIn,
    CashOut,
    KycRequired,
    LimitExceeded,
    Limits,
    LimitsView,
    PayMerchant,
    Transfer,
    UpdateLimits,
    WalletKind,
)
from tests.wallet.conftest import WalletEnv, context, money_json, php


def limits(**values: str) -> dict[str, dict[str, Limits]]:
    return {"basic": {"PHP": Limits(**{k: php(v) for k, v in values.items()})}}


def cash_in(env: WalletEnv, wallet_id: str, amount: str) -> None:
    env.wallets.cash_in(
        env.ctx,
        CashIn(
            wallet_id=wallet_id,
            amount=php(amount),
            source_account_id=env.settlement,
            reference=env.ref(),
        ),
    )


def cash_out(env: WalletEnv, wallet_id: str, amount: str) -> None:
    env.wallets.cash_out(
        env.ctx,
        CashOut(
            wallet_id=wallet_id,
            amount=php(amount),
            destination_account_id=env.settlement,
            reference=env.ref(),
        ),
    )


def transfer(env: WalletEnv, source: str, target: str, amount: str) -> None:
    env.wallets.transfer(
        env.ctx,
        Transfer(
            from_wallet_id=source, to_wallet_id=target, amount=php(amount), reference=env.ref()
        ),
    )


def pay_merchant(env: WalletEnv, payer: str, shop: str, amount: str) -> None:
    env.wallets.pay_merchant(
        env.ctx,
        PayMerchant(
            from_wallet_id=payer, merchant_wallet_id=shop, amount=php(amount), reference=env.ref()
        ),
    )


def refused(env: WalletEnv, action: object, **expected: object) -> LimitExceeded:
    """Run ``action``; it must be refused with LimitExceeded and leave no trace but audit."""
    assert callable(action)
    before = env.row_counts()
    with pytest.raises(LimitExceeded) as caught:
        action()
    assert caught.value.code == "wallet.limit_exceeded"
    for key, value in expected.items():
        assert caught.value.details[key] == value, key
    assert env.row_counts() == before
    assert env.audit()[-1].outcome is Outcome.REJECTED
    return caught.value


@pytest.fixture
def pair(env: WalletEnv) -> tuple[str, str]:
    return env.open("c-alice").id, env.open("c-bob").id


def test_per_transaction(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, bob = pair
    env.configure(limits=limits(per_transaction="100.00"))
    cash_in(env, alice, "100.00")
    err = refused(
        env,
        lambda: cash_in(env, alice, "100.01"),
        limit="per_transaction",
        side="receiver",
        limit_amount=money_json("100.00"),
        used=money_json("0.00"),
        attempted=money_json("100.01"),
    )
    assert err.limit == "per_transaction"
    assert err.attempted == money_json("100.01")
    cash_in(env, alice, "50.00")
    refused(env, lambda: transfer(env, alice, bob, "100.01"), side="sender")


def test_daily_and_monthly_incoming(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, bob = pair
    env.configure(limits=limits(daily_in="100.00", monthly_in="150.00"))
    cash_in(env, alice, "60.00")
    cash_in(env, alice, "40.00")
    refused(
        env,
        lambda: cash_in(env, alice, "0.01"),
        limit="daily_in",
        used=money_json("100.00"),
        attempted=money_json("0.01"),
    )
    env.clock.advance(timedelta(days=1))
    cash_in(env, alice, "50.00")
    refused(
        env,
        lambda: cash_in(env, alice, "0.01"),
        limit="monthly_in",
        limit_amount=money_json("150.00"),
        used=money_json("150.00"),
    )
    # A transfer to a customer counts as their incoming too.
    cash_in(env, bob, "10.00")
    refused(env, lambda: transfer(env, bob, alice, "1.00"), side="receiver")
    assert env.audit()[-1].summary["limit_refusal"]["limit"] == "monthly_in"


def test_daily_and_monthly_outgoing(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, bob = pair
    shop = env.open("m-shop", kind=WalletKind.MERCHANT).id
    env.configure(limits=limits(daily_out="100.00", monthly_out="150.00"))
    cash_in(env, alice, "500.00")
    cash_out(env, alice, "50.00")
    transfer(env, alice, bob, "30.00")
    pay_merchant(env, alice, shop, "20.00")
    refused(
        env,
        lambda: cash_out(env, alice, "0.01"),
        limit="daily_out",
        side="sender",
        used=money_json("100.00"),
    )
    env.clock.advance(timedelta(days=1))
    cash_out(env, alice, "50.00")
    refused(env, lambda: transfer(env, alice, bob, "0.01"), limit="monthly_out")
    view = env.wallets.get_limits(env.ctx, "c-alice", "PHP")
    assert (view.usage.daily_out, view.usage.monthly_out) == (php("50.00"), php("150.00"))
    assert view.usage.monthly_in == php("500.00")


def test_balance_cap(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, bob = pair
    env.configure(limits=limits(balance_cap="100.00"))
    cash_in(env, alice, "60.00")
    cash_in(env, alice, "40.00")
    refused(
        env,
        lambda: cash_in(env, alice, "0.01"),
        limit="balance_cap",
        used=money_json("100.00"),
        attempted=money_json("0.01"),
    )
    # The cap is on the balance, not on the flow: spending makes room again.
    cash_out(env, alice, "10.00")
    cash_in(env, alice, "10.00")
    cash_in(env, bob, "1.00")
    refused(env, lambda: transfer(env, bob, alice, "1.00"), side="receiver")
    assert env.audit()[-1].summary["limit_refusal"]["limit"] == "balance_cap"


def test_the_payer_is_not_told_the_receivers_limits_usage_or_balance(
    env: WalletEnv, pair: tuple[str, str]
) -> None:
    alice, bob = pair
    shop = env.open("m-shop", kind=WalletKind.MERCHANT).id
    env.configure(
        limits={
            "basic": {"PHP": Limits(balance_cap=php("100.00"))},
            "merchant": {"PHP": Limits(daily_in=php("50.00"))},
        }
    )
    env.tiers.tiers["m-shop"] = "merchant"
    cash_in(env, alice, "80.00")
    cash_in(env, bob, "100.00")
    # bob -> alice would put alice over her cap: bob learns no more than that.
    err = refused(env, lambda: transfer(env, bob, alice, "20.01"))
    assert err.details == {
        "side": "receiver",
        "attempted": money_json("20.01"),
        "field": "to_wallet_id",
    }
    assert (err.limit, err.limit_amount, err.used) == (None, None, None)
    assert "80.00" not in err.message
    assert "100.00" not in err.message
    # Operators find the whole story in the audit record of the refusal.
    record = env.audit()[-1]
    assert (record.action, record.outcome) == ("wallet.transfer", Outcome.REJECTED)
    assert record.summary["limit_refusal"] == {
        "limit": "balance_cap",
        "side": "receiver",
        "limit_amount": money_json("100.00"),
        "used": money_json("80.00"),
        "attempted": money_json("20.01"),
    }
    # The same for a merchant payment.
    err = refused(
        env,
        lambda: pay_merchant(env, bob, shop, "50.01"),
        side="receiver",
        field="merchant_wallet_id",
    )
    assert err.limit is None
    assert env.audit()[-1].summary["limit_refusal"]["limit"] == "daily_in"
    # A cash-in is the customer's own money coming in: the details are theirs to see.
    refused(
        env,
        lambda: cash_in(env, alice, "20.01"),
        limit="balance_cap",
        side="receiver",
        used=money_json("80.00"),
    )


def test_limits_aggregate_over_all_wallets_of_a_customer(env: WalletEnv) -> None:
    first = env.open("c-alice").id
    second = env.open("c-alice", kind=WalletKind.MERCHANT).id
    bob = env.open("c-bob").id
    env.configure(limits=limits(balance_cap="100.00", daily_out="50.00"))
    cash_in(env, first, "70.00")
    cash_in(env, second, "30.00")
    refused(
        env, lambda: cash_in(env, first, "0.01"), limit="balance_cap", used=money_json("100.00")
    )
    cash_out(env, first, "30.00")
    transfer(env, second, bob, "20.00")
    refused(env, lambda: cash_out(env, second, "0.01"), limit="daily_out", used=money_json("50.00"))
    # Between a customer's own wallets nothing enters or leaves: no limit but per transaction.
    transfer(env, first, second, "40.00")
    assert env.wallets.get_limits(env.ctx, "c-alice", "PHP").usage.daily_out == php("50.00")
    assert env.wallets.get_limits(env.ctx, "c-alice", "PHP").balance == php("50.00")


def test_day_and_month_roll_over(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, _ = pair
    env.configure(limits=limits(daily_out="100.00", monthly_out="150.00"))
    env.clock.set(datetime(2026, 1, 30, 12, tzinfo=UTC))
    cash_in(env, alice, "1000.00")
    cash_out(env, alice, "100.00")
    env.clock.set(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    cash_out(env, alice, "50.00")
    refused(env, lambda: cash_out(env, alice, "0.01"), limit="monthly_out")
    env.clock.set(datetime(2026, 2, 1, 0, 0, tzinfo=UTC))
    cash_out(env, alice, "100.00")
    refused(env, lambda: cash_out(env, alice, "0.01"), limit="daily_out")
    view = env.wallets.get_limits(env.ctx, "c-alice", "PHP")
    assert (view.usage.day, view.usage.month) == ("2026-02-01", "2026-02")
    assert view.usage.monthly_out == php("100.00")
    # A server whose clock lags reads an earlier day: it keeps counting into the later one.
    env.clock.set(datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
    refused(env, lambda: cash_out(env, alice, "0.01"), limit="daily_out")


def test_days_follow_the_tenants_time_zone(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, _ = pair
    env.configure(limits=limits(daily_out="100.00"), timezone="Asia/Manila")
    env.clock.set(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))  # 23:00 in Manila
    cash_in(env, alice, "500.00")
    cash_out(env, alice, "100.00")
    env.clock.set(datetime(2026, 3, 10, 15, 59, tzinfo=UTC))
    refused(env, lambda: cash_out(env, alice, "0.01"), limit="daily_out")
    env.clock.set(datetime(2026, 3, 10, 16, 0, tzinfo=UTC))  # midnight in Manila, same UTC day
    cash_out(env, alice, "100.00")
    assert env.wallets.get_limits(env.ctx, "c-alice", "PHP").usage.day == "2026-03-11"


def test_tiers_choose_the_limits(env: WalletEnv, pair: tuple[str, str]) -> None:
    alice, bob = pair
    env.configure(
        limits={
            "basic": {"PHP": Limits(per_transaction=php("10.00"))},
            "*": {"PHP": Limits(per_transaction=php("1000.00"))},
        }
    )
    env.tiers.tiers["c-bob"] = "full"  # not listed: the catch-all tier applies
    cash_in(env, bob, "500.00")
    refused(env, lambda: cash_in(env, alice, "10.01"), limit="per_transaction")
    env.tiers.tiers["c-alice"] = None  # KYC expired: no movement at all
    with pytest.raises(KycRequired):
        cash_in(env, alice, "1.00")


def test_update_limits_overrides_the_tier_for_one_customer(
    env: WalletEnv, pair: tuple[str, str]
) -> None:
    alice, bob = pair
    env.configure(limits=limits(daily_out="100.00", balance_cap="1000.00"))
    cash_in(env, alice, "500.00")
    cash_in(env, bob, "500.00")
    ops = context(actor="risk-officer-7")
    view = env.wallets.update_limits(
        ops,
        UpdateLimits(
            customer_id="c-alice",
            currency="PHP",
            limits=Limits(daily_out=php("300.00")),
            reason="salary account, verified income",
        ),
    )
    assert isinstance(view, LimitsView)
    assert view.tier == "basic"
    assert view.tier_limits == Limits(daily_out=php("100.00"), balance_cap=php("1000.00"))
    assert view.overrides == Limits(daily_out=php("300.00"))
    assert view.effective == Limits(daily_out=php("300.00"), balance_cap=php("1000.00"))
    assert view.balance == php("500.00")
    cash_out(env, alice, "300.00")
    refused(env, lambda: cash_out(env, alice, "0.01"), limit="daily_out")
    refused(env, lambda: cash_out(env, bob, "100.01"), limit="daily_out")

    # Zero blocks; an empty override returns to the tier's limits.
    env.wallets.update_limits(
        ops,
        UpdateLimits(
            customer_id="c-bob",
            currency="PHP",
            limits=Limits(daily_out=php("0.00")),
            reason="fraud review",
        ),
    )
    refused(env, lambda: cash_out(env, bob, "0.01"), limit="daily_out")
    env.wallets.update_limits(
        ops,
        UpdateLimits(customer_id="c-bob", currency="PHP", limits=Limits(), reason="cleared"),
    )
    cash_out(env, bob, "100.00")

    updates = [e for e in env.events() if e.event_type == "wallet.limit.updated"]
    nothing = {k: None for k in Limits.model_fields}
    assert [(e.aggregate_id, e.aggregate_sequence) for e in updates] == [
        ("c-alice:PHP", 1),
        ("c-bob:PHP", 1),
        ("c-bob:PHP", 2),
    ]
    assert updates[0].payload == {
        "customer_id": "c-alice",
        "currency": "PHP",
        "old": nothing,
        "new": {**nothing, "daily_out": money_json("300.00")},
        "reason": "salary account, verified income",
        "changed_by": "risk-officer-7",
        "changed_by_kind": "user",
    }
    assert updates[2].payload["old"] == {**nothing, "daily_out": money_json("0.00")}
    assert updates[2].payload["new"] == nothing
    record = next(r for r in env.audit() if r.action == "wallet.update_limits")
    assert record.summary["after"]["daily_out"] == money_json("300.00")
    assert record.summary["reason"] == "salary account, verified income"


def test_update_limits_input_and_permission(env: WalletEnv) -> None:
    with pytest.raises(ValidationError):
        UpdateLimits(
            customer_id="c-1",
            currency="PHP",
            limits=Limits(daily_out=Money("1.00", "USD")),
            reason="x",
        )
    with pytest.raises(ValidationError):
        Limits(daily_out=php("-1.00"))
    with pytest.raises(ValidationError):
        UpdateLimits(customer_id="c-1", currency="PHP", limits=Limits(), reason="")
    clerk = context(roles=frozenset({"wallet.operator"}), actor="clerk")
    env.wallets.update_limits(
        clerk, UpdateLimits(customer_id="c-1", currency="PHP", limits=Limits(), reason="ok")
    )
    teller = context(roles=frozenset({"auditor"}), actor="teller")
    with pytest.raises(PermissionDenied):
        env.wallets.update_limits(
            teller, UpdateLimits(customer_id="c-1", currency="PHP", limits=Limits(), reason="no")
        )
    assert env.audit()[-1].outcome is Outcome.DENIED


def test_settings_are_validated(env: WalletEnv) -> None:
    with pytest.raises(ValidationError):
        env.configure(limits={"basic": {"PHP": Limits(daily_out=Money("1.00", "USD"))}})
    with pytest.raises(ValidationError):
        env.configure(timezone="Mars/Olympus")


def test_a_refund_is_a_transfer_back_checked_like_any_incoming_money(
    env: WalletEnv, pair: tuple[str, str]
) -> None:
    alice, _ = pair
    shop = env.open("m-shop", kind=WalletKind.MERCHANT, tier="merchant").id
    env.configure(
        limits={
            "basic": {"PHP": Limits(daily_out=php("100.00"), balance_cap=php("100.00"))},
            "merchant": {"PHP": Limits()},
        }
    )
    cash_in(env, alice, "100.00")
    pay_merchant(env, alice, shop, "60.00")
    transfer(env, shop, alice, "60.00")  # the shop refunds the order
    view = env.wallets.get_limits(env.ctx, "c-alice", "PHP")
    assert view.balance == php("100.00")
    # The refund does not give back the outgoing headroom the payment used...
    assert view.usage.daily_out == php("60.00")
    refused(env, lambda: pay_merchant(env, alice, shop, "40.01"), limit="daily_out")
    # ...and it is incoming money like any other: it cannot pass the customer's cap.
    cash_in(env, shop, "1.00")
    refused(env, lambda: transfer(env, shop, alice, "0.01"), side="receiver")
    assert env.audit()[-1].summary["limit_refusal"]["limit"] == "balance_cap"
