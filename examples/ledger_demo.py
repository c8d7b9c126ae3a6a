"""FinFactory ledger demo: one e-wallet's day on a real database, start to finish.

    python -m examples.ledger_demo                    # SQLite file ./finfactory-demo.db
    python -m examples.ledger_demo --deterministic    # fixed clock and ids: identical output
    python -m examples.ledger_demo --database-url postgresql+psycopg://postgres@127.0.0.1/demo

The database starts fresh on every run (the SQLite file is deleted; on a server database
FinFactory's own tables are dropped and migrated again). Exit status 0 means every step did
exactly what this script expects.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.sqlalchemy.migrate import downgrade, migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.audit import verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import Clock, IdGenerator, SystemClock, UuidGenerator
from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import FinFactoryError, IdempotencyConflict
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import BalanceBoundExceeded
from finfactory.primitives.ledger.model import AccountType, BalanceBound, Direction, HoldStatus
from finfactory.primitives.ledger.service import LedgerService
from finfactory.primitives.ledger.settings import LedgerSettings
from finfactory.testing import ManualClock, SequentialIds

DEFAULT_URL = "sqlite:///finfactory-demo.db"
TENANT = "demo-wallet-ph"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DEBIT, CREDIT = Direction.DEBIT, Direction.CREDIT
NO_OVERDRAFT, UNBOUNDED = BalanceBound.DEBITS_NOT_OVER_CREDITS, BalanceBound.NONE
_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


class DemoFailure(Exception):
    """A step did not do what the demo expects."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)


def php(amount: str) -> Money:
    return Money(amount, "PHP")


def fmt(money: Money) -> str:
    return f"{money.amount:,}"


def leg(account_id: str, direction: Direction, amount: str) -> c.Leg:
    return c.Leg(account_id=account_id, direction=direction, amount=php(amount))


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain-text table; columns whose cells are all numbers are right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_NUMBER.match(r[i]) for r in rows) for i in range(len(widths))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w)
                         for cell, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    print(f"\n{title}\n{line(headers)}\n{line(['-' * w for w in widths])}")
    for row in rows:
        print(line(row))


def fresh_engine(url: str) -> sa.Engine:
    """An engine on an empty, fully migrated FinFactory schema."""
    parsed = sa.make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
    engine = create_engine(url)
    if not sqlite:
        downgrade(engine)  # a server database: drop FinFactory's own tables, nothing else
    migrate(engine)
    return engine


def event_summary(e: EventEnvelope, names: dict[str, str]) -> str:
    p: dict[str, Any] = e.payload
    if e.event_type == "ledger.account.opened":
        return f"{p['code']}: {p['type']}, bound {p['balance_bound']}"
    if e.event_type == "journal.posted":
        return f"{p['reference']}: " + ", ".join(
            f"{x['direction'][0].upper()} {x['account_code']} {x['amount']['amount']}"
            for x in p["legs"])
    if e.event_type == "balance.updated":
        return (f"{p['posted']['amount']} / {p['held']['amount']} / {p['available']['amount']}"
                f" after {p['cause_type']} {names[p['cause_id']]}")
    if e.event_type == "hold.created":
        return f"{p['reference']}: {p['amount']['amount']} {p['amount']['currency']}"
    if e.event_type == "hold.released":
        return (f"{p['reason']}: captured {p['captured']['amount']},"
                f" released {p['released']['amount']}")
    if e.event_type == "transaction.reversed":
        return f"reversed by {p['reference']}: {p['reason']}"
    return ", ".join(f"{k}={v}" for k, v in sorted(p.items()))[:60]


def run(url: str, deterministic: bool) -> None:
    # -- the composition root: one storage, policy, clock and id source for every service --
    engine = fresh_engine(url)
    clock: Clock
    ids: IdGenerator
    if deterministic:
        clock = ManualClock(datetime(2026, 1, 1, 9, 0, tzinfo=UTC), tick=timedelta(seconds=1))
        ids = SequentialIds()
    else:
        clock, ids = SystemClock(), UuidGenerator()
    storage = SqlStorage(engine)
    policy = default_policy()
    ledger = LedgerService(storage, policy, clock, ids)
    config = TenantConfigService(storage, policy, clock, ids)
    actor = Actor("ops-console", ActorKind.SERVICE, frozenset({"ledger.operator", "config.admin"}))
    ctx = (RequestContext.from_traceparent(TRACEPARENT, tenant_id=TENANT, actor=actor)
           if deterministic else RequestContext(tenant_id=TENANT, actor=actor))
    names: dict[str, str] = {}  # account, journal and hold ids -> readable names
    numbers = itertools.count(1)

    def step(text: str) -> None:
        print(f"{next(numbers):>2}. {text}")

    print(f"FinFactory ledger demo on {engine.url.render_as_string(hide_password=True)}")
    print(f"tenant {TENANT}, actor {actor.id}, trace {ctx.trace_id}\n")

    config.update(ctx, LedgerSettings, {"allowed_currencies": ["PHP"]},
                  reason="PHP-only e-wallet programme")
    step("tenant settings: the ledger accepts PHP accounts only")

    def open_account(code: str, kind: AccountType, bound: BalanceBound) -> str:
        acc = ledger.open_account(ctx, c.OpenAccount(code=code, currency="PHP", type=kind,
                                                     balance_bound=bound))
        names[acc.id] = code
        return acc.id

    cash = open_account("cash.settlement", AccountType.ASSET, UNBOUNDED)
    alice = open_account("wallet.alice", AccountType.LIABILITY, NO_OVERDRAFT)
    bob = open_account("wallet.bob", AccountType.LIABILITY, NO_OVERDRAFT)
    shop = open_account("merchant.sari-sari", AccountType.LIABILITY, UNBOUNDED)
    fees = open_account("fees.revenue", AccountType.REVENUE, UNBOUNDED)
    step("opened 5 accounts: " + ", ".join(names.values()))

    def post(reference: str, *legs: c.Leg) -> None:
        journal = ledger.post_journal(ctx, c.PostJournal(reference=reference, legs=list(legs)))
        names[journal.id] = reference

    post("cashin-0001", leg(cash, DEBIT, "1000.00"), leg(alice, CREDIT, "1000.00"))
    post("cashin-0002", leg(cash, DEBIT, "500.00"), leg(bob, CREDIT, "500.00"))
    step("cash-ins: alice 1,000.00, bob 500.00")

    post("pay-0001", leg(alice, DEBIT, "255.00"), leg(shop, CREDIT, "250.00"),
         leg(fees, CREDIT, "5.00"))
    step("alice pays the sari-sari store 250.00 plus a 5.00 fee (one 3-leg journal)")

    batch = ledger.post_journals(ctx, c.PostJournals(journals=[
        c.PostJournal(reference="p2p-0001",
                      legs=[leg(alice, DEBIT, "100.00"), leg(bob, CREDIT, "100.00")]),
        c.PostJournal(reference="p2p-0002",
                      legs=[leg(bob, DEBIT, "40.00"), leg(alice, CREDIT, "40.00")]),
    ]))
    names.update({j.id: j.reference for j in batch.journals})
    step("batch of 2 transfers, all-or-nothing: alice->bob 100.00, bob->alice 40.00")

    def hold(reference: str, debit: str, amount: str, expires: datetime | None = None) -> str:
        view = ledger.create_hold(ctx, c.CreateHold(
            reference=reference, debit_account_id=debit, credit_account_id=shop,
            amount=php(amount), expires_at=expires))
        names[view.id] = reference
        return view.id

    captured = ledger.capture_hold(ctx, c.CaptureHold(
        hold_id=hold("order-1001", alice, "300.00"), reference="capture-1001",
        amount=php("180.00")))
    expect(captured.status is HoldStatus.CAPTURED and captured.capture_journal_id is not None,
           "a partial capture should close the hold with a journal")
    names[str(captured.capture_journal_id)] = "capture-1001"
    step("hold order-1001: 300.00 reserved on alice, 180.00 captured, 120.00 released")

    voided = ledger.void_hold(ctx, c.VoidHold(hold_id=hold("order-1002", bob, "120.00"),
                                              reason="customer cancelled"))
    expect(voided.status is HoldStatus.VOIDED, "a void should release the hold")
    step("hold order-1002: 120.00 reserved on bob, then voided")

    h3 = hold("order-1003", bob, "60.00", expires=clock.now() + timedelta(seconds=1))
    if isinstance(clock, ManualClock):  # let time pass: at once on the manual clock
        clock.advance(timedelta(seconds=2))
    else:
        time.sleep(1.2)
    expired = ledger.expire_holds(ctx)
    expect(expired.hold_ids == [h3], f"expected order-1003 to expire, got {expired.hold_ids}")
    step("hold order-1003: 60.00 on bob with a 1 s expiry; expire_holds released it")

    reversal = ledger.reverse_journal(ctx, c.ReverseJournal(
        journal_id=batch.journals[1].id, reference="rev-p2p-0002", reason="sent by mistake"))
    names[reversal.id] = reversal.reference
    step("reversed p2p-0002 by posting rev-p2p-0002 (history is never edited)")

    overspend = c.PostJournal(reference="pay-0002", legs=[leg(bob, DEBIT, "10000.00"),
                                                          leg(shop, CREDIT, "10000.00")])
    for attempt in ("bob pays 10,000.00 from 600.00", "the retry under the same key"):
        try:
            ledger.post_journal(ctx, overspend, idempotency_key="checkout-7782")
            raise DemoFailure("a 10,000.00 payment from bob's 600.00 wallet was accepted")
        except BalanceBoundExceeded as err:
            step(f"{attempt}: refused, {err.code} ({err.message})")

    checkout = c.PostJournal(reference="pay-0003", legs=[leg(alice, DEBIT, "25.00"),
                                                         leg(shop, CREDIT, "25.00")])
    first = ledger.post_journal(ctx, checkout, idempotency_key="checkout-7781")
    names[first.id] = first.reference
    again = ledger.post_journal(ctx, checkout, idempotency_key="checkout-7781")
    expect(again == first, "a replay must return the first result")
    step(f"checkout-7781 sent twice: one journal {names[again.id]}; the replay returned it")
    changed = checkout.model_copy(update={"legs": [leg(alice, DEBIT, "26.00"),
                                                   leg(shop, CREDIT, "26.00")]})
    try:
        ledger.post_journal(ctx, changed, idempotency_key="checkout-7781")
        raise DemoFailure("a different request under a used key was accepted")
    except IdempotencyConflict as err:
        step(f"same key, different amount: refused, {err.code} ({err.message})")

    hold("order-1004", alice, "40.00")
    step("hold order-1004: 40.00 reserved on alice and left pending")

    # -- reports --------------------------------------------------------------------------
    accounts = ledger.list_accounts(ctx)
    print_table("Balances (PHP)", ["account", "type", "posted", "held", "available"],
                [[a.code, a.type.value, fmt(a.posted), fmt(a.held), fmt(a.available)]
                 for a in accounts])
    expected = {"cash.settlement": ("1500.00", "0.00"), "wallet.alice": ("440.00", "40.00"),
                "wallet.bob": ("600.00", "0.00"), "merchant.sari-sari": ("455.00", "0.00"),
                "fees.revenue": ("5.00", "0.00")}
    for a in accounts:
        posted, held = expected[a.code]
        expect(a.posted == php(posted) and a.held == php(held), f"{a.code} balance is wrong")
    assets = sum((a.posted for a in accounts if a.type is AccountType.ASSET), php("0"))
    others = sum((a.posted for a in accounts if a.type is not AccountType.ASSET), php("0"))
    expect(assets == others, "the books do not balance")
    print(f"trial balance: assets {fmt(assets)} = liabilities + revenue {fmt(others)}")

    print_table("Statement of wallet.alice",
                ["seq", "journal", "side", "amount", "balance", "posted at"],
                [[str(s.sequence), names[s.journal_id], s.direction.value, fmt(s.amount),
                  fmt(s.balance_after), s.posted_at.strftime("%H:%M:%S")]
                 for s in ledger.statement(ctx, alice).lines])

    with storage.read() as uow:  # the outbox and audit log, read in one consistent view
        events = uow.kernel.read_events(0, 1000, TENANT)
        records = list(uow.kernel.audit_records(TENANT))
        check = verify_chain(records, uow.kernel.audit_head(TENANT))
    print_table(f"Events in the outbox (ff_outbox, {len(events)} rows)",
                ["pos", "event_type", "aggregate", "seq", "payload"],
                [[str(e.position), e.event_type,
                  f"{e.aggregate_type}:{names.get(e.aggregate_id, e.aggregate_id)}",
                  str(e.aggregate_sequence), event_summary(e, names)] for e in events])
    missing = {"journal.posted", "balance.updated", "hold.created", "hold.released",
               "transaction.reversed", "ledger.account.opened"} - {e.event_type for e in events}
    expect(not missing, f"events missing from the outbox: {sorted(missing)}")

    outcomes = Counter(r.outcome.value for r in records)
    expect(check.ok, f"audit chain broken at record {check.broken_at}: {check.problem}")
    print(f"\naudit chain: verified, {check.records_checked} records ("
          + ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
          + f"); head {records[-1].hash[:16]}")
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FinFactory ledger demo")
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help=f"SQLAlchemy URL, reset on every run (default {DEFAULT_URL})")
    parser.add_argument("--deterministic", action="store_true",
                        help="manual clock and sequential ids: the same output on every run")
    args = parser.parse_args(argv)
    try:
        run(args.database_url, args.deterministic)
    except DemoFailure as err:
        print(f"\nDEMO FAILED: {err}", file=sys.stderr)
        return 1
    except FinFactoryError as err:
        print(f"\nDEMO FAILED: unexpected {err.code}: {err.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
