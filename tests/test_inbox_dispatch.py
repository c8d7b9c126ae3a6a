"""The idempotent consumer (inbox) on every backend, and in-process dispatch of ledger events."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import attrs
import pytest
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.memory import MemoryStorage, MemoryUnitOfWork
from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
from finfactory.events.dispatch import (
    DispatchError,
    DispatchPublisher,
    EventDispatcher,
    EventPattern,
)
from finfactory.events.envelope import EventEnvelope
from finfactory.events.inbox import IdempotentConsumer
from finfactory.events.outbox import OutboxReader
from finfactory.events.publishing import Publisher
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds
from tests.conftest import make_storage

EFFECTS = "test_inbox_effects"
effects_md = sa.MetaData()
effects_table = sa.Table(
    EFFECTS,
    effects_md,
    sa.Column("consumer", sa.String(100), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
)


class Effects:
    """A handler's own writes, in the same transaction as its inbox row (any backend)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def write(self, uow: UnitOfWork, consumer: str, event_id: str) -> None:
        if isinstance(uow, MemoryUnitOfWork):
            uow.put(EFFECTS, uow.next_value(EFFECTS), (consumer, event_id))
        else:
            assert isinstance(uow, SqlUnitOfWork)
            uow.connection.execute(
                effects_table.insert().values(consumer=consumer, event_id=event_id)
            )

    def all(self) -> list[tuple[str, str]]:
        if isinstance(self.storage, MemoryStorage):
            return sorted(self.storage.db.table(EFFECTS).values())
        assert isinstance(self.storage, SqlStorage)
        with self.storage.engine.connect() as conn:
            rows = conn.execute(sa.select(effects_table.c.consumer, effects_table.c.event_id))
            return sorted((r.consumer, r.event_id) for r in rows)


@pytest.fixture
def inbox_storage(backend: str, request: pytest.FixtureRequest) -> Storage:
    storage = make_storage(backend, request)
    if isinstance(storage, SqlStorage):
        with storage.engine.begin() as conn:
            effects_table.drop(conn, checkfirst=True)
            effects_table.create(conn)
    return storage


@pytest.fixture
def effects(inbox_storage: Storage) -> Effects:
    return Effects(inbox_storage)


def envelope(event_id: str) -> EventEnvelope:
    return EventEnvelope(
        id=event_id,
        event_type="journal.posted",
        schema_version=1,
        payload={},
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        trace_id="0" * 31 + "1",
        tenant_id="tenant-a",
        source="ledger",
        aggregate_type="journal",
        aggregate_id="j-1",
        aggregate_sequence=1,
        correlation_id="corr",
        causation_id=None,
        position=1,
    )


def event_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# -- the inbox --------------------------------------------------------------------------------


def test_redelivered_event_runs_the_handler_once(
    inbox_storage: Storage, effects: Effects, clock: ManualClock
) -> None:
    consumer = IdempotentConsumer(inbox_storage, "billing", clock)
    calls: list[str] = []

    def handler(uow: UnitOfWork, event: EventEnvelope) -> None:
        calls.append(event.id)
        effects.write(uow, "billing", event.id)

    event = envelope(event_id(1))
    assert consumer.handle(event, handler) is True
    assert consumer.handle(event, handler) is False
    assert consumer.handle(attrs.evolve(event, payload={"redelivered": True}), handler) is False
    assert calls == [event.id]
    assert effects.all() == [("billing", event.id)]
    assert consumer.has_handled(event.id)
    assert not consumer.has_handled(event_id(2))

    # Another consumer of the same event has its own inbox rows.
    other = IdempotentConsumer(inbox_storage, "reporting", clock)
    assert other.handle(event, lambda uow, e: effects.write(uow, "reporting", e.id)) is True
    assert effects.all() == [("billing", event.id), ("reporting", event.id)]


def test_a_failing_handler_leaves_neither_writes_nor_inbox_row(
    inbox_storage: Storage, effects: Effects, clock: ManualClock
) -> None:
    consumer = IdempotentConsumer(inbox_storage, "billing", clock)
    event = envelope(event_id(7))

    def broken(uow: UnitOfWork, e: EventEnvelope) -> None:
        effects.write(uow, "billing", e.id)
        raise RuntimeError("downstream said no")

    with pytest.raises(RuntimeError, match="downstream said no"):
        consumer.handle(event, broken)
    assert effects.all() == []
    assert not consumer.has_handled(event.id)

    # The redelivery runs the handler again, and this time it sticks.
    assert consumer.handle(event, lambda uow, e: effects.write(uow, "billing", e.id)) is True
    assert effects.all() == [("billing", event.id)]
    assert consumer.handle(event, lambda uow, e: effects.write(uow, "billing", e.id)) is False


@contextmanager
def caller_transaction(storage: Storage, *, commit: bool) -> Iterator[UnitOfWork]:
    """A unit of work in a transaction the test owns (commits or rolls back itself)."""
    if isinstance(storage, MemoryStorage):
        with storage.db.lock:
            uow = MemoryUnitOfWork(storage.db, owns_transaction=False)
            yield uow
            if commit:
                uow.finish()
            else:
                uow.rollback()
        return
    assert isinstance(storage, SqlStorage)
    with storage.engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as joined:
            yield joined
        if commit:
            tx.commit()
        else:
            tx.rollback()


def test_a_caller_owned_unit_of_work_is_never_committed(
    inbox_storage: Storage, effects: Effects, clock: ManualClock
) -> None:
    consumer = IdempotentConsumer(inbox_storage, "billing", clock)
    event = envelope(event_id(3))

    def write(uow: UnitOfWork, e: EventEnvelope) -> None:
        effects.write(uow, "billing", e.id)

    def broken(uow: UnitOfWork, e: EventEnvelope) -> None:
        effects.write(uow, "billing", e.id)
        raise RuntimeError("no")

    with caller_transaction(inbox_storage, commit=False) as uow:
        assert consumer.handle(event, write, uow=uow) is True
        assert consumer.handle(event, write, uow=uow) is False  # its own claim is visible
    assert effects.all() == []  # the caller rolled back: nothing was committed for it
    assert not consumer.has_handled(event.id)

    # A failing handler is undone (savepoint) without spoiling the caller's transaction.
    with caller_transaction(inbox_storage, commit=True) as uow:
        effects.write(uow, "caller", "own-write")
        with pytest.raises(RuntimeError):
            consumer.handle(event, broken, uow=uow)
        assert consumer.handle(event, write, uow=uow) is True
    assert effects.all() == [("billing", event.id), ("caller", "own-write")]
    assert consumer.has_handled(event.id)


def test_purge_forgets_a_consumers_old_events_oldest_first(
    inbox_storage: Storage, clock: ManualClock
) -> None:
    billing = IdempotentConsumer(inbox_storage, "billing", clock)
    reporting = IdempotentConsumer(inbox_storage, "reporting", clock)
    ran: list[str] = []

    def handler(uow: UnitOfWork, event: EventEnvelope) -> None:
        ran.append(event.id)

    for n in range(1, 6):  # five events a minute apart, both consumers
        billing.handle(envelope(event_id(n)), handler)
        reporting.handle(envelope(event_id(n)), handler)
        clock.advance(timedelta(minutes=1))
    # now = 5 min after the first; keep 150 s: events 1-3 (handled at 0, 1, 2 min) are old
    assert billing.purge_handled(keep_for=timedelta(seconds=150), batch_size=2) == 3
    assert billing.purge_handled(keep_for=timedelta(seconds=150)) == 0
    assert [billing.has_handled(event_id(n)) for n in range(1, 6)] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert all(reporting.has_handled(event_id(n)) for n in range(1, 6))  # its own rows stay
    # A redelivery of a forgotten event runs the handler again; a remembered one does not.
    ran.clear()
    assert billing.handle(envelope(event_id(1)), handler) is True
    assert billing.handle(envelope(event_id(4)), handler) is False
    assert ran == [event_id(1)]


@pytest.mark.parametrize(
    ("keep_for", "batch_size", "field"),
    [(timedelta(0), 5, "keep_for"), (timedelta(days=1), 0, "batch_size")],
)
def test_purge_refuses_a_bad_window_or_batch_size(
    inbox_storage: Storage, clock: ManualClock, keep_for: timedelta, batch_size: int, field: str
) -> None:
    consumer = IdempotentConsumer(inbox_storage, "billing", clock)
    with pytest.raises(ValidationError) as err:
        consumer.purge_handled(keep_for=keep_for, batch_size=batch_size)
    assert err.value.field == field


def test_consumer_names_are_checked(clock: ManualClock) -> None:
    storage = MemoryStorage()
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(ValidationError):
            IdempotentConsumer(storage, bad, clock)
    consumer = IdempotentConsumer(storage, "ok", clock)
    with pytest.raises(ValidationError):
        consumer.handle(envelope(""), lambda uow, e: None)


@pytest.fixture
def pg_storage(pg_clean: sa.Engine) -> SqlStorage:
    with pg_clean.begin() as conn:
        effects_table.drop(conn, checkfirst=True)
        effects_table.create(conn)
    return SqlStorage(pg_clean)


def test_concurrent_duplicates_on_postgres_run_the_handler_once(
    pg_storage: SqlStorage, clock: ManualClock
) -> None:
    effects = Effects(pg_storage)
    consumer = IdempotentConsumer(pg_storage, "billing", clock)
    event = envelope(event_id(11))
    calls: list[str] = []
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def handler(uow: UnitOfWork, e: EventEnvelope) -> None:
        calls.append(e.id)
        time.sleep(0.2)  # hold the claimed inbox row while the duplicates arrive
        effects.write(uow, "billing", e.id)

    def deliver() -> None:
        start.wait()
        try:
            results.append(consumer.handle(event, handler))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results) == [False] * 7 + [True]
    assert calls == [event.id]
    assert effects.all() == [("billing", event.id)]


def test_a_duplicate_waiting_behind_a_failing_delivery_runs_the_handler_itself(
    pg_storage: SqlStorage, clock: ManualClock
) -> None:
    effects = Effects(pg_storage)
    consumer = IdempotentConsumer(pg_storage, "billing", clock)
    event = envelope(event_id(12))
    claimed = threading.Event()
    failures: list[BaseException] = []

    def failing(uow: UnitOfWork, e: EventEnvelope) -> None:
        effects.write(uow, "billing", "from-the-failed-delivery")
        claimed.set()
        time.sleep(0.3)
        raise RuntimeError("crashed mid-handler")

    def first() -> None:
        try:
            consumer.handle(event, failing)
        except RuntimeError as err:
            failures.append(err)

    thread = threading.Thread(target=first)
    thread.start()
    assert claimed.wait(10)
    began = time.monotonic()
    assert consumer.handle(event, lambda uow, e: effects.write(uow, "billing", e.id)) is True
    waited = time.monotonic() - began
    thread.join(10)
    assert len(failures) == 1
    assert waited >= 0.1  # it blocked on the first delivery's inbox row until the rollback
    assert effects.all() == [("billing", event.id)]


# -- in-process dispatch ----------------------------------------------------------------------


@attrs.define
class Shop:
    storage: MemoryStorage
    ledger: LedgerService
    ctx: RequestContext
    cash: str
    wallet: str

    def transfer(self, reference: str, amount: str) -> None:
        self.ledger.post_journal(
            self.ctx,
            c.PostJournal(
                reference=reference,
                legs=[
                    c.Leg(account_id=self.cash, direction="debit", amount=Money(amount, "PHP")),
                    c.Leg(account_id=self.wallet, direction="credit", amount=Money(amount, "PHP")),
                ],
            ),
        )

    def events(self) -> list[EventEnvelope]:
        return OutboxReader(self.storage).read(0, 10_000)


@pytest.fixture
def shop() -> Shop:
    storage = MemoryStorage()
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    ctx = RequestContext(
        tenant_id="tenant-a", actor=Actor("ops-1", ActorKind.USER, frozenset({"admin"}))
    )
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    wallet = ledger.open_account(ctx, c.OpenAccount(code="w", currency="PHP", type="liability"))
    return Shop(storage, ledger, ctx, cash.id, wallet.id)


def test_patterns_follow_nats_subject_rules() -> None:
    assert EventPattern("journal.posted").matches("journal.posted")
    assert EventPattern("journal.posted").is_exact
    assert not EventPattern("journal.posted").matches("journal.posted.extra")
    assert EventPattern("ledger.account.*").matches("ledger.account.opened")
    assert not EventPattern("ledger.*").matches("ledger.account.opened")
    assert EventPattern("*.posted").matches("journal.posted")
    assert EventPattern("ledger.>").matches("ledger.account.status_changed")
    assert not EventPattern("ledger.>").matches("ledger")
    assert not EventPattern("ledger.>").matches("journal.posted")
    assert EventPattern(">").matches("hold.created")
    assert not EventPattern(">").is_exact
    for bad in ("", "journal..posted", "Journal.Posted", "ledger.>.opened", "a b", "led*"):
        with pytest.raises(ValidationError):
            EventPattern(bad)


def test_ledger_events_reach_the_handlers_subscribed_to_them(shop: Shop) -> None:
    shop.transfer("r1", "10.00")
    dispatcher = EventDispatcher(shop.storage, ManualClock())
    seen: dict[str, list[str]] = {}

    def recorder(name: str) -> None:
        def handler(uow: UnitOfWork, e: EventEnvelope) -> None:
            seen.setdefault(name, []).append(e.event_type)

        dispatcher.subscribe(pattern[name], handler, consumer_name=name)

    pattern = {
        "journals": "journal.posted",
        "balances": "balance.updated",
        "accounts": "ledger.account.*",
        "ledger-all": "ledger.>",
        "everything": ">",
    }
    for name in pattern:
        recorder(name)
    events = shop.events()
    results = [dispatcher.dispatch(e) for e in events]

    assert seen["journals"] == ["journal.posted"]
    assert seen["balances"] == ["balance.updated", "balance.updated"]
    assert seen["accounts"] == ["ledger.account.opened", "ledger.account.opened"]
    assert seen["ledger-all"] == seen["accounts"]
    assert seen["everything"] == [e.event_type for e in events]
    assert results[0].handled == ("accounts", "ledger-all", "everything")
    assert all(r.ok and r.duplicates == () for r in results)

    # Redelivery (a relay retry, a replay from position 0): every handler skips.
    before = {name: list(types) for name, types in seen.items()}
    again = [dispatcher.dispatch(e) for e in events]
    assert seen == before
    assert all(r.handled == () for r in again)
    assert again[0].duplicates == ("accounts", "ledger-all", "everything")

    with pytest.raises(ValidationError):
        dispatcher.subscribe(">", lambda uow, e: None, consumer_name="everything")
    dispatcher.unsubscribe("everything")
    assert [s.consumer_name for s in dispatcher.matching("hold.created")] == []


def test_a_handler_reacts_with_a_ledger_command_in_its_inbox_transaction(shop: Shop) -> None:
    promo = shop.ledger.open_account(
        shop.ctx, c.OpenAccount(code="promo", currency="PHP", type="asset")
    )
    dispatcher = EventDispatcher(shop.storage, ManualClock())

    def welcome_bonus(uow: UnitOfWork, event: EventEnvelope) -> None:
        if event.payload["code"] != "w2":
            return
        ctx = RequestContext(
            tenant_id=event.tenant_id,
            actor=Actor("promotions", ActorKind.SERVICE, frozenset({"admin"})),
            causation_id=event.id,
        )
        account = event.payload["account_id"]
        shop.ledger.post_journal(
            ctx,
            c.PostJournal(
                reference=f"welcome-{account}",
                legs=[
                    c.Leg(account_id=promo.id, direction="debit", amount=Money("5.00", "PHP")),
                    c.Leg(account_id=account, direction="credit", amount=Money("5.00", "PHP")),
                ],
            ),
            uow=uow,
        )

    dispatcher.subscribe("ledger.account.opened", welcome_bonus, consumer_name="welcome-bonus")
    new = shop.ledger.open_account(
        shop.ctx, c.OpenAccount(code="w2", currency="PHP", type="liability")
    )
    for _ in range(3):  # delivered three times: one bonus
        for event in shop.events():
            dispatcher.dispatch(event)
    assert shop.ledger.balance(shop.ctx, new.id).available == Money("5.00", "PHP")
    opened = next(e for e in shop.events() if e.payload.get("code") == "w2")
    caused = [e for e in shop.events() if e.causation_id == opened.id]
    assert {e.event_type for e in caused} == {"journal.posted", "balance.updated"}


def test_dispatch_error_names_the_failed_consumer_and_a_retry_runs_only_it(shop: Shop) -> None:
    dispatcher = EventDispatcher(shop.storage, ManualClock())
    calls: list[str] = []
    failing = [True]

    def steady(uow: UnitOfWork, e: EventEnvelope) -> None:
        calls.append("steady")

    def flaky(uow: UnitOfWork, e: EventEnvelope) -> None:
        calls.append("flaky")
        if failing[0]:
            raise ValueError("boom")

    dispatcher.subscribe("ledger.account.opened", steady, consumer_name="steady")
    dispatcher.subscribe("ledger.account.opened", flaky, consumer_name="flaky")
    first = shop.events()[0]
    with pytest.raises(DispatchError) as info:
        dispatcher.dispatch(first)
    assert info.value.code == "event_handler_failed"
    assert info.value.result.handled == ("steady",)
    assert [f.consumer_name for f in info.value.result.failures] == ["flaky"]
    assert "boom" in str(info.value)

    failing[0] = False
    result = dispatcher.dispatch(first)
    assert (result.handled, result.duplicates) == (("flaky",), ("steady",))
    assert calls == ["steady", "flaky", "flaky"]


def test_dispatch_inside_a_caller_transaction_rolls_back_with_it(shop: Shop) -> None:
    dispatcher = EventDispatcher(shop.storage, ManualClock())
    effects = Effects(shop.storage)
    dispatcher.subscribe(">", lambda uow, e: effects.write(uow, "all", e.id), consumer_name="all")
    first = shop.events()[0]
    with pytest.raises(RuntimeError), shop.storage.transaction() as tx:
        assert dispatcher.dispatch(first, uow=tx).handled == ("all",)
        raise RuntimeError("the caller's own work failed")
    assert effects.all() == []
    assert dispatcher.dispatch(first).handled == ("all",)
    assert effects.all() == [("all", first.id)]


def test_a_failing_handler_gives_a_retryable_outcome_and_holds_back_its_aggregate(
    shop: Shop,
) -> None:
    shop.transfer("r1", "10.00")
    shop.transfer("r2", "2.50")
    events = shop.events()
    dispatcher = EventDispatcher(shop.storage, ManualClock())
    projected: list[tuple[str, int]] = []
    everything: list[str] = []
    broken = {shop.wallet}

    def project_balance(uow: UnitOfWork, e: EventEnvelope) -> None:
        if e.aggregate_id in broken:
            raise RuntimeError("projection store is down")
        projected.append((e.aggregate_id, e.aggregate_sequence))

    dispatcher.subscribe("balance.updated", project_balance, consumer_name="balances")
    dispatcher.subscribe(">", lambda uow, e: everything.append(e.id), consumer_name="all")
    publisher: Publisher = DispatchPublisher(dispatcher)
    assert publisher.channel == "in-process"

    outcomes = asyncio.run(publisher.publish(events))
    assert [o.event_id for o in outcomes] == [e.id for e in events]
    by_id = {o.event_id: o for o in outcomes}
    wallet = [e for e in events if e.aggregate_id == shop.wallet]
    assert [e.event_type for e in wallet] == [
        "ledger.account.opened",
        "balance.updated",
        "balance.updated",
    ]
    failed, held = wallet[1], wallet[2]
    assert by_id[wallet[0].id].ok
    assert not by_id[failed.id].ok
    assert by_id[failed.id].retryable
    assert "projection store is down" in (by_id[failed.id].error or "")
    assert not by_id[held.id].ok
    assert by_id[held.id].retryable
    assert failed.id in (by_id[held.id].error or "")
    assert all(o.ok for o in outcomes if o.event_id not in {failed.id, held.id})
    assert held.id not in everything  # held back: not delivered to any handler
    assert projected == [(shop.cash, 2), (shop.cash, 3)]

    # The relay retries the failed event and what waited behind it, in order.
    broken.clear()
    retried = asyncio.run(publisher.publish([failed, held]))
    assert all(o.ok for o in retried)
    assert projected == [(shop.cash, 2), (shop.cash, 3), (shop.wallet, 2), (shop.wallet, 3)]
    assert everything.count(failed.id) == 1  # "all" had handled it already: not run again
    assert sorted(everything) == sorted(e.id for e in events)
    asyncio.run(publisher.close())

    with pytest.raises(ValidationError):
        DispatchPublisher(dispatcher, channel="x" * 65)
