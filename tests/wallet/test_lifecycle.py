"""created -> active -> suspended <-> active -> closed, KYC-gated activation, and what each
status lets a wallet do."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from finfactory.kernel.audit import Outcome
from finfactory.kernel.errors import ValidationError
from finfactory.primitives.ledger import AccountStatus, AccountType, BalanceBound
from finfactory.primitives.wallet import (
    ActivateWallet,
    CashIn,
    CashOut,
    CloseWallet,
    InvalidTransition,
    KycRequired,
    Limits,
    OpenWallet,
    PayMerchant,
    SuspendWallet,
    TierNotAllowed,
    TooManyWallets,
    Transfer,
    WalletKind,
    WalletNotActive,
    WalletNotEmpty,
    WalletNotFound,
    WalletStatus,
)
from tests.wallet.conftest import WalletEnv, php


def test_open_creates_a_wallet_backed_by_a_bounded_liability_account(env: WalletEnv) -> None:
    view = env.wallets.open_wallet(
        env.ctx, OpenWallet(customer_id="c-1", currency="PHP", metadata={"channel": "app"})
    )
    assert view.status is WalletStatus.CREATED
    assert view.kind is WalletKind.PERSONAL
    assert view.posted == view.available == php("0.00")
    assert view.metadata == {"channel": "app"}
    account = env.ledger.get_account(env.ctx, view.ledger_account_id)
    assert account.type is AccountType.LIABILITY
    assert account.balance_bound is BalanceBound.DEBITS_NOT_OVER_CREDITS
    created = [e for e in env.events() if e.event_type == "wallet.created"]
    assert [e.payload for e in created] == [
        {
            "wallet_id": view.id,
            "customer_id": "c-1",
            "currency": "PHP",
            "kind": "personal",
            "status": "created",
            "ledger_account_id": view.ledger_account_id,
        }
    ]
    assert created[0].aggregate_sequence == 1
    # The customer's metadata never travels in an event.
    assert "app" not in str([e.payload for e in env.events()])


def test_open_refuses_an_unknown_currency_and_too_many_wallets(env: WalletEnv) -> None:
    with pytest.raises(ValidationError):
        env.wallets.open_wallet(env.ctx, OpenWallet(customer_id="c-1", currency="XXY"))
    env.configure(max_wallets_per_customer=2)
    first = env.open("c-1", activate=False)
    env.open("c-1", activate=False)
    with pytest.raises(TooManyWallets):
        env.open("c-1", activate=False)
    # A closed wallet no longer counts.
    env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=first.id, reason="duplicate"))
    assert env.open("c-1", activate=False).status is WalletStatus.CREATED


def test_activation_needs_a_verified_tier_with_limits_for_the_currency(env: WalletEnv) -> None:
    wallet = env.open("c-1", tier=None, activate=False)
    before = env.row_counts()
    with pytest.raises(KycRequired) as refused:
        env.wallets.activate_wallet(env.ctx, ActivateWallet(wallet_id=wallet.id))
    assert refused.value.code == "wallet.kyc_required"
    assert env.row_counts() == before
    last = env.audit()[-1]
    assert (last.action, last.outcome) == ("wallet.activate_wallet", Outcome.REJECTED)
    assert env.wallets.get_wallet(env.ctx, wallet.id).status is WalletStatus.CREATED

    # Verified, but the tenant lets only "full" hold PHP wallets.
    env.configure(limits={"full": {"PHP": Limits()}})
    env.tiers.tiers["c-1"] = "basic"
    with pytest.raises(TierNotAllowed):
        env.wallets.activate_wallet(env.ctx, ActivateWallet(wallet_id=wallet.id))
    env.tiers.tiers["c-1"] = "full"
    active = env.wallets.activate_wallet(
        env.ctx, ActivateWallet(wallet_id=wallet.id, reason="KYC passed")
    )
    assert active.status is WalletStatus.ACTIVE
    activated = [e for e in env.events() if e.event_type == "wallet.activated"]
    assert [e.payload for e in activated] == [
        {
            "wallet_id": wallet.id,
            "customer_id": "c-1",
            "previous_status": "created",
            "kyc_tier": "full",
            "reason": "KYC passed",
        }
    ]
    # The KYC lookup was made as the wallet's service actor, not as the caller.
    assert env.tiers.calls[-1] == ("finfactory.wallet", "c-1")


def test_suspend_and_reactivate_and_close(env: WalletEnv) -> None:
    wallet = env.open("c-1")
    suspended = env.wallets.suspend_wallet(
        env.ctx, SuspendWallet(wallet_id=wallet.id, reason="chargeback review")
    )
    assert suspended.status is WalletStatus.SUSPENDED
    # Reactivation checks KYC again.
    env.tiers.tiers["c-1"] = None
    with pytest.raises(KycRequired):
        env.wallets.activate_wallet(env.ctx, ActivateWallet(wallet_id=wallet.id))
    env.tiers.tiers["c-1"] = "basic"
    assert (
        env.wallets.activate_wallet(env.ctx, ActivateWallet(wallet_id=wallet.id)).status
        is WalletStatus.ACTIVE
    )
    closed = env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=wallet.id, reason="asked"))
    assert closed.status is WalletStatus.CLOSED
    assert env.ledger.get_account(env.ctx, wallet.ledger_account_id).status is AccountStatus.CLOSED

    mine = [e for e in env.events() if e.aggregate_id == wallet.id]
    assert [(e.event_type, e.aggregate_sequence) for e in mine] == [
        ("wallet.created", 1),
        ("wallet.activated", 2),
        ("wallet.suspended", 3),
        ("wallet.activated", 4),
        ("wallet.closed", 5),
    ]
    assert mine[2].payload == {
        "wallet_id": wallet.id,
        "customer_id": "c-1",
        "reason": "chargeback review",
    }
    assert mine[4].payload["previous_status"] == "active"


@pytest.mark.parametrize(
    ("start", "step"),
    [
        ("created", "suspend"),
        ("active", "activate"),
        ("suspended", "suspend"),
        ("closed", "activate"),
        ("closed", "suspend"),
        ("closed", "close"),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(
    env: WalletEnv, start: str, step: str
) -> None:
    wallet = env.open("c-1", activate=start != "created")
    if start == "suspended":
        env.wallets.suspend_wallet(env.ctx, SuspendWallet(wallet_id=wallet.id, reason="r"))
    if start == "closed":
        env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=wallet.id, reason="r"))
    before = env.row_counts()
    with pytest.raises(InvalidTransition) as refused:
        if step == "activate":
            env.wallets.activate_wallet(env.ctx, ActivateWallet(wallet_id=wallet.id))
        elif step == "suspend":
            env.wallets.suspend_wallet(env.ctx, SuspendWallet(wallet_id=wallet.id, reason="r"))
        else:
            env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=wallet.id, reason="r"))
    assert refused.value.details["status"] == start
    assert env.row_counts() == before
    assert env.wallets.get_wallet(env.ctx, wallet.id).status.value == start


def test_unknown_wallet(env: WalletEnv) -> None:
    with pytest.raises(WalletNotFound):
        env.wallets.suspend_wallet(env.ctx, SuspendWallet(wallet_id="nope", reason="r"))
    with pytest.raises(WalletNotFound):
        env.wallets.get_wallet(env.ctx, "nope")


def test_close_needs_a_zero_balance(env: WalletEnv) -> None:
    wallet = env.open("c-1")
    env.fund(wallet.id, "10.00")
    with pytest.raises(WalletNotEmpty):
        env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=wallet.id, reason="asked"))
    assert env.wallets.get_wallet(env.ctx, wallet.id).status is WalletStatus.ACTIVE
    env.wallets.cash_out(
        env.ctx,
        CashOut(
            wallet_id=wallet.id,
            amount=php("10.00"),
            destination_account_id=env.settlement,
            reference="payout-1",
        ),
    )
    closed = env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=wallet.id, reason="asked"))
    assert closed.status is WalletStatus.CLOSED
    # Closed refuses credits too.
    with pytest.raises(WalletNotActive):
        env.fund(wallet.id, "1.00")


def test_close_refuses_pending_holds_on_the_account(env: WalletEnv) -> None:
    from finfactory.primitives.ledger import CreateHold

    wallet = env.open("c-1")
    env.fund(wallet.id, "10.00")
    env.ledger.create_hold(
        env.ctx,
        CreateHold(
            reference="h-1",
            debit_account_id=wallet.ledger_account_id,
            credit_account_id=env.settlement,
            amount=php("10.00"),
        ),
    )
    # Posted 10.00, all of it held: still not closable.
    with pytest.raises(WalletNotEmpty):
        env.wallets.close_wallet(env.ctx, CloseWallet(wallet_id=wallet.id, reason="asked"))


def test_suspended_wallet_refuses_debits_but_receives_money(env: WalletEnv) -> None:
    wallet = env.open("c-1")
    other = env.open("c-2")
    shop = env.open("m-1", kind=WalletKind.MERCHANT)
    env.fund(wallet.id, "50.00")
    env.fund(other.id, "50.00")
    env.wallets.suspend_wallet(env.ctx, SuspendWallet(wallet_id=wallet.id, reason="review"))
    before = env.row_counts()
    debits: list[Callable[[], object]] = [
        lambda: env.wallets.cash_out(
            env.ctx,
            CashOut(
                wallet_id=wallet.id,
                amount=php("1.00"),
                destination_account_id=env.settlement,
                reference="x-1",
            ),
        ),
        lambda: env.wallets.transfer(
            env.ctx,
            Transfer(
                from_wallet_id=wallet.id, to_wallet_id=other.id, amount=php("1.00"), reference="x-2"
            ),
        ),
        lambda: env.wallets.pay_merchant(
            env.ctx,
            PayMerchant(
                from_wallet_id=wallet.id,
                merchant_wallet_id=shop.id,
                amount=php("1.00"),
                reference="x-3",
            ),
        ),
    ]
    for debit in debits:
        with pytest.raises(WalletNotActive) as refused:
            debit()
        assert refused.value.details["status"] == "suspended"
    assert env.row_counts() == before
    # Credits still arrive.
    env.fund(wallet.id, "5.00")
    env.wallets.transfer(
        env.ctx,
        Transfer(
            from_wallet_id=other.id, to_wallet_id=wallet.id, amount=php("5.00"), reference="in"
        ),
    )
    assert env.posted(wallet.id) == php("60.00")


def test_created_wallet_neither_sends_nor_receives(env: WalletEnv) -> None:
    wallet = env.open("c-1", activate=False)
    with pytest.raises(WalletNotActive):
        env.wallets.cash_in(
            env.ctx,
            CashIn(
                wallet_id=wallet.id,
                amount=php("1.00"),
                source_account_id=env.settlement,
                reference="r-1",
            ),
        )
