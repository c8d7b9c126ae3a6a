"""FinFactory ledger demo: one e-wallet's day on a real database, start to finish.

Run ``python -m examples.ledger_demo [--deterministic] [--database-url URL]`` from the repo
root. Each run starts fresh (SQLite: ./finfactory-demo.db is recreated; PostgreSQL: the schema
finfactory_demo is dropped and created). Exit status 0 means every step went as expected.
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

import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.sqlalchemy import SqlStorage, create_engine, migrate
from finfactory.events import EventEnvelope, OutboxReader
from finfactory.kernel.audit import verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import SystemClock, UuidGenerator
from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import FinFactoryError, IdempotencyConflict
from finfactory.primitives import ledger as lg
from finfactory.testing import ManualClock, SequentialIds

DEFAULT_URL = "sqlite:///finfactory-demo.db"
PG_SCHEMA = "finfactory_demo"
TENANT = "demo-wallet-ph"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ASSET, LIABILITY, REVENUE = lg.AccountType.ASSET, lg.AccountType.LIABILITY, lg.AccountType.REVENUE
NO_OVERDRAFT, UNBOUNDED = lg.BalanceBound.DEBITS_NOT_OVER_CREDITS, lg.BalanceBound.NONE
_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")
# How the events table summarises each payload (str.format over the payload's fields).
SUMMARIES = {
    "ledger.account.opened": "{code}: {type}, bound {balance_bound}",
    "journal.posted": "{reference}: {legs_text}",
    "balance.updated": "{balance_text} ({cause})",
    "hold.created": "{reference}: {amount[amount]} {amount[currency]}",
    "hold.released": "{reason}: captured {captured[amount]}, released {released[amount]}",
    "transaction.reversed": "reversed by {reference}: {reason}",
}


class DemoFailure(Exception):
    """A step did not do what the demo expects."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)


def php(amount: str) -> Money:
    return Money(amount, "PHP")


def fmt(money: Money) -> str:
    return f"{money.amount:,}"


def dr(account_id: str, amount: str) -> lg.Leg:
    return lg.Leg(account_id=account_id, direction=lg.Direction.DEBIT, amount=php(amount))


def cr(account_id: str, amount: str) -> lg.Leg:
    return lg.Leg(account_id=account_id, direction=lg.Direction.CREDIT, amount=php(amount))


def journal(reference: str, *legs: lg.Leg) -> lg.PostJournal:
    return lg.PostJournal(reference=reference, legs=list(legs))


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain-text table; columns whose cells are all numbers are right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_NUMBER.match(r[i]) for r in rows) for i in range(len(widths))]

    def line(cells: Sequence[str]) -> str:
        aligned = zip(cells, widths, numeric, strict=True)
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in aligned).rstrip()

    print(f"\n{title}\n{line(headers)}\n{line(['-' * w for w in widths])}")
    for row in rows:
        print(line(row))


def fresh_engine(url: str, schema: str = PG_SCHEMA) -> sa.Engine:
    """An engine on an empty, fully migrated FinFactory schema."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        engine = create_engine(url)
    else:  # PostgreSQL: the demo lives in a schema of its own, dropped and created again
        engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    migrate(engine)
    return engine


def statement_row(s: lg.StatementLine, names: dict[str, str]) -> list[str]:
    amounts = [fmt(s.amount), fmt(s.balance_after)]
    return [str(s.sequence), names[s.journal_id], s.direction, *amounts, f"{s.posted_at:%H:%M:%S}"]


def event_row(e: EventEnvelope, names: dict[str, str]) -> list[str]:
    p = e.payload
    legs = [
        f"{x['direction'][0].upper()} {x['account_code']} {x['amount']['amount']}"
        for x in p.get("legs", [])
    ]
    balance = ", ".join(f"{k} {p[k]['amount']}" for k in ("posted", "held", "available") if k in p)
    cause = f"{p.get('cause_type')} {names.get(p.get('cause_id', ''))}"
    texts = {"legs_text": ", ".join(legs), "balance_text": balance, "cause": cause}
    summary = SUMMARIES[e.event_type].format(**p, **texts)
    aggregate = f"{e.aggregate_type}:{names.get(e.aggregate_id, e.aggregate_id)}"
    return [str(e.position), e.event_type, aggregate, str(e.aggregate_sequence), summary]


def run(url: str, deterministic: bool) -> None:
    # -- the composition root: one storage, policy, clock and id source for every service --
    engine = fresh_engine(url)
    start = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    clock = ManualClock(start, tick=timedelta(seconds=1)) if deterministic else SystemClock()
    ids = SequentialIds() if deterministic else UuidGenerator()
    storage = SqlStorage(engine)
    policy = default_policy()
    ledger = lg.LedgerService(storage, policy, clock, ids)
    config = TenantConfigService(storage, policy, clock, ids)
    actor = Actor("ops-console", ActorKind.SERVICE, frozenset({"ledger.operator", "config.admin"}))
    if deterministic:
        ctx = RequestContext.from_traceparent(TRACEPARENT, tenant_id=TENANT, actor=actor)
    else:
        ctx = RequestContext(tenant_id=TENANT, actor=actor)
    names: dict[str, str] = {}  # account, journal and hold ids -> readable names
    numbers = itertools.count(1)

    def step(text: str) -> None:
        print(f"{next(numbers):>2}. {text}")

    print(f"FinFactory ledger demo on {engine.url.render_as_string(hide_password=True)}")
    print(f"tenant {TENANT}, actor {actor.id}, trace {ctx.trace_id}\n")

    config.update(ctx, lg.LedgerSettings, {"allowed_currencies": ["PHP"]}, reason="PHP only")
    step("tenant settings: the ledger accepts PHP accounts only")

    def open_account(code: str, kind: lg.AccountType, bound: lg.BalanceBound) -> str:
        command = lg.OpenAccount(code=code, currency="PHP", type=kind, balance_bound=bound)
        account = ledger.open_account(ctx, command)
        names[account.id] = code
        return account.id

    cash = open_account("cash.settlement", ASSET, UNBOUNDED)
    alice = open_account("wallet.alice", LIABILITY, NO_OVERDRAFT)
    bob = open_account("wallet.bob", LIABILITY, NO_OVERDRAFT)
    shop = open_account("merchant.sari-sari", LIABILITY, UNBOUNDED)
    fees = open_account("fees.revenue", REVENUE, UNBOUNDED)
    step("opened 5 accounts: " + ", ".join(names.values()))

    def post(command: lg.PostJournal, key: str | None = None) -> lg.JournalView:
        posted = ledger.post_journal(ctx, command, idempotency_key=key)
        names[posted.id] = posted.reference
        return posted

    post(journal("cashin-0001", dr(cash, "1000.00"), cr(alice, "1000.00")))
    post(journal("cashin-0002", dr(cash, "500.00"), cr(bob, "500.00")))
    step("cash-ins: alice 1,000.00, bob 500.00")

    post(journal("pay-0001", dr(alice, "255.00"), cr(shop, "250.00"), cr(fees, "5.00")))
    step("alice pays the sari-sari store 250.00 plus a 5.00 fee (one 3-leg journal)")

    transfers = [
        journal("p2p-0001", dr(alice, "100.00"), cr(bob, "100.00")),
        journal("p2p-0002", dr(bob, "40.00"), cr(alice, "40.00")),
    ]
    batch = ledger.post_journals(ctx, lg.PostJournals(journals=transfers))
    names.update({j.id: j.reference for j in batch.journals})
    step("batch of 2 transfers, all-or-nothing: alice->bob 100.00, bob->alice 40.00")

    def hold(reference: str, debit: str, amount: str, expires: datetime | None = None) -> str:
        command = lg.CreateHold(
            reference=reference,
            debit_account_id=debit,
            credit_account_id=shop,
            amount=php(amount),
            expires_at=expires,
        )
        created = ledger.create_hold(ctx, command)
        names[created.id] = reference
        return created.id

    first_hold = hold("order-1001", alice, "300.00")
    capture = lg.CaptureHold(hold_id=first_hold, reference="capture-1001", amount=php("180.00"))
    captured = ledger.capture_hold(ctx, capture)
    expect(captured.status is lg.HoldStatus.CAPTURED, "a partial capture should close the hold")
    names[str(captured.capture_journal_id)] = "capture-1001"
    step("hold order-1001: 300.00 reserved on alice, 180.00 captured, 120.00 released")

    void = lg.VoidHold(hold_id=hold("order-1002", bob, "120.00"), reason="customer cancelled")
    expect(ledger.void_hold(ctx, void).status is lg.HoldStatus.VOIDED, "void should release")
    step("hold order-1002: 120.00 reserved on bob, then voided")

    lapsing = hold("order-1003", bob, "60.00", expires=clock.now() + timedelta(seconds=2))
    if isinstance(clock, ManualClock):  # let time pass: at once on the manual clock
        clock.advance(timedelta(seconds=10))
    else:
        time.sleep(2.2)
    expired = ledger.expire_holds(ctx).hold_ids
    expect(expired == [lapsing], f"expected order-1003 to expire, got {expired}")
    step("hold order-1003: 60.00 on bob with a 2 s expiry; expire_holds released it")

    reverse = lg.ReverseJournal(
        journal_id=batch.journals[1].id, reference="rev-p2p-0002", reason="sent by mistake"
    )
    reversal = ledger.reverse_journal(ctx, reverse)
    names[reversal.id] = reversal.reference
    step("reversed p2p-0002 by posting rev-p2p-0002 (history is never edited)")

    overspend = journal("pay-0002", dr(bob, "10000.00"), cr(shop, "10000.00"))
    for attempt in ("bob pays 10,000.00 from 600.00", "the retry under the same key"):
        try:
            post(overspend, key="checkout-7782")
            raise DemoFailure("a 10,000.00 payment from bob's 600.00 wallet was accepted")
        except lg.BalanceBoundExceeded as err:
            step(f"{attempt}: refused, {err.code} ({err.message})")

    first = post(journal("pay-0003", dr(alice, "25.00"), cr(shop, "25.00")), key="checkout-7781")
    again = post(journal("pay-0003", dr(alice, "25.00"), cr(shop, "25.00")), key="checkout-7781")
    expect(again == first, "a replay must return the first result")
    step("checkout-7781 sent twice: one journal pay-0003; the replay returned it")
    try:
        post(journal("pay-0003", dr(alice, "26.00"), cr(shop, "26.00")), key="checkout-7781")
        raise DemoFailure("a different request under a used key was accepted")
    except IdempotencyConflict as err:
        step(f"same key, different amount: refused, {err.code} ({err.message})")

    hold("order-1004", alice, "40.00")
    step("hold order-1004: 40.00 reserved on alice and left pending")

    # -- reports --------------------------------------------------------------------------
    accounts = ledger.list_accounts(ctx)
    rows = [[a.code, a.type, fmt(a.posted), fmt(a.held), fmt(a.available)] for a in accounts]
    print_table("Balances (PHP)", ["account", "type", "posted", "held", "available"], rows)
    got = [f"{a.posted.amount}/{a.held.amount}" for a in accounts]  # posted/held, by code
    want = ["1500.00/0.00", "5.00/0.00", "455.00/0.00", "440.00/40.00", "600.00/0.00"]
    expect(got == want, f"unexpected balances: {got}")
    assets = sum((a.posted for a in accounts if a.type is ASSET), php("0"))
    others = sum((a.posted for a in accounts if a.type is not ASSET), php("0"))
    expect(assets == others, "the books do not balance")
    print(f"trial balance: assets {fmt(assets)} = liabilities + revenue {fmt(others)}")

    rows = [statement_row(line, names) for line in ledger.statement(ctx, alice).lines]
    headers = ["seq", "journal", "side", "amount", "balance", "posted at"]
    print_table("Statement of wallet.alice", headers, rows)

    events = list(OutboxReader(storage, tenant_id=TENANT).drain())  # polls ff_outbox
    with storage.read() as uow:  # the audit log, in one consistent view
        records = list(uow.kernel.audit_records(TENANT))
        check = verify_chain(records, uow.kernel.audit_head(TENANT))
    headers = ["pos", "event_type", "aggregate", "seq", "payload"]
    title = f"Events in the outbox (ff_outbox, {len(events)} rows)"
    print_table(title, headers, [event_row(e, names) for e in events])
    missing = set(SUMMARIES) - {e.event_type for e in events}
    expect(not missing, f"events missing from the outbox: {sorted(missing)}")

    expect(check.ok, f"audit chain broken at record {check.broken_at}: {check.problem}")
    outcomes = Counter(r.outcome.value for r in records)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    print(f"\naudit chain: verified, {check.records_checked} records ({summary})")
    print(f"audit head: #{records[-1].sequence} {records[-1].hash}")
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FinFactory ledger demo")
    parser.add_argument("--database-url", default=DEFAULT_URL, help="reset on every run")
    parser.add_argument("--deterministic", action="store_true", help="manual clock and ids")
    args = parser.parse_args(argv)
    try:
        run(args.database_url, args.deterministic)
    except (DemoFailure, FinFactoryError) as err:  # anything else fails with a traceback
        print(f"\nDEMO FAILED: {err!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
