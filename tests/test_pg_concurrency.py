"""Concurrency on PostgreSQL: many threads share one LedgerService (and the engine's pool).

What must hold however the threads interleave: no lost update, no breached balance bound, no
deadlock, one journal per idempotency key, and a hold is captured at most once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
from finfactory.kernel.audit import Outcome, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import FinFactoryError, IdempotencyConflict
from finfactory.kernel.money import Money, from_minor
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import BalanceBoundExceeded, HoldNotPending
from finfactory.primitives.ledger.model import HoldStatus
from finfactory.primitives.ledger.service import LedgerService
from finfactory.primitives.ledger.tables import accounts, entries, journals
from finfactory.testing import ManualClock, SequentialIds

pytestmark = pytest.mark.postgres

TENANT = "conc-tenant"
JOIN_TIMEOUT = 60.0  # only to detect a hang; never asserted as a duration
THREADS = 8
OPS_PER_THREAD = 30
TOTAL_COLUMNS = ("debits_posted", "credits_posted", "debits_held", "credits_held")


def _ctx(tenant: str = TENANT) -> RequestContext:
    return RequestContext(
        tenant_id=tenant, actor=Actor("ops", ActorKind.SERVICE, frozenset({"admin"}))
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


def run_concurrently(workers: list[Callable[[], object]]) -> list[object]:
    """Start all workers together; return each one's result or the exception it raised."""
    barrier = threading.Barrier(len(workers), timeout=JOIN_TIMEOUT)
    results: list[object] = [None] * len(workers)

    def body(index: int, work: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = work()
        except BaseException as err:
            results[index] = err

    threads = [
        threading.Thread(target=body, args=(i, w), name=f"worker-{i}", daemon=True)
        for i, w in enumerate(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads never finished (deadlock or lost wake-up): {hung}"
    return results


@pytest.fixture
def pg_ledger(pg_clean: sa.Engine) -> LedgerService:
    return LedgerService(SqlStorage(pg_clean), default_policy(), ManualClock(), SequentialIds())


def _open(ledger: LedgerService, code: str, type_: str, bound: str = "none") -> str:
    view = ledger.open_account(
        _ctx(), c.OpenAccount(code=code, currency="PHP", type=type_, balance_bound=bound)
    )
    return view.id


def _statement(
    ledger: LedgerService, ctx: RequestContext, account_id: str
) -> list[c.StatementLine]:
    lines: list[c.StatementLine] = []
    after = 0
    while True:
        page = ledger.statement(ctx, account_id, after=after, limit=37)
        lines.extend(page.lines)
        if page.next_after is None:
            return lines
        after = page.next_after


class Book:
    """What the successful commands should have done to each account's totals."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[tuple[str, str], int] = defaultdict(int)
        self.journals = 0
        self.commands = 0

    def post(self, debit: str, credit: str, minor: int) -> None:
        with self.lock:
            self.totals[(debit, "debits_posted")] += minor
            self.totals[(credit, "credits_posted")] += minor
            self.journals += 1

    def hold(self, debit: str, credit: str, minor: int) -> None:
        with self.lock:
            self.totals[(debit, "debits_held")] += minor
            self.totals[(credit, "credits_held")] += minor

    def count_command(self) -> None:
        with self.lock:
            self.commands += 1


def test_concurrent_postings_and_holds_lose_nothing_and_respect_bounds(
    pg_ledger: LedgerService, pg_clean: sa.Engine
) -> None:
    ledger, ctx, book = pg_ledger, _ctx(), Book()
    funding = _open(ledger, "funding", "asset")
    merchant = _open(ledger, "merchant", "liability")
    wallets = [
        _open(ledger, f"wallet-{i}", "liability", "debits_must_not_exceed_credits")
        for i in range(3)
    ]
    book.commands += 5
    for i, w in enumerate(wallets):
        ledger.post_journal(ctx, transfer(f"seed-{i}", funding, w, 20_000))
        book.post(funding, w, 20_000)
        book.commands += 1

    pool_lock = threading.Lock()
    pending: list[tuple[str, str, str, int]] = []  # hold id, debit, credit, amount

    def worker(n: int) -> Counter[str]:
        rng = random.Random(7919 * (n + 1))
        outcome: Counter[str] = Counter()
        for k in range(OPS_PER_THREAD):
            ref = f"w{n}-op{k}"
            op = rng.choice(["transfer", "transfer", "spend", "topup", "hold", "settle", "settle"])
            src, dst = rng.sample(wallets, 2)
            amount = rng.randint(1, 3_000)
            if k == 0:
                # Every thread starts with a transfer no wallet can cover: the refusal path
                # runs under contention in every run, not only when the random walk drains
                # a wallet (which it did as few as twice in 240 operations).
                op, amount = "transfer", 10**9
            book.count_command()
            try:
                if op == "transfer":
                    ledger.post_journal(ctx, transfer(ref, src, dst, amount))
                    book.post(src, dst, amount)
                elif op == "spend":
                    ledger.post_journal(ctx, transfer(ref, src, merchant, amount))
                    book.post(src, merchant, amount)
                elif op == "topup":
                    ledger.post_journal(ctx, transfer(ref, funding, dst, amount // 3 + 1))
                    book.post(funding, dst, amount // 3 + 1)
                elif op == "hold":
                    hold = ledger.create_hold(
                        ctx,
                        c.CreateHold(
                            reference=ref,
                            debit_account_id=src,
                            credit_account_id=merchant,
                            amount=php(amount),
                        ),
                    )
                    book.hold(src, merchant, amount)
                    with pool_lock:
                        pending.append((hold.id, src, merchant, amount))
                else:
                    with pool_lock:
                        picked = pending.pop(rng.randrange(len(pending))) if pending else None
                    if picked is None:
                        ledger.post_journal(ctx, transfer(ref, funding, dst, 1))
                        book.post(funding, dst, 1)
                        outcome["topup"] += 1
                        continue
                    hold_id, debit, credit, held = picked
                    mode = rng.choice(["full", "partial", "void"])
                    if mode == "void":
                        ledger.void_hold(ctx, c.VoidHold(hold_id=hold_id))
                    else:
                        take = held if mode == "full" else rng.randint(1, held)
                        ledger.capture_hold(
                            ctx,
                            c.CaptureHold(
                                hold_id=hold_id,
                                reference=ref,
                                amount=None if mode == "full" else php(take),
                            ),
                        )
                        book.post(debit, credit, take)
                    book.hold(debit, credit, -held)
                    op = mode
                outcome[op] += 1
            except BalanceBoundExceeded:
                assert op in ("transfer", "spend", "hold"), op
                outcome["refused:" + op] += 1
        return outcome

    results = run_concurrently([partial(worker, n) for n in range(THREADS)])
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"unexpected failures: {errors!r}"
    done: Counter[str] = Counter()
    for r in results:
        assert isinstance(r, Counter)
        done.update(r)
    # the scenario really exercised contention on every path
    for kind in ("transfer", "spend", "hold", "full", "partial", "void", "refused:transfer"):
        assert done[kind] > 0, (kind, dict(done))

    with pg_clean.connect() as conn:
        rows = {
            r.id: r for r in conn.execute(sa.select(accounts).where(accounts.c.tenant_id == TENANT))
        }
        journal_count = conn.execute(
            sa.select(sa.func.count()).select_from(journals).where(journals.c.tenant_id == TENANT)
        ).scalar_one()
        unbalanced = conn.execute(
            sa.text(
                "SELECT journal_id FROM ledger_entries GROUP BY journal_id, currency HAVING"
                " SUM(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0"
            )
        ).all()
        entry_counts: dict[str, int] = {
            account_id: count
            for account_id, count in conn.execute(
                sa.select(entries.c.account_id, sa.func.count()).group_by(entries.c.account_id)
            )
        }

    assert journal_count == book.journals
    assert unbalanced == []
    for account_id, row in rows.items():
        for col in TOTAL_COLUMNS:
            assert getattr(row, col) == book.totals[(account_id, col)], (row.code, col)
        assert entry_counts.get(account_id, 0) == row.entry_count
        if row.balance_bound == "debits_must_not_exceed_credits":
            assert row.debits_posted + row.debits_held <= row.credits_posted, row.code

        # the statement is gapless and its running balance ends at the posted balance
        lines = _statement(ledger, ctx, account_id)
        assert [line.sequence for line in lines] == list(range(1, row.entry_count + 1))
        sign = 1 if row.type == "asset" else -1
        running = 0
        for line in lines:
            minor = int(line.amount.amount * 100)
            running += sign * minor if line.direction == "debit" else -sign * minor
            assert line.balance_after == php(running), (row.code, line.sequence)
            if row.balance_bound == "debits_must_not_exceed_credits":
                assert running >= 0
        view = ledger.balance(ctx, account_id)
        expected_posted = sign * (row.debits_posted - row.credits_posted)
        assert view.posted == php(running) == php(expected_posted)
        held = row.credits_held if row.type == "asset" else row.debits_held
        assert view.held == php(held)
        assert view.available == php(expected_posted - held)

    # pending holds in the database are exactly the ones no thread settled
    with pg_clean.connect() as conn:
        still_pending = set(
            conn.execute(
                sa.text("SELECT id FROM ledger_holds WHERE tenant_id = :t AND status = 'pending'"),
                {"t": TENANT},
            ).scalars()
        )
    assert still_pending == {p[0] for p in pending}

    storage = SqlStorage(pg_clean)
    with storage.read() as uow:
        records = list(uow.kernel.audit_records(TENANT))
        assert verify_chain(records, uow.kernel.audit_head(TENANT)).ok
        events = uow.kernel.read_events(0, 100_000, TENANT)
    assert len(records) == book.commands  # every command audited exactly once
    per_aggregate: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in events:
        per_aggregate[(e.aggregate_type, e.aggregate_id)].append(e.aggregate_sequence)
    for key, seqs in per_aggregate.items():
        assert seqs == list(range(1, len(seqs) + 1)), key


def test_same_idempotency_key_concurrently_posts_exactly_once(
    pg_ledger: LedgerService, pg_clean: sa.Engine
) -> None:
    ledger, ctx = pg_ledger, _ctx()
    cash = _open(ledger, "cash", "asset")
    wallet = _open(ledger, "wallet", "liability")
    request = transfer("pay-once", cash, wallet, 1_234)

    results = run_concurrently(
        [lambda: ledger.post_journal(ctx, request, idempotency_key="same-key")] * THREADS
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"unexpected failures: {errors!r}"
    first = results[0]
    assert isinstance(first, c.JournalView)
    assert all(r == first for r in results)
    with pg_clean.connect() as conn:
        refs = (
            conn.execute(sa.select(journals.c.id).where(journals.c.reference == "pay-once"))
            .scalars()
            .all()
        )
    assert refs == [first.id]
    assert ledger.balance(ctx, wallet).posted == php(1_234)
    assert ledger.balance(ctx, cash).posted == php(1_234)

    with SqlStorage(pg_clean).read() as uow:
        outcomes = Counter(
            r.outcome for r in uow.kernel.audit_records(TENANT) if r.action == "ledger.post_journal"
        )
        posted = [
            e for e in uow.kernel.read_events(0, 1000, TENANT) if e.event_type == "journal.posted"
        ]
    assert outcomes == {Outcome.SUCCEEDED: 1, Outcome.REPLAYED: THREADS - 1}
    assert len(posted) == 1


def test_same_key_different_requests_concurrently_one_wins_rest_conflict(
    pg_ledger: LedgerService,
) -> None:
    ledger, ctx = pg_ledger, _ctx()
    cash = _open(ledger, "cash", "asset")
    wallet = _open(ledger, "wallet", "liability")

    def attempt(n: int) -> c.JournalView:
        return ledger.post_journal(
            ctx, transfer(f"ref-{n}", cash, wallet, 100 + n), idempotency_key="contested"
        )

    results = run_concurrently([partial(attempt, n) for n in range(THREADS)])

    winners = [r for r in results if isinstance(r, c.JournalView)]
    assert len(winners) == 1
    assert all(isinstance(r, IdempotencyConflict) for r in results if r is not winners[0])
    assert ledger.balance(ctx, wallet).posted == winners[0].legs[1].amount


@pytest.mark.parametrize("rival", ["capture", "void"])
def test_a_hold_settled_concurrently_by_two_threads_settles_once(
    pg_ledger: LedgerService, pg_clean: sa.Engine, rival: str
) -> None:
    ledger, ctx = pg_ledger, _ctx()
    wallet = _open(ledger, "wallet", "liability", "debits_must_not_exceed_credits")
    funding = _open(ledger, "funding", "asset")
    merchant = _open(ledger, "merchant", "liability")
    ledger.post_journal(ctx, transfer("fund", funding, wallet, 10_000))

    for round_ in range(4):
        hold = ledger.create_hold(
            ctx,
            c.CreateHold(
                reference=f"h{round_}",
                debit_account_id=wallet,
                credit_account_id=merchant,
                amount=php(1_000),
            ),
        )
        before = ledger.balance(ctx, wallet)

        def capture(tag: str, hold_id: str = hold.id, r: int = round_) -> c.HoldView:
            return ledger.capture_hold(
                ctx, c.CaptureHold(hold_id=hold_id, reference=f"cap-{r}-{tag}")
            )

        def void(hold_id: str = hold.id) -> c.HoldView:
            return ledger.void_hold(ctx, c.VoidHold(hold_id=hold_id))

        second: Callable[[], object] = (lambda: capture("b")) if rival == "capture" else void
        results = run_concurrently([lambda: capture("a"), second])

        wins = [r for r in results if isinstance(r, c.HoldView)]
        losses = [r for r in results if not isinstance(r, c.HoldView)]
        assert len(wins) == 1, results
        assert len(losses) == 1, results
        assert isinstance(losses[0], HoldNotPending), results
        final = ledger.get_hold(ctx, hold.id)
        assert final == wins[0]
        after = ledger.balance(ctx, wallet)
        assert after.held == before.held - php(1_000)
        with pg_clean.connect() as conn:
            capture_journals = conn.execute(
                sa.text("SELECT count(*) FROM ledger_journals WHERE reference LIKE :p"),
                {"p": f"cap-{round_}-%"},
            ).scalar_one()
        if final.status is HoldStatus.CAPTURED:
            assert capture_journals == 1
            assert after.posted == before.posted - php(1_000)
        else:
            assert final.status is HoldStatus.VOIDED
            assert capture_journals == 0
            assert after.posted == before.posted


@pytest.mark.parametrize("what", ["journal_reference", "account_code", "hold_reference"])
def test_concurrent_duplicates_lose_with_a_finfactory_error(
    pg_ledger: LedgerService, pg_clean: sa.Engine, what: str
) -> None:
    """Two requests race for the same unique reference: the first is still uncommitted when
    the second checks for duplicates. The loser must get an SDK error (ideally the same
    DuplicateReference/DuplicateAccountCode a sequential caller gets, at least
    IntegrityViolation), never a raw driver exception."""
    ledger, ctx = pg_ledger, _ctx()
    cash = _open(ledger, "cash", "asset")
    wallet = _open(ledger, "wallet", "liability")

    def attempt(n: int, uow: SqlUnitOfWork | None = None) -> object:
        if what == "journal_reference":
            return ledger.post_journal(ctx, transfer("same-ref", cash, wallet, 100 + n), uow=uow)
        if what == "account_code":
            return ledger.open_account(
                ctx, c.OpenAccount(code="same-code", currency="PHP", type="asset"), uow=uow
            )
        return ledger.create_hold(
            ctx,
            c.CreateHold(
                reference="same-hold",
                debit_account_id=cash,
                credit_account_id=wallet,
                amount=php(100 + n),
            ),
            uow=uow,
        )

    loser = _race(pg_clean, lambda uow: attempt(1, uow), lambda: attempt(2))
    assert isinstance(loser, FinFactoryError), (
        f"loser got {type(loser).__module__}.{type(loser).__name__}: {loser}"
    )
    # The runner retries a transaction it owns that lost such a race, so the loser gets the
    # same audited domain rejection a sequential caller gets.
    expected = (
        "ledger.duplicate_account_code"
        if what == "account_code"
        else ("ledger.duplicate_reference")
    )
    assert loser.code == expected


@pytest.mark.parametrize("what", ["journal", "batch", "hold", "reversal"])
def test_a_race_loser_on_a_bounded_account_gets_the_answer_a_sequential_caller_gets(
    pg_ledger: LedgerService, pg_clean: sa.Engine, what: str
) -> None:
    """The winner spends most of a wallet that must not go below zero. The loser (same
    reference, or reversing the same journal) used to be checked for duplicates before it
    waited for the wallet's lock, and then judged on a balance that already held the winner's
    journal: "insufficient funds" instead of "already used"/"already reversed", and that
    wrong answer was stored under its idempotency key."""
    ledger, ctx = pg_ledger, _ctx()
    cash = _open(ledger, "cash", "asset")
    wallet = _open(ledger, "wallet", "liability", "debits_must_not_exceed_credits")
    shop = _open(ledger, "shop", "liability")
    funding = ledger.post_journal(ctx, transfer("funding", cash, wallet, 1_000))
    payment = transfer("payment", wallet, shop, 800)

    def attempt(uow: SqlUnitOfWork | None = None, key: str | None = None) -> object:
        if what == "journal":
            return ledger.post_journal(ctx, payment, uow=uow, idempotency_key=key)
        if what == "batch":
            batch = c.PostJournals(journals=[payment])
            return ledger.post_journals(ctx, batch, uow=uow, idempotency_key=key)
        if what == "hold":
            hold = c.CreateHold(
                reference="hold", debit_account_id=wallet, credit_account_id=shop, amount=php(800)
            )
            return ledger.create_hold(ctx, hold, uow=uow, idempotency_key=key)
        reversal = c.ReverseJournal(journal_id=funding.id, reference=f"reversal-{key}")
        return ledger.reverse_journal(ctx, reversal, uow=uow, idempotency_key=key)

    loser = _race(pg_clean, attempt, lambda: attempt(key="retry"))
    expected = "ledger.already_reversed" if what == "reversal" else "ledger.duplicate_reference"
    assert isinstance(loser, FinFactoryError), loser
    assert loser.code == expected
    with pytest.raises(FinFactoryError) as replayed:
        attempt(key="retry")
    assert replayed.value.code == expected
    assert ledger.balance(ctx, wallet).available == php(0 if what == "reversal" else 200)


def _race(
    engine: sa.Engine, first: Callable[[SqlUnitOfWork], object], second: Callable[[], object]
) -> object:
    """Run ``first`` in a caller's transaction, held open until ``second`` (in a thread, in
    its own transaction) waits for a lock; commit; return what ``second`` gave or raised."""
    results: list[object] = []

    def run_second() -> None:
        try:
            results.append(second())
        except BaseException as err:
            results.append(err)

    with engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            first(uow)
        waiting = _lock_waiters(engine)
        racer = threading.Thread(target=run_second, daemon=True)
        racer.start()
        _wait_for(lambda: _lock_waiters(engine) > waiting, "the second request to block")
        tx.commit()
    racer.join(JOIN_TIMEOUT)
    assert not racer.is_alive(), "second request hung"
    [outcome] = results
    return outcome


def _lock_waiters(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_capture_racing_hold_expiry_on_a_shared_account_does_not_deadlock(
    pg_clean: sa.Engine,
) -> None:
    """A capture that starts just before a hold's expiry and an expiry job that starts just
    after it run at the same time. expire_holds locks its due holds in id order, then their
    accounts; the capture locks hold 2, then the same accounts. Both must finish (one of them
    wins)."""
    storage, ids, ctx = SqlStorage(pg_clean), SequentialIds(), _ctx()
    before_expiry, after_expiry = ManualClock(), ManualClock()
    capturer = LedgerService(storage, default_policy(), before_expiry, ids)
    expirer = LedgerService(storage, default_policy(), after_expiry, ids)
    wallet = _open(capturer, "wallet", "asset")
    merchant = _open(capturer, "merchant", "liability")
    other = _open(capturer, "other", "liability")
    expires = before_expiry.now() + timedelta(seconds=60)
    first = capturer.create_hold(
        ctx,
        c.CreateHold(
            reference="h1",
            debit_account_id=merchant,
            credit_account_id=wallet,
            amount=php(100),
            expires_at=expires,
        ),
    )
    second = capturer.create_hold(
        ctx,
        c.CreateHold(
            reference="h2",
            debit_account_id=other,
            credit_account_id=wallet,
            amount=php(100),
            expires_at=expires,
        ),
    )
    assert first.id < second.id  # expire_holds visits them in this order
    before_expiry.advance(timedelta(seconds=59))
    after_expiry.advance(timedelta(seconds=61))

    results: dict[str, object] = {}

    def run(name: str, work: Callable[[], object]) -> None:
        try:
            results[name] = work()
        except BaseException as err:
            results[name] = err

    # A third transaction holds the wallet row so both commands queue up behind it in a
    # known order: the expiry job first (holding hold 1), then the capture (holding hold 2).
    with pg_clean.connect() as blocker:
        tx = blocker.begin()
        with SqlStorage.join(blocker) as uow:
            capturer.post_journal(ctx, transfer("blocker", wallet, merchant, 1), uow=uow)
        waiting = _lock_waiters(pg_clean)
        expiry = threading.Thread(
            target=run, args=("expire", lambda: expirer.expire_holds(ctx)), daemon=True
        )
        expiry.start()
        _wait_for(lambda: _lock_waiters(pg_clean) > waiting, "the expiry job to block")
        capture = threading.Thread(
            target=run,
            args=(
                "capture",
                lambda: capturer.capture_hold(
                    ctx, c.CaptureHold(hold_id=second.id, reference="cap-2")
                ),
            ),
            daemon=True,
        )
        capture.start()
        _wait_for(lambda: _lock_waiters(pg_clean) > waiting + 1, "the capture to block")
        tx.commit()
    expiry.join(JOIN_TIMEOUT)
    capture.join(JOIN_TIMEOUT)
    assert not expiry.is_alive(), "expiry job hung"
    assert not capture.is_alive(), "capture hung"

    expired, captured = results["expire"], results["capture"]
    assert isinstance(expired, c.ExpiredHolds), results
    assert isinstance(captured, (c.HoldView, HoldNotPending)), results
    final = capturer.get_hold(ctx, second.id)
    if isinstance(captured, c.HoldView):
        assert final.status is HoldStatus.CAPTURED
        assert expired.hold_ids == [first.id]
    else:
        assert final.status is HoldStatus.EXPIRED
        assert expired.hold_ids == [first.id, second.id]
    assert capturer.get_hold(ctx, first.id).status is HoldStatus.EXPIRED
    assert capturer.balance(ctx, wallet).held == php(0)
