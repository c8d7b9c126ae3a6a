"""The outbox as consumers see it: a cursor over ``position`` never skips an event, every
aggregate's events are numbered 1, 2, 3..., and envelopes carry the request's context."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.events.envelope import EventEnvelope
from finfactory.events.jsontext import encode_json
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.money import Money, from_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import DuplicateReference
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds

HANG_TIMEOUT = 60.0  # only to detect a hang; never asserted as a duration
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _ctx(tenant: str) -> RequestContext:
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


def read_all(storage: Storage, after: int = 0, tenant: str | None = None) -> list[EventEnvelope]:
    with storage.read() as uow:
        return uow.kernel.read_events(after, 1_000_000, tenant)


def _pair(ledger: LedgerService, ctx: RequestContext, prefix: str = "") -> tuple[str, str]:
    cash = ledger.open_account(
        ctx, c.OpenAccount(code=f"{prefix}cash", currency="PHP", type="asset")
    )
    wallet = ledger.open_account(
        ctx, c.OpenAccount(code=f"{prefix}wallet", currency="PHP", type="liability")
    )
    return cash.id, wallet.id


class CursorReader:
    """A consumer that remembers the last position it handled and polls for more."""

    def __init__(self, storage: Storage, cursor: int, page: int = 5) -> None:
        self.storage = storage
        self.cursor = cursor
        self.start = cursor
        self.page = page
        self.seen: list[EventEnvelope] = []

    def poll(self) -> int:
        """Read until caught up; return how many events were new."""
        new = 0
        while True:
            with self.storage.read() as uow:
                batch = uow.kernel.read_events(self.cursor, self.page)
            if not batch:
                return new
            for event in batch:
                assert event.position is not None
                assert event.position > self.cursor, "read_events went backwards"
                self.cursor = event.position
            self.seen.extend(batch)
            new += len(batch)

    def skipped(self) -> list[EventEnvelope]:
        seen = {e.id for e in self.seen}
        return [e for e in read_all(self.storage, self.start) if e.id not in seen]


# -- every backend -------------------------------------------------------------------------


def _scenario(ledger: LedgerService, clock: ManualClock, ctx: RequestContext) -> None:
    cash, wallet = _pair(ledger, ctx)
    merchant = ledger.open_account(
        ctx, c.OpenAccount(code="merchant", currency="PHP", type="liability")
    ).id
    first = ledger.post_journal(ctx, transfer("j1", cash, wallet, 10_000))
    ledger.post_journal(ctx, transfer("j2", wallet, merchant, 2_500))
    clock.advance(timedelta(seconds=1))
    hold = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="h1", debit_account_id=wallet, credit_account_id=merchant, amount=php(1_000)
        ),
    )
    ledger.capture_hold(ctx, c.CaptureHold(hold_id=hold.id, reference="cap-1", amount=php(400)))
    voided = ledger.create_hold(
        ctx,
        c.CreateHold(
            reference="h2", debit_account_id=wallet, credit_account_id=merchant, amount=php(300)
        ),
    )
    ledger.void_hold(ctx, c.VoidHold(hold_id=voided.id, reason="customer cancelled"))
    ledger.reverse_journal(ctx, c.ReverseJournal(journal_id=first.id, reference="rev-j1"))
    ledger.change_account_status(ctx, c.ChangeAccountStatus(account_id=merchant, status="frozen"))
    ledger.change_account_status(ctx, c.ChangeAccountStatus(account_id=merchant, status="active"))


def test_positions_increase_and_aggregate_sequences_are_contiguous(
    ledger: LedgerService, storage: Storage, clock: ManualClock
) -> None:
    ctx_a, ctx_b = _ctx("tenant-a"), _ctx("tenant-b")
    _scenario(ledger, clock, ctx_a)
    _scenario(ledger, clock, ctx_b)  # same codes and references, another tenant

    events = read_all(storage)
    positions = [e.position or 0 for e in events]
    assert all(e.position is not None for e in events)
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert len({e.id for e in events}) == len(events)

    sequences: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for e in events:
        sequences[(e.tenant_id, e.aggregate_type, e.aggregate_id)].append(e.aggregate_sequence)
    for key, seqs in sequences.items():
        assert seqs == list(range(1, len(seqs) + 1)), key

    # both tenants produced the same stream of event types, each under its own tenant id
    kinds = {
        t: Counter(e.event_type for e in events if e.tenant_id == t)
        for t in ("tenant-a", "tenant-b")
    }
    assert kinds["tenant-a"] == kinds["tenant-b"]
    assert kinds["tenant-a"]["journal.posted"] == 4  # j1, j2, capture, reversal
    assert kinds["tenant-a"]["hold.created"] == 2
    assert kinds["tenant-a"]["hold.released"] == 2
    assert kinds["tenant-a"]["transaction.reversed"] == 1
    assert kinds["tenant-a"]["ledger.account.status_changed"] == 2
    assert kinds["tenant-a"]["ledger.account.opened"] == 3

    # the tenant filter and a small-page cursor return exactly the same events
    for tenant in ("tenant-a", "tenant-b"):
        assert read_all(storage, tenant=tenant) == [e for e in events if e.tenant_id == tenant]
    reader = CursorReader(storage, 0, page=3)
    reader.poll()
    assert reader.seen == events
    assert read_all(storage, after=events[5].position or 0) == events[6:]


def test_envelopes_carry_the_request_context(
    ledger: LedgerService, storage: Storage, clock: ManualClock
) -> None:
    traced = RequestContext.from_traceparent(
        f"00-{TRACE}-00f067aa0ba902b7-01",
        tenant_id="tenant-a",
        actor=Actor("ops", ActorKind.SERVICE, frozenset({"admin"})),
        correlation_id="order-77",
        causation_id="evt-123",
    )
    cash, wallet = _pair(ledger, _ctx("tenant-a"))
    before = read_all(storage)
    clock.advance(timedelta(minutes=5))
    at = clock.now()
    ledger.post_journal(traced, transfer("traced", cash, wallet, 500))

    events = read_all(storage, after=before[-1].position or 0)
    assert {e.event_type for e in events} == {"journal.posted", "balance.updated"}
    for e in events:
        assert e.tenant_id == "tenant-a"
        assert e.source == "ledger"
        assert e.trace_id == TRACE
        assert e.correlation_id == "order-77"
        assert e.causation_id == "evt-123"
        assert e.schema_version == 1
        assert e.recorded_at == at
        assert isinstance(e.payload, dict)
    posted = next(e for e in events if e.event_type == "journal.posted")
    assert posted.payload["reference"] == "traced"
    assert posted.aggregate_type == "journal"
    assert posted.aggregate_id == posted.payload["journal_id"]
    assert {e.aggregate_id for e in events if e.event_type == "balance.updated"} == {cash, wallet}

    # without a correlation id the trace id correlates; no causation id stays None
    plain = _ctx("tenant-a")
    ledger.post_journal(plain, transfer("plain", cash, wallet, 1))
    latest = read_all(storage, after=events[-1].position or 0)
    assert latest
    for e in latest:
        assert e.trace_id == plain.trace_id
        assert e.correlation_id == plain.trace_id
        assert e.causation_id is None


def test_rejected_and_replayed_commands_emit_nothing(
    ledger: LedgerService, storage: Storage
) -> None:
    ctx = _ctx("tenant-a")
    cash, wallet = _pair(ledger, ctx)
    ledger.post_journal(ctx, transfer("once", cash, wallet, 100), idempotency_key="k")
    count = len(read_all(storage))
    ledger.post_journal(ctx, transfer("once", cash, wallet, 100), idempotency_key="k")
    with pytest.raises(DuplicateReference):
        ledger.post_journal(ctx, transfer("once", cash, wallet, 100))
    assert len(read_all(storage)) == count


# -- PostgreSQL: commit order ----------------------------------------------------------------


def _advisory_waiters(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE d.datname = current_database() AND l.locktype = 'advisory'"
                    " AND NOT l.granted"
                )
            ).scalar_one()
        )


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.postgres
def test_cursor_cannot_pass_an_event_that_commits_late(pg_clean: sa.Engine) -> None:
    """A writes its events and stays open; B (another tenant, other accounts) writes and
    tries to commit; a consumer polls in between. Whatever B does, the consumer must end up
    with A's events too: outbox positions follow commit order."""
    storage = SqlStorage(pg_clean)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    ctx_a, ctx_b = _ctx("tenant-a"), _ctx("tenant-b")
    a_cash, a_wallet = _pair(ledger, ctx_a)
    b_cash, b_wallet = _pair(ledger, ctx_b)
    reader = CursorReader(storage, read_all(storage)[-1].position or 0)

    b_result: list[object] = []

    def write_b() -> None:
        try:
            b_result.append(ledger.post_journal(ctx_b, transfer("b-1", b_cash, b_wallet, 7)))
        except BaseException as err:
            b_result.append(err)

    with pg_clean.connect() as conn_a:
        tx_a = conn_a.begin()
        with SqlStorage.join(conn_a) as uow:
            a_view = ledger.post_journal(ctx_a, transfer("a-1", a_cash, a_wallet, 5), uow=uow)
        writer_b = threading.Thread(target=write_b, daemon=True)
        writer_b.start()
        _wait_for(
            lambda: bool(b_result) or _advisory_waiters(pg_clean) > 0,
            "B to commit or to queue behind A",
        )
        seen_while_a_open = reader.poll()
        assert not any(e.tenant_id == "tenant-a" for e in reader.seen)  # A is uncommitted
        tx_a.commit()
    writer_b.join(HANG_TIMEOUT)
    assert not writer_b.is_alive(), "B never finished"
    assert len(b_result) == 1
    assert isinstance(b_result[0], c.JournalView), b_result
    reader.poll()

    assert reader.skipped() == [], "the cursor passed events that committed later"
    a_positions = [e.position or 0 for e in reader.seen if e.tenant_id == "tenant-a"]
    b_positions = [e.position or 0 for e in reader.seen if e.tenant_id == "tenant-b"]
    assert a_positions
    assert b_positions
    assert max(a_positions) < min(b_positions)  # A committed first, so it sorts first
    assert seen_while_a_open == 0  # B could not commit ahead of A
    assert any(e.payload.get("journal_id") == a_view.id for e in reader.seen)


@pytest.mark.postgres
def test_cursor_following_reader_never_skips_under_concurrent_writers(
    pg_clean: sa.Engine,
) -> None:
    storage = SqlStorage(pg_clean)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    tenants = [f"tenant-{i}" for i in range(3)]
    pairs = {t: _pair(ledger, _ctx(t)) for t in tenants}
    reader = CursorReader(storage, read_all(storage)[-1].position or 0, page=4)
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        rng = random.Random(n)
        tenant = tenants[n % len(tenants)]
        ctx = _ctx(tenant)
        cash, wallet = pairs[tenant]
        try:
            for k in range(12):
                request = transfer(f"w{n}-{k}", cash, wallet, rng.randint(1, 999))
                if k % 2:
                    ledger.post_journal(ctx, request)
                    continue
                # a product transaction that lingers between writing and committing
                with pg_clean.connect() as conn, conn.begin():
                    with SqlStorage.join(conn) as uow:
                        ledger.post_journal(ctx, request, uow=uow)
                    time.sleep(rng.random() / 200)
        except BaseException as err:
            errors.append(err)

    def read() -> None:
        try:
            while not writers_done.is_set():
                reader.poll()
            reader.poll()
        except BaseException as err:
            errors.append(err)

    consumer = threading.Thread(target=read, daemon=True)
    writers = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(8)]
    consumer.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(HANG_TIMEOUT)
    writers_done.set()
    consumer.join(HANG_TIMEOUT)
    assert not any(t.is_alive() for t in [*writers, consumer]), "a thread hung"
    assert errors == []

    assert reader.skipped() == []
    assert len(reader.seen) == 8 * 12 * 3  # journal.posted + two balance.updated each
    positions = [e.position or 0 for e in reader.seen]
    assert positions == sorted(positions)


def test_read_events_carry_their_payload_json_as_written(
    ledger: LedgerService, storage: Storage, ctx: RequestContext
) -> None:
    """A relay forwards the stored payload text without decoding it: on every backend that
    text is the same compact JSON a fresh encoding of the payload gives."""
    cash, wallet = _pair(ledger, ctx)
    ledger.post_journal(ctx, transfer("note-ü-1", cash, wallet, 125))
    events = read_all(storage)
    assert len(events) >= 5
    for event in events:
        assert event.payload_json() == encode_json(event.payload)
        assert json.loads(event.payload_json()) == event.payload
