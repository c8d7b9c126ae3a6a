"""Regressions for review findings: lock order in caller transactions, stuck idempotency
keys, consistent audit verification, clocks outside UTC, tiny exponents."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel import AuditTrail, MoneyError, default_policy, to_minor
from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import LedgerSettings
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds
from tests.conftest import context, make_storage


def _pair(ledger: LedgerService, tag: str) -> tuple[str, str]:
    ctx = context()
    a = ledger.open_account(ctx, c.OpenAccount(code=f"a-{tag}", currency="PHP", type="asset"))
    b = ledger.open_account(ctx, c.OpenAccount(code=f"b-{tag}", currency="PHP", type="liability"))
    return a.id, b.id


def _move(ref: str, debit: str, credit: str) -> c.PostJournal:
    amount = Money("1.00", "PHP")
    return c.PostJournal(
        reference=ref,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=amount),
            c.Leg(account_id=credit, direction="credit", amount=amount),
        ],
    )


def test_two_commands_in_a_caller_transaction_do_not_deadlock_a_concurrent_one(
    pg_clean: sa.Engine,
) -> None:
    ledger = LedgerService(SqlStorage(pg_clean), default_policy(), ManualClock(), SequentialIds())
    a, b = _pair(ledger, "1")
    cc, d = _pair(ledger, "2")
    errors: list[BaseException] = []
    with pg_clean.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            ledger.post_journal(context(), _move("t1-ab", a, b), uow=uow)

            def other() -> None:
                try:
                    ledger.post_journal(context(), _move("t2-cd", cc, d))
                except BaseException as err:  # pragma: no cover - reported below
                    errors.append(err)

            racer = threading.Thread(target=other)
            racer.start()
            time.sleep(0.3)  # let the other transaction lock C/D and reach its commit path
            ledger.post_journal(context(), _move("t1-cd", cc, d), uow=uow)
        tx.commit()
        racer.join(30)
    assert not racer.is_alive()
    assert errors == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_unexpected_failure_in_a_caller_transaction_does_not_burn_the_key(
    backend: str, request: pytest.FixtureRequest
) -> None:
    storage = make_storage(backend, request)
    assert isinstance(storage, SqlStorage)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    a, b = _pair(ledger, "k")
    calls = 0

    def failing_store(uow: object) -> object:
        nonlocal calls
        calls += 1
        raise RuntimeError("store outage")

    broken = LedgerService(storage, default_policy(), ManualClock(), SequentialIds(), failing_store)  # type: ignore[arg-type]
    with storage.engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            with pytest.raises(RuntimeError):
                broken.post_journal(context(), _move("r-1", a, b), idempotency_key="K", uow=uow)
            result = ledger.post_journal(
                context(), _move("r-1", a, b), idempotency_key="K", uow=uow
            )
        tx.commit()
    assert calls == 1
    assert result.reference == "r-1"


def test_verify_is_consistent_while_others_write(pg_clean: sa.Engine) -> None:
    storage = SqlStorage(pg_clean)
    clock, ids = ManualClock(), SequentialIds()
    ledger = LedgerService(storage, default_policy(), clock, ids)
    trail = AuditTrail(storage, default_policy(), clock, ids)
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ledger.open_account(
                context(), c.OpenAccount(code=f"w{n}", currency="PHP", type="asset")
            )

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        results = [trail.verify(context(roles=frozenset({"auditor"}))) for _ in range(40)]
    finally:
        stop.set()
        thread.join(30)
    assert all(r.ok for r in results), [r.problem for r in results if not r.ok]


def test_clock_in_another_zone_is_stored_as_utc_and_the_chain_verifies(storage: Storage) -> None:
    manila = timezone(timedelta(hours=8))
    clock = ManualClock(datetime(2026, 3, 1, 8, 0, tzinfo=manila))
    ids = SequentialIds()
    ledger = LedgerService(storage, default_policy(), clock, ids)
    a, b = _pair(ledger, "tz")
    hold = ledger.create_hold(
        context(),
        c.CreateHold(
            reference="h",
            debit_account_id=b,
            credit_account_id=a,
            amount=Money("1.00", "PHP"),
            expires_at=datetime(2026, 3, 2, 8, 0, tzinfo=manila),
        ),
    )
    assert hold.expires_at == datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    assert hold.expires_at is not None
    assert hold.expires_at.utcoffset() == timedelta(0)
    assert ledger.get_hold(context(), hold.id).expires_at == hold.expires_at
    trail = AuditTrail(storage, default_policy(), clock, ids)
    assert trail.verify(context(roles=frozenset({"auditor"}))).ok
    with pytest.raises(ValidationError) as bad:
        ledger.posted_balance_as_of(context(), a, datetime(2026, 3, 1))
    assert bad.value.field == "at"


def test_amounts_with_huge_negative_exponents_are_refused_quickly() -> None:
    with pytest.raises(MoneyError):
        to_minor(Money(Decimal("1E-10000000"), "PHP"))
    assert to_minor(Money(Decimal("0E-10000000"), "PHP")) == (0, "PHP")
    assert to_minor(Money(Decimal("1.2300000000000000000000000000000"), "PHP")) == (123, "PHP")


def test_tenant_settings_still_apply(storage: Storage) -> None:
    config = TenantConfigService(storage, default_policy(), ManualClock(), SequentialIds())
    change = config.update(context(), LedgerSettings, {"max_batch_size": 5}, reason="test")
    assert change.version == 1


def test_sqlite_insert_or_replace_cannot_rewrite_history(
    request: pytest.FixtureRequest,
) -> None:
    storage = make_storage("sqlite", request)
    assert isinstance(storage, SqlStorage)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    a, b = _pair(ledger, "r")
    journal = ledger.post_journal(context(), _move("j", a, b))
    with pytest.raises(sa.exc.DBAPIError), storage.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT OR REPLACE INTO ledger_entries SELECT journal_id, leg, tenant_id, account_id,"
            " direction, 999, currency, account_sequence, balance_after, posted_at"
            f" FROM ledger_entries WHERE journal_id = '{journal.id}' AND leg = 0"
        )
    with storage.engine.connect() as conn:
        amounts = conn.exec_driver_sql(
            f"SELECT amount FROM ledger_entries WHERE journal_id = '{journal.id}'"
        ).all()
    assert sorted(r[0] for r in amounts) == [100, 100]


def test_postgres_keeps_json_key_order(pg_clean: sa.Engine) -> None:
    ledger = LedgerService(SqlStorage(pg_clean), default_policy(), ManualClock(), SequentialIds())
    opened = ledger.open_account(
        context(),
        c.OpenAccount(code="k", currency="PHP", type="asset", metadata={"zz": 1, "aaa": 2}),
        idempotency_key="order",
    )
    replay = ledger.open_account(
        context(),
        c.OpenAccount(code="k", currency="PHP", type="asset", metadata={"zz": 1, "aaa": 2}),
        idempotency_key="order",
    )
    assert list(opened.metadata) == list(replay.metadata) == ["aaa", "zz"]
    assert list(ledger.get_account(context(), opened.id).metadata) == ["aaa", "zz"]


def _statement_times(ledger: LedgerService, account: str) -> list[datetime]:
    return [line.posted_at for line in ledger.statement(context(), account).lines]


def test_entries_are_stamped_in_posting_order_when_the_clock_goes_back(storage: Storage) -> None:
    """An app server whose clock is behind another's: its postings are stamped no earlier
    than the account's newest entry, so as-of balances and statements stay in order."""
    clock = ManualClock()
    ledger = LedgerService(storage, default_policy(), clock, SequentialIds())
    a, b = _pair(ledger, "skew")
    t10, t20 = clock.now() + timedelta(seconds=10), clock.now() + timedelta(seconds=20)
    clock.set(t20)
    ledger.post_journal(context(), _move("late-clock", a, b))
    clock.set(t10)  # the next server's clock is ten seconds behind
    second = ledger.post_journal(context(), _move("early-clock", a, b))
    assert second.posted_at == t20
    assert _statement_times(ledger, a) == [t20, t20]
    balance = ledger.balance(context(), a).posted
    assert ledger.posted_balance_as_of(context(), a, t20) == balance
    assert ledger.posted_balance_as_of(context(), a, t20 - timedelta(microseconds=1)).amount == 0


def test_an_entry_is_never_stamped_before_its_account_was_opened(storage: Storage) -> None:
    """The account was opened by a server whose clock is ahead; the first posting comes
    from one whose clock is behind. As of before the opening the balance must be zero."""
    clock = ManualClock()
    ledger = LedgerService(storage, default_policy(), clock, SequentialIds())
    opened_at = clock.now() + timedelta(hours=1)
    clock.set(opened_at)
    a, b = _pair(ledger, "opened-late")
    clock.set(opened_at - timedelta(hours=1))
    posted = ledger.post_journal(context(), _move("behind", a, b))
    assert posted.posted_at == opened_at
    assert _statement_times(ledger, a) == [opened_at]
    before_opening = opened_at - timedelta(microseconds=1)
    assert ledger.posted_balance_as_of(context(), a, before_opening).amount == 0
    assert (
        ledger.posted_balance_as_of(context(), a, opened_at) == ledger.balance(context(), a).posted
    )


def test_a_posting_that_waited_for_a_lock_is_stamped_after_the_one_that_held_it(
    pg_clean: sa.Engine,
) -> None:
    """PostgreSQL: a command reads the clock, then waits for an account another command has
    locked with a later reading. It must not be stamped before that command's entry."""
    early, late = ManualClock(), ManualClock()
    t10, t20 = early.now() + timedelta(seconds=10), early.now() + timedelta(seconds=20)
    early.set(t10)
    late.set(t20)
    storage = SqlStorage(pg_clean)
    waiting = LedgerService(storage, default_policy(), early, SequentialIds(namespace=1))
    holding = LedgerService(storage, default_policy(), late, SequentialIds(namespace=2))
    a, b = _pair(holding, "lock")
    with pg_clean.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            holding.post_journal(context(), _move("holder", a, b), uow=uow)  # locks a and b
        done: list[c.JournalView] = []
        thread = threading.Thread(
            target=lambda: done.append(waiting.post_journal(context(), _move("waiter", a, b)))
        )
        thread.start()
        with pg_clean.connect() as probe:  # until the waiter blocks on the account lock
            for _ in range(200):
                blocked = probe.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).scalar_one()
                if blocked:
                    break
                time.sleep(0.02)
        tx.commit()
        thread.join(timeout=30)
    assert len(done) == 1
    assert done[0].posted_at == t20
    assert _statement_times(holding, a) == [t20, t20]
    assert holding.posted_balance_as_of(context(), a, t20) == holding.balance(context(), a).posted


def test_overlapping_id_generators_never_overwrite_a_row(storage: Storage) -> None:
    """Two services on one storage whose id generators repeat each other's ids: the second
    insert is refused like a primary-key clash (and the command retried with fresh ids),
    on the memory store too, instead of replacing the first tenant's account."""
    first = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    second = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    mine = first.open_account(
        context("t1"), c.OpenAccount(code="cash", currency="PHP", type="asset")
    )
    theirs = second.open_account(
        context("t2"), c.OpenAccount(code="cash", currency="USD", type="asset")
    )
    assert theirs.id != mine.id
    assert first.get_account(context("t1"), mine.id).currency == "PHP"
    assert second.get_account(context("t2"), theirs.id).currency == "USD"


def test_a_rejection_after_events_complete_undoes_the_whole_command(storage: Storage) -> None:
    """A handler that hands its events over early and then rejects the command would commit
    the events with the rejection: the runner refuses that as a handler bug and rolls the
    transaction back, so neither the events nor a rejection record remain."""
    from finfactory.kernel import AllowAll, CommandRunner, CommandScope, CommandSpec, DomainError
    from finfactory.primitives.ledger import events as ev

    runner = CommandRunner(storage, AllowAll(), ManualClock(), SequentialIds(), "test")
    spec = CommandSpec("test.late_rejection", "test.run", "thing", c.AccountView)

    def handler(scope: CommandScope) -> c.AccountView:
        payload = {
            "account_id": "a-1",
            "code": "x",
            "currency": "PHP",
            "type": "asset",
            "balance_bound": "none",
        }
        scope.emit(ev.AccountOpened, payload, "a-1", 1)
        scope.events_complete()
        raise DomainError("changed its mind too late")

    with pytest.raises(RuntimeError, match="after events_complete"):
        runner.run(context(), spec, c.OpenAccount(code="x", currency="PHP", type="asset"), handler)
    with storage.read() as tx:
        assert tx.kernel.read_events(0, 10) == []
        assert list(tx.kernel.audit_records("tenant-a")) == []
