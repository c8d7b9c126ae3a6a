"""Cash-in, cash-out, transfers and merchant payments: one ledger journal each, idempotent,
audited, authorized, and refused without a trace but the audit record."""

from __future__ import annotations

import pytest

from finfactory.kernel.audit import Outcome
from finfactory.kernel.authz import DEFAULT_ROLES, RoleBasedPolicy
from finfactory.kernel.errors import IdempotencyConflict, PermissionDenied, ValidationError
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import AccountType, OpenAccount
from finfactory.primitives.wallet import (
    CashIn,
    CashOut,
    DuplicateMovementReference,
    InsufficientFunds,
    InvalidSettlementAccount,
    MovementKind,
    NotAMerchantWallet,
    OpenWallet,
    PayMerchant,
    Transfer,
    WalletCurrencyMismatch,
    WalletKind,
    WalletNotFound,
)
from finfactory.testing.wallet import StaticCustomerTiers
from tests.wallet.conftest import WalletEnv, build_env, context, money_json, php


def cash_in(env: WalletEnv, wallet_id: str, amount: str, reference: str) -> CashIn:
    return CashIn(
        wallet_id=wallet_id,
        amount=php(amount),
        source_account_id=env.settlement,
        reference=reference,
        description="top-up",
    )


def test_each_movement_posts_one_journal_and_is_recorded(env: WalletEnv) -> None:
    alice = env.open("c-alice")
    bob = env.open("c-bob")
    shop = env.open("m-shop", kind=WalletKind.MERCHANT)

    moved_in = env.wallets.cash_in(env.ctx, cash_in(env, alice.id, "100.00", "topup-1"))
    assert moved_in.kind is MovementKind.CASH_IN
    assert (moved_in.from_wallet_id, moved_in.to_wallet_id) == (None, alice.id)
    assert moved_in.counterparty_account_id == env.settlement
    assert moved_in.model_dump(mode="json")["amount"] == money_json("100.00")
    journal = env.ledger.get_journal(env.ctx, moved_in.journal_id)
    assert journal.reference == "wallet:topup-1"
    assert [(leg.account_id, leg.direction.value) for leg in journal.legs] == [
        (env.settlement, "debit"),
        (alice.ledger_account_id, "credit"),
    ]

    sent = env.wallets.transfer(
        env.ctx,
        Transfer(
            from_wallet_id=alice.id, to_wallet_id=bob.id, amount=php("30.00"), reference="p2p-1"
        ),
    )
    paid = env.wallets.pay_merchant(
        env.ctx,
        PayMerchant(
            from_wallet_id=alice.id,
            merchant_wallet_id=shop.id,
            amount=php("20.50"),
            reference="order-1",
        ),
    )
    out = env.wallets.cash_out(
        env.ctx,
        CashOut(
            wallet_id=bob.id,
            amount=php("10.00"),
            destination_account_id=env.settlement,
            reference="payout-1",
        ),
    )
    assert (sent.kind, paid.kind, out.kind) == (
        MovementKind.TRANSFER,
        MovementKind.MERCHANT_PAYMENT,
        MovementKind.CASH_OUT,
    )
    assert env.posted(alice.id) == php("49.50")
    assert env.posted(bob.id) == php("20.00")
    assert env.posted(shop.id) == php("20.50")
    view = env.wallets.get_wallet(env.ctx, alice.id)
    assert view.available == php("49.50")
    # Money is conserved: the settlement account holds what the wallets owe.
    assert env.ledger.get_account(env.ctx, env.settlement).posted == php("90.00")

    history = env.wallets.history(env.ctx, alice.id)
    assert [m.reference for m in history] == ["order-1", "p2p-1", "topup-1"]
    assert history[1] == sent
    assert [m.reference for m in env.wallets.history(env.ctx, bob.id, limit=1)] == ["payout-1"]
    listed = env.wallets.list_wallets(env.ctx, "c-alice")
    assert [(w.id, w.posted) for w in listed] == [(alice.id, php("49.50"))]

    # The ledger published the money movements; the wallet published none of its own.
    types = [e.event_type for e in env.events()]
    assert types.count("journal.posted") == 4
    assert not [
        t for t in types if t.startswith("wallet.") and "created" not in t and "activated" not in t
    ]


def test_ledger_calls_run_as_the_wallet_service_actor(storage: Storage) -> None:
    """A customer-facing actor with wallet permissions only can move money."""
    policy = RoleBasedPolicy(
        roles={**DEFAULT_ROLES, "customer": frozenset({"wallet.transfer", "wallet.read"})}
    )
    env = build_env(storage, policy=policy)
    env.configure()
    alice, bob = env.open("c-alice"), env.open("c-bob")
    env.fund(alice.id, "10.00")
    customer = context(roles=frozenset({"customer"}), actor="app-user-1")
    moved = env.wallets.transfer(
        customer,
        Transfer(from_wallet_id=alice.id, to_wallet_id=bob.id, amount=php("4.00"), reference="t"),
    )
    assert env.wallets.get_wallet(customer, bob.id).posted == php("4.00")
    records = [r for r in env.audit() if r.trace_id == customer.trace_id]
    assert [(r.actor_id, r.action, r.outcome) for r in records] == [
        ("finfactory.wallet", "ledger.post_journal", Outcome.SUCCEEDED),
        ("app-user-1", "wallet.transfer", Outcome.SUCCEEDED),
    ]
    assert records[1].resource_id == moved.id
    # No ledger permission of its own.
    with pytest.raises(PermissionDenied):
        env.ledger.get_account(customer, alice.ledger_account_id)


def test_permission_denied_is_audited_and_writes_nothing(env: WalletEnv) -> None:
    alice = env.open("c-alice")
    viewer = context(roles=frozenset({"auditor"}), actor="viewer-1")
    before = env.row_counts()
    with pytest.raises(PermissionDenied):
        env.wallets.cash_in(viewer, cash_in(env, alice.id, "5.00", "r-1"))
    with pytest.raises(PermissionDenied):
        env.wallets.open_wallet(viewer, OpenWallet(customer_id="c-x", currency="PHP"))
    assert env.row_counts() == before
    denied = env.audit()[-2:]
    assert [(r.actor_id, r.action, r.outcome) for r in denied] == [
        ("viewer-1", "wallet.cash_in", Outcome.DENIED),
        ("viewer-1", "wallet.open_wallet", Outcome.DENIED),
    ]
    # The auditor may read.
    assert env.wallets.get_wallet(viewer, alice.id).posted == php("0.00")
    nobody = context(roles=frozenset(), actor="nobody")
    with pytest.raises(PermissionDenied):
        env.wallets.get_wallet(nobody, alice.id)
    assert (env.audit()[-1].action, env.audit()[-1].outcome) == ("wallet.read", Outcome.DENIED)


def test_idempotent_replay_and_conflict(env: WalletEnv) -> None:
    alice = env.open("c-alice")
    first = env.wallets.cash_in(
        env.ctx, cash_in(env, alice.id, "5.00", "r-1"), idempotency_key="k1"
    )
    again = env.wallets.cash_in(
        env.ctx, cash_in(env, alice.id, "5.00", "r-1"), idempotency_key="k1"
    )
    assert again == first
    assert env.posted(alice.id) == php("5.00")
    assert len(env.wallets.history(env.ctx, alice.id)) == 1
    assert env.audit()[-1].outcome is Outcome.REPLAYED
    with pytest.raises(IdempotencyConflict):
        env.wallets.cash_in(env.ctx, cash_in(env, alice.id, "6.00", "r-1"), idempotency_key="k1")
    # A refusal replays as the same refusal, even once it would succeed.
    refused = CashOut(
        wallet_id=alice.id,
        amount=php("9.00"),
        destination_account_id=env.settlement,
        reference="out-1",
    )
    with pytest.raises(InsufficientFunds):
        env.wallets.cash_out(env.ctx, refused, idempotency_key="k2")
    env.fund(alice.id, "10.00")
    with pytest.raises(InsufficientFunds):
        env.wallets.cash_out(env.ctx, refused, idempotency_key="k2")
    assert env.posted(alice.id) == php("15.00")


def test_a_reference_is_used_once(env: WalletEnv) -> None:
    alice = env.open("c-alice")
    env.wallets.cash_in(env.ctx, cash_in(env, alice.id, "5.00", "r-1"))
    before = env.row_counts()
    with pytest.raises(DuplicateMovementReference):
        env.wallets.cash_in(env.ctx, cash_in(env, alice.id, "5.00", "r-1"))
    assert env.row_counts() == before


def test_insufficient_funds_writes_nothing(env: WalletEnv) -> None:
    alice, bob = env.open("c-alice"), env.open("c-bob")
    env.fund(alice.id, "5.00")
    before = env.row_counts()
    limits_before = env.wallets.get_limits(env.ctx, "c-alice", "PHP")
    with pytest.raises(InsufficientFunds) as refused:
        env.wallets.transfer(
            env.ctx,
            Transfer(
                from_wallet_id=alice.id, to_wallet_id=bob.id, amount=php("5.01"), reference="t"
            ),
        )
    assert refused.value.code == "wallet.insufficient_funds"
    assert refused.value.details["wallet_id"] == alice.id
    assert env.row_counts() == before
    assert env.wallets.get_limits(env.ctx, "c-alice", "PHP") == limits_before
    last = env.audit()[-1]
    assert (last.action, last.outcome, last.actor_id) == (
        "wallet.transfer",
        Outcome.REJECTED,
        "ops-1",
    )
    # The refusal's record says what was attempted.
    assert last.summary["amount"] == money_json("5.01")
    assert (last.summary["from_wallet_id"], last.summary["to_wallet_id"]) == (alice.id, bob.id)
    assert last.reason.startswith("wallet.insufficient_funds")


def test_merchant_payments_need_a_merchant_wallet(env: WalletEnv) -> None:
    alice, bob = env.open("c-alice"), env.open("c-bob")
    env.fund(alice.id, "5.00")
    with pytest.raises(NotAMerchantWallet):
        env.wallets.pay_merchant(
            env.ctx,
            PayMerchant(
                from_wallet_id=alice.id,
                merchant_wallet_id=bob.id,
                amount=php("1.00"),
                reference="o",
            ),
        )


def test_input_checks(env: WalletEnv) -> None:
    alice = env.open("c-alice")
    with pytest.raises(ValidationError):
        Transfer(from_wallet_id=alice.id, to_wallet_id=alice.id, amount=php("1.00"), reference="t")
    with pytest.raises(ValidationError):
        cash_in(env, alice.id, "0.00", "r")
    with pytest.raises(ValidationError):
        cash_in(env, alice.id, "1.001", "r")
    from moneyed import Money

    with pytest.raises(WalletCurrencyMismatch):
        env.wallets.cash_in(
            env.ctx,
            CashIn(
                wallet_id=alice.id,
                amount=Money("1.00", "USD"),
                source_account_id=env.settlement,
                reference="usd",
            ),
        )
    with pytest.raises(WalletNotFound):
        env.wallets.cash_in(env.ctx, cash_in(env, "missing", "1.00", "r"))


def test_cash_in_only_from_a_settlement_account(env: WalletEnv) -> None:
    alice, bob = env.open("c-alice"), env.open("c-bob")
    env.fund(bob.id, "50.00")
    # Another wallet's ledger account would let bob's money leave without bob's checks.
    with pytest.raises(InvalidSettlementAccount):
        env.wallets.cash_in(
            env.ctx,
            CashIn(
                wallet_id=alice.id,
                amount=php("10.00"),
                source_account_id=bob.ledger_account_id,
                reference="steal",
            ),
        )
    other = env.ledger.open_account(
        env.ctx, OpenAccount(code="settlement.other", currency="PHP", type=AccountType.ASSET)
    )
    env.configure(settlement_account_ids=[env.settlement])
    with pytest.raises(InvalidSettlementAccount):
        env.wallets.cash_in(
            env.ctx,
            CashIn(
                wallet_id=alice.id, amount=php("1.00"), source_account_id=other.id, reference="x"
            ),
        )
    env.fund(alice.id, "1.00")
    assert env.posted(bob.id) == php("50.00")


def test_tenants_are_isolated(storage: Storage) -> None:
    env_a = build_env(storage)
    env_a.configure()
    alice = env_a.open("c-alice")
    env_a.fund(alice.id, "10.00")
    ctx_b = context(tenant="tenant-b", actor="ops-b")
    env_b = build_env(storage, ctx=ctx_b, id_namespace=2)
    env_b.configure()
    env_b.tiers.tiers.update(env_a.tiers.tiers)
    mallory = env_b.open("c-alice")
    with pytest.raises(WalletNotFound):
        env_b.wallets.get_wallet(ctx_b, alice.id)
    with pytest.raises(WalletNotFound):
        env_b.wallets.history(ctx_b, alice.id)
    with pytest.raises(WalletNotFound):
        env_b.wallets.transfer(
            ctx_b,
            Transfer(
                from_wallet_id=alice.id, to_wallet_id=mallory.id, amount=php("1.00"), reference="t"
            ),
        )
    assert [w.id for w in env_b.wallets.list_wallets(ctx_b, "c-alice")] == [mallory.id]
    assert env_b.wallets.get_limits(ctx_b, "c-alice", "PHP").balance == php("0.00")
    assert env_a.posted(alice.id) == php("10.00")
    assert not [e for e in env_b.events() if e.aggregate_id == alice.id]


def test_static_customer_tiers_is_a_customer_tiers() -> None:
    from finfactory.primitives.wallet import CustomerTiers

    tiers: CustomerTiers = StaticCustomerTiers({"c-1": "basic"})
    assert tiers.verified_tier(context(), "c-1") == "basic"
    assert tiers.verified_tier(context(), "c-2") is None


def test_runs_inside_the_callers_transaction(env: WalletEnv) -> None:
    """A product's own step and the wallet's posting commit, or roll back, together."""
    alice = env.open("c-alice")
    with pytest.raises(RuntimeError), env.storage.transaction() as tx:
        env.wallets.cash_in(env.ctx, cash_in(env, alice.id, "5.00", "r-1"), uow=tx)
        raise RuntimeError("the product's own step failed")
    assert env.posted(alice.id) == php("0.00")
    assert env.wallets.history(env.ctx, alice.id) == []
    with env.storage.transaction() as tx:
        moved = env.wallets.cash_in(env.ctx, cash_in(env, alice.id, "5.00", "r-1"), uow=tx)
        assert env.wallets.get_wallet(env.ctx, alice.id, uow=tx).posted == php("5.00")
    assert env.wallets.history(env.ctx, alice.id) == [moved]


def test_history_pages_with_a_cursor(env: WalletEnv) -> None:
    alice, bob, carol = env.open("c-alice"), env.open("c-bob"), env.open("c-carol")
    env.fund(bob.id, "100.00")
    expected: list[str] = []
    for n in range(7):  # alice's history mixes money in and out, and others' movements
        env.fund(alice.id, "1.00")
        expected.append(f"ref-{2 + 2 * n}")  # env.fund numbers its references
        env.fund(carol.id, "1.00")
        source, target = (alice, bob) if n % 2 else (bob, alice)
        env.wallets.transfer(
            env.ctx,
            Transfer(
                from_wallet_id=source.id,
                to_wallet_id=target.id,
                amount=php("0.50"),
                reference=f"p2p-{n}",
            ),
        )
        expected.append(f"p2p-{n}")
    expected.reverse()
    everything = [m.reference for m in env.wallets.history(env.ctx, alice.id)]
    assert everything == expected

    pages: list[list[str]] = []
    after: str | None = None
    for _ in range(len(expected)):  # bounded: a cursor that does not advance must not hang
        page = env.wallets.history(env.ctx, alice.id, limit=4, after=after)
        if not page:
            break
        pages.append([m.reference for m in page])
        if len(pages) == 1:  # a movement arriving meanwhile goes on top, not into the pages
            env.fund(alice.id, "1.00")
        after = page[-1].id
    assert [len(p) for p in pages] == [4, 4, 4, 2]
    assert [r for p in pages for r in p] == expected

    with pytest.raises(ValidationError) as bad:
        env.wallets.history(env.ctx, alice.id, after="no-such-movement")
    assert bad.value.field == "after"
    carols = env.wallets.history(env.ctx, carol.id, limit=1)[0].id
    with pytest.raises(ValidationError):  # a cursor from another wallet's history
        env.wallets.history(env.ctx, alice.id, after=carols)
