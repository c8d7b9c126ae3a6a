"""Tenant B can neither see nor change anything of tenant A's, whatever ids it guesses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import attrs
import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.audit import AuditRecord, Outcome, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import NotFound
from finfactory.kernel.money import Money, from_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import AccountNotFound
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds

A, B = "tenant-a", "tenant-b"
NOT_FOUND_CODES = {"ledger.account_not_found", "ledger.journal_not_found", "ledger.hold_not_found"}


def _ctx(tenant: str) -> RequestContext:
    return RequestContext(
        tenant_id=tenant, actor=Actor(f"ops-{tenant}", ActorKind.USER, frozenset({"admin"}))
    )


def php(minor: int) -> Money:
    return from_minor(minor, "PHP")


def transfer(reference: str, debit: str, credit: str, minor: int) -> c.PostJournal:
    return c.PostJournal(
        reference=reference,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=php(minor)),
            c.Leg(account_id=credit, direction="credit", amount=php(minor)),
        ],
    )


@attrs.frozen
class TenantBooks:
    cash: str
    wallet: str
    journal: str
    hold: str


def _books(ledger: LedgerService, tenant: str) -> TenantBooks:
    ctx = _ctx(tenant)
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset")).id
    wallet = ledger.open_account(
        ctx,
        c.OpenAccount(
            code="wallet",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    ).id
    journal = ledger.post_journal(ctx, transfer("fund", cash, wallet, 10_000)).id
    hold = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="hold", debit_account_id=wallet, credit_account_id=cash, amount=php(2_500)
        ),
    ).id
    return TenantBooks(cash, wallet, journal, hold)


@attrs.frozen
class Snapshot:
    accounts: tuple[c.AccountView, ...]
    journal: c.JournalView
    hold: c.HoldView
    statements: tuple[c.Statement, ...]
    events: tuple[EventEnvelope, ...]
    audit: tuple[AuditRecord, ...]


def _events(storage: Storage, tenant: str) -> tuple[EventEnvelope, ...]:
    with storage.read() as uow:
        return tuple(uow.kernel.read_events(0, 1_000_000, tenant))


def _audit(storage: Storage, tenant: str) -> tuple[AuditRecord, ...]:
    with storage.read() as uow:
        return tuple(uow.kernel.audit_records(tenant))


def _snapshot(ledger: LedgerService, storage: Storage, books: TenantBooks) -> Snapshot:
    ctx = _ctx(A)
    return Snapshot(
        accounts=tuple(ledger.get_account(ctx, a) for a in (books.cash, books.wallet)),
        journal=ledger.get_journal(ctx, books.journal),
        hold=ledger.get_hold(ctx, books.hold),
        statements=tuple(ledger.statement(ctx, a) for a in (books.cash, books.wallet)),
        events=_events(storage, A),
        audit=_audit(storage, A),
    )


def _attempts(
    ledger: LedgerService, a: TenantBooks, b: TenantBooks
) -> dict[str, Callable[[], object]]:
    ctx = _ctx(B)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    return {
        "get_account": lambda: ledger.get_account(ctx, a.wallet),
        "balance": lambda: ledger.balance(ctx, a.wallet),
        "statement": lambda: ledger.statement(ctx, a.wallet),
        "posted_balance_as_of": lambda: ledger.posted_balance_as_of(ctx, a.wallet, when),
        "get_journal": lambda: ledger.get_journal(ctx, a.journal),
        "get_hold": lambda: ledger.get_hold(ctx, a.hold),
        "post_journal with A's accounts": lambda: ledger.post_journal(
            ctx, transfer("steal-1", a.wallet, a.cash, 100)
        ),
        "post_journal from A's wallet into B's": lambda: ledger.post_journal(
            ctx, transfer("steal-2", a.wallet, b.wallet, 100)
        ),
        "post_journal from B's cash into A's wallet": lambda: ledger.post_journal(
            ctx, transfer("gift", b.cash, a.wallet, 100)
        ),
        "post_journals": lambda: ledger.post_journals(
            ctx,
            c.PostJournals(
                journals=[
                    transfer("batch-ok", b.cash, b.wallet, 1),
                    transfer("batch-steal", a.wallet, b.wallet, 1),
                ]
            ),
        ),
        "create_hold on A's accounts": lambda: ledger.create_hold(
            ctx,
            c.CreateHold(
                reference="h-steal",
                debit_account_id=a.wallet,
                credit_account_id=b.cash,
                amount=php(100),
            ),
        ),
        "capture A's hold": lambda: ledger.capture_hold(
            ctx, c.CaptureHold(hold_id=a.hold, reference="cap-steal")
        ),
        "void A's hold": lambda: ledger.void_hold(ctx, c.VoidHold(hold_id=a.hold)),
        "reverse A's journal": lambda: ledger.reverse_journal(
            ctx, c.ReverseJournal(journal_id=a.journal, reference="rev-steal")
        ),
        "freeze A's account": lambda: ledger.change_account_status(
            ctx, c.ChangeAccountStatus(account_id=a.wallet, status="frozen")
        ),
        "close A's account": lambda: ledger.change_account_status(
            ctx, c.ChangeAccountStatus(account_id=a.cash, status="closed")
        ),
    }


def test_tenant_b_cannot_read_or_change_tenant_a(ledger: LedgerService, storage: Storage) -> None:
    a = _books(ledger, A)
    b = _books(ledger, B)  # same codes and references in another tenant are fine
    before = _snapshot(ledger, storage, a)
    b_before = _snapshot_of_b(ledger, b)

    for name, attempt in _attempts(ledger, a, b).items():
        with pytest.raises(NotFound) as err:
            attempt()
        assert err.value.code in NOT_FOUND_CODES, (name, err.value)

    assert _snapshot(ledger, storage, a) == before
    assert _snapshot_of_b(ledger, b) == b_before
    # A still fully controls its own things: nothing was consumed by B's attempts
    ctx = _ctx(A)
    assert ledger.void_hold(ctx, c.VoidHold(hold_id=a.hold)).status == "voided"
    assert (
        ledger.reverse_journal(
            ctx, c.ReverseJournal(journal_id=a.journal, reference="rev")
        ).reverses_journal_id
        == a.journal
    )


def _snapshot_of_b(ledger: LedgerService, b: TenantBooks) -> tuple[object, ...]:
    ctx = _ctx(B)
    return (
        ledger.get_account(ctx, b.cash),
        ledger.get_account(ctx, b.wallet),
        ledger.statement(ctx, b.cash),
        ledger.statement(ctx, b.wallet),
        ledger.get_hold(ctx, b.hold),
    )


def test_find_and_list_accounts_see_only_the_own_tenant(ledger: LedgerService) -> None:
    a = _books(ledger, A)
    ledger.open_account(_ctx(A), c.OpenAccount(code="only-in-a", currency="PHP", type="asset"))
    b = _books(ledger, B)
    with pytest.raises(NotFound):
        ledger.find_account(_ctx(B), "only-in-a")
    assert ledger.find_account(_ctx(B), "wallet").id == b.wallet
    assert ledger.find_account(_ctx(A), "wallet").id == a.wallet
    assert {v.id for v in ledger.list_accounts(_ctx(B))} == {b.cash, b.wallet}
    assert {v.code for v in ledger.list_accounts(_ctx(A))} == {"cash", "wallet", "only-in-a"}


def test_idempotency_keys_are_per_tenant(ledger: LedgerService, storage: Storage) -> None:
    a = _books(ledger, A)
    b = _books(ledger, B)
    first_a = ledger.post_journal(
        _ctx(A), transfer("p-1", a.cash, a.wallet, 100), idempotency_key="shared-key"
    )
    # the same key in B with a different request is not a conflict, and runs
    first_b = ledger.post_journal(
        _ctx(B), transfer("p-9", b.cash, b.wallet, 900), idempotency_key="shared-key"
    )
    assert first_b.id != first_a.id
    assert first_b.reference == "p-9"
    # and the same key with an identical-looking request in B is not a replay of A's
    opened_a = ledger.open_account(
        _ctx(A), c.OpenAccount(code="x", currency="PHP", type="asset"), idempotency_key="k2"
    )
    opened_b = ledger.open_account(
        _ctx(B), c.OpenAccount(code="x", currency="PHP", type="asset"), idempotency_key="k2"
    )
    assert opened_a.id != opened_b.id
    # each tenant replays its own first outcome
    again_a = ledger.post_journal(
        _ctx(A), transfer("p-1", a.cash, a.wallet, 100), idempotency_key="shared-key"
    )
    again_b = ledger.post_journal(
        _ctx(B), transfer("p-9", b.cash, b.wallet, 900), idempotency_key="shared-key"
    )
    assert again_a == first_a
    assert again_b == first_b
    assert ledger.balance(_ctx(A), a.wallet).posted == php(10_100)
    assert ledger.balance(_ctx(B), b.wallet).posted == php(10_900)
    outcomes = {t: [r.outcome for r in _audit(storage, t)] for t in (A, B)}
    assert outcomes[A].count(Outcome.REPLAYED) == 1
    assert outcomes[B].count(Outcome.REPLAYED) == 1
    assert Outcome.CONFLICT not in outcomes[A] + outcomes[B]


def test_audit_chains_are_per_tenant(ledger: LedgerService, storage: Storage) -> None:
    _books(ledger, A)
    ledger.open_account(_ctx(B), c.OpenAccount(code="lonely", currency="PHP", type="asset"))
    _books(ledger, B)
    for tenant in (A, B):
        recs = _audit(storage, tenant)
        assert [r.sequence for r in recs] == list(range(1, len(recs) + 1))
        assert {r.tenant_id for r in recs} == {tenant}
        with storage.read() as uow:
            head = uow.kernel.audit_head(tenant)
        assert verify_chain(recs, head).ok
    assert len(_audit(storage, A)) == 4
    assert len(_audit(storage, B)) == 5
    with storage.read() as uow:
        assert uow.kernel.audit_head("tenant-c") is None
        assert list(uow.kernel.audit_records("tenant-c")) == []
    # one tenant's records cannot stand in for another's chain
    assert not verify_chain(_audit(storage, A), _head(storage, B)).ok


def _head(storage: Storage, tenant: str) -> tuple[int, str] | None:
    with storage.read() as uow:
        return uow.kernel.audit_head(tenant)


def test_a_command_naming_another_tenants_accounts_locks_none_of_them(
    pg_clean: sa.Engine,
) -> None:
    """On PostgreSQL, tenant B's refused command must not hold row locks on tenant A's
    accounts: inside a transaction B keeps open, those would stall A's payments."""
    storage = SqlStorage(pg_clean)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    books = _books(ledger, A)
    with pg_clean.connect() as conn, conn.begin():
        with SqlStorage.join(conn) as uow, pytest.raises(AccountNotFound):
            ledger.post_journal(_ctx(B), transfer("probe", books.wallet, books.cash, 1), uow=uow)
        with pg_clean.connect() as other, other.begin():
            locked = other.execute(
                sa.text("SELECT id FROM ledger_accounts WHERE id IN (:a, :b) FOR UPDATE NOWAIT"),
                {"a": books.wallet, "b": books.cash},
            ).all()
        assert len(locked) == 2  # NOWAIT raised LockNotAvailable while B held them
