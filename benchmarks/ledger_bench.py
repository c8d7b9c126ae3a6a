"""Ledger posting throughput against the raw driver doing the same row writes.

Run: ``python -m benchmarks.ledger_bench`` (SQLite file + PostgreSQL at FINFACTORY_BENCH_PG_URL).

For each database it measures, in the same run and on the same schema (migrated tables,
constraints and triggers included):

* library: ``LedgerService.post_journal`` with an idempotency key, one transaction each;
  every posting writes its journal, 2 entries, 2 account balances, 3 outbox events, the
  idempotency record and a hash-chained audit record (plus the tenant's audit head).
* raw: the identical rows written with the bare driver (sqlite3 / psycopg), one statement per
  row, one transaction per posting, with payloads copied from the library's own rows.
* the same two for batch posting (``post_journals``, 100 journals per call / per transaction):
  a journal.posted per journal, and one balance.updated per account for the whole batch.

It prints postings/s for each and the ratio library/raw. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import SystemClock, UuidGenerator
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService

PG_URL = os.environ.get(
    "FINFACTORY_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/finfactory_bench"
)
CTX = RequestContext("bench", Actor("bench-runner", ActorKind.SERVICE, frozenset({"admin"})))


# -- setup -------------------------------------------------------------------------------
def fresh_pg(url: str) -> sa.Engine:
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    engine = create_engine(url)
    migrate(engine)
    return engine


def fresh_sqlite(path: Path) -> sa.Engine:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine)
    return engine


def open_pair(ledger: LedgerService, tag: str) -> tuple[str, str]:
    cash = ledger.open_account(CTX, c.OpenAccount(code=f"cash-{tag}", currency="PHP", type="asset"))
    wallet = ledger.open_account(
        CTX,
        c.OpenAccount(
            code=f"wallet-{tag}",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    )
    return cash.id, wallet.id


def journal(i: int, debit: str, credit: str, prefix: str) -> c.PostJournal:
    amount = Money("1.25", "PHP")
    return c.PostJournal(
        reference=f"{prefix}-{i}",
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=amount),
            c.Leg(account_id=credit, direction="credit", amount=amount),
        ],
    )


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- the library -------------------------------------------------------------------------
def library_single(engine: sa.Engine, n: int) -> float:
    ledger = LedgerService(SqlStorage(engine), default_policy(), SystemClock(), UuidGenerator())
    cash, wallet = open_pair(ledger, "single")
    for i in range(20):  # warm caches (compiled SQL, pool, imports)
        ledger.post_journal(CTX, journal(i, cash, wallet, "warm"), idempotency_key=f"warm-{i}")

    def run() -> None:
        for i in range(n):
            ledger.post_journal(CTX, journal(i, cash, wallet, "s"), idempotency_key=f"s-{i}")

    return n / timed(run)


def library_batch(engine: sa.Engine, n: int, size: int) -> float:
    ledger = LedgerService(SqlStorage(engine), default_policy(), SystemClock(), UuidGenerator())
    cash, wallet = open_pair(ledger, "batch")
    batches = [
        c.PostJournals(journals=[journal(b * size + i, cash, wallet, "b") for i in range(size)])
        for b in range(n // size)
    ]

    def run() -> None:
        for b, batch in enumerate(batches):
            ledger.post_journals(CTX, batch, idempotency_key=f"b-{b}")

    return (len(batches) * size) / timed(run)


# -- the raw driver ----------------------------------------------------------------------
def sample_rows(engine: sa.Engine) -> dict[str, Any]:
    """Rows the library wrote for one posting, to give the raw baseline identical sizes."""
    with engine.connect() as conn:
        events = conn.exec_driver_sql(
            "SELECT event_type, payload FROM ff_outbox WHERE event_type IN "
            "('journal.posted', 'balance.updated') ORDER BY position DESC LIMIT 3"
        ).all()
        response = conn.exec_driver_sql(
            "SELECT response FROM ff_idempotency WHERE succeeded IS NOT NULL LIMIT 1"
        ).scalar_one()
        summary = conn.exec_driver_sql(
            "SELECT summary FROM ff_audit_log ORDER BY sequence DESC LIMIT 1"
        ).scalar_one()
    as_text = [(t, p if isinstance(p, str) else json.dumps(p)) for t, p in events]
    return {
        "events": sorted(as_text, key=lambda e: e[0] != "journal.posted"),
        "response": response if isinstance(response, str) else json.dumps(response),
        "summary": summary,
    }


def raw_rows(
    i: int, tag: str, cash: str, wallet: str, sample: dict[str, Any], now: Any, balances: bool
) -> list[tuple[str, dict[str, Any]]]:
    """One posting's rows; ``balances``: with the accounts' balance.updated events, which the
    library writes once per account per command (the last posting of a batch carries them)."""
    jid = str(uuid.uuid4())
    rows: list[tuple[str, dict[str, Any]]] = [
        (
            "INSERT INTO ff_idempotency (tenant_id, key, command, request_hash, succeeded,"
            " response, created_at) VALUES (:t, :k, 'ledger.post_journal', :h, :ok, :r, :now)",
            {
                "t": "raw",
                "k": f"{tag}-{i}",
                "h": "0" * 64,
                "ok": True,
                "r": sample["response"],
                "now": now,
            },
        ),
        (
            "INSERT INTO ledger_journals (id, tenant_id, reference, effective_date, description,"
            " metadata, posted_at, reverses_journal_id) VALUES (:id, 'raw', :ref, :day, '', '{}',"
            " :now, NULL)",
            {"id": jid, "ref": f"{tag}-{i}", "day": "2026-01-01", "now": now},
        ),
    ]
    for leg, (acc, direction) in enumerate(((cash, "debit"), (wallet, "credit"))):
        rows.append(
            (
                "INSERT INTO ledger_entries (journal_id, leg, tenant_id, account_id, direction,"
                " amount, currency, account_sequence, balance_after, posted_at) VALUES (:j, :leg,"
                " 'raw', :acc, :dir, 125, 'PHP', :seq, :bal, :now)",
                {
                    "j": jid,
                    "leg": leg,
                    "acc": acc,
                    "dir": direction,
                    "seq": i + 1,
                    "bal": 125 * (i + 1),
                    "now": now,
                },
            )
        )
    rows.append(
        (
            "UPDATE ledger_accounts SET debits_posted = debits_posted + 125,"
            " version = version + 1, entry_count = entry_count + 1 WHERE id = :id",
            {"id": cash},
        )
    )
    rows.append(
        (
            "UPDATE ledger_accounts SET credits_posted = credits_posted + 125,"
            " version = version + 1, entry_count = entry_count + 1 WHERE id = :id",
            {"id": wallet},
        )
    )
    events = sample["events"] if balances else sample["events"][:1]
    for n, (etype, payload) in enumerate(events):
        rows.append(
            (
                "INSERT INTO ff_outbox (id, event_type, schema_version, tenant_id, source,"
                " aggregate_type, aggregate_id, aggregate_sequence, payload, recorded_at, trace_id,"
                " correlation_id, causation_id) VALUES (:id, :et, 1, 'raw', 'ledger', :at, :aid,"
                " :seq, :p, :now, :tr, :tr, NULL)",
                {
                    "id": str(uuid.uuid4()),
                    "et": etype,
                    "at": f"agg{n}",
                    "aid": jid,
                    "seq": 1,
                    "p": payload,
                    "now": now,
                    "tr": "a" * 32,
                },
            )
        )
    rows.append(
        (
            "UPDATE ff_audit_heads SET last_sequence = :seq, last_hash = :h"
            " WHERE tenant_id = 'raw'",
            {"seq": i + 1, "h": "b" * 64},
        )
    )
    rows.append(
        (
            "INSERT INTO ff_audit_log (tenant_id, sequence, id, occurred_at, actor_id, actor_kind,"
            " action, resource_type, resource_id, outcome, reason, trace_id, summary, prev_hash,"
            " hash) VALUES ('raw', :seq, :id, :now, 'bench-runner', 'service',"
            " 'ledger.post_journal', 'journal', :jid, 'succeeded', 'role admin grants', :tr, :s,"
            " :h, :h)",
            {
                "seq": i + 1,
                "id": str(uuid.uuid4()),
                "now": now,
                "jid": jid,
                "tr": "a" * 32,
                "s": sample["summary"],
                "h": "c" * 64,
            },
        )
    )
    return rows


def seed_raw(execute: Callable[[str, dict[str, Any]], object], now: Any) -> tuple[str, str]:
    cash, wallet = str(uuid.uuid4()), str(uuid.uuid4())
    for aid, code, kind, bound in (
        (cash, "cash", "asset", "none"),
        (wallet, "wallet", "liability", "debits_must_not_exceed_credits"),
    ):
        execute(
            "INSERT INTO ledger_accounts (id, tenant_id, code, currency, type, balance_bound,"
            " status, metadata, created_at, debits_posted, credits_posted, debits_held,"
            " credits_held, version, entry_count) VALUES (:id, 'raw', :code, 'PHP', :kind,"
            " :bound, 'active', '{}', :now, 0, 0, 0, 0, 1, 0)",
            {"id": aid, "code": code, "kind": kind, "bound": bound, "now": now},
        )
    execute(
        "INSERT INTO ff_audit_heads (tenant_id, last_sequence, last_hash) VALUES ('raw', 0, :h)",
        {"h": "0" * 64},
    )
    return cash, wallet


def raw_sqlite(path: Path, sample: dict[str, Any], n: int, per_tx: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    cash, wallet = seed_raw(conn.execute, now)
    work = [
        raw_rows(i, f"r{per_tx}", cash, wallet, sample, now, (i + 1) % per_tx == 0)
        for i in range(n)
    ]

    def run() -> None:
        for start in range(0, n, per_tx):
            conn.execute("BEGIN IMMEDIATE")
            for rows in work[start : start + per_tx]:
                for sql, params in rows:
                    conn.execute(sql, params)
            conn.execute("COMMIT")

    rate = n / timed(run)
    conn.close()
    return rate


def raw_postgres(url: str, sample: dict[str, Any], n: int, per_tx: int) -> float:
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn)
    now = datetime.now(UTC)
    pattern = re.compile(r":([a-z]+)")
    cache: dict[str, str] = {}

    def pg(sql: str) -> str:
        if sql not in cache:
            cache[sql] = pattern.sub(r"%(\1)s", sql)
        return cache[sql]

    def run_one(sql: str, params: dict[str, Any]) -> None:
        conn.execute(pg(sql), params)

    with conn.transaction():
        cash, wallet = seed_raw(run_one, now)
    work = [
        raw_rows(i, f"r{per_tx}", cash, wallet, sample, now, (i + 1) % per_tx == 0)
        for i in range(n)
    ]

    def run() -> None:
        for start in range(0, n, per_tx):
            with conn.transaction():
                for rows in work[start : start + per_tx]:
                    for sql, params in rows:
                        conn.execute(pg(sql), params)

    rate = n / timed(run)
    conn.close()
    return rate


# -- report ------------------------------------------------------------------------------
def report(name: str, lib: float, raw: float) -> None:
    print(f"{name:<34} library {lib:>9,.0f}/s   raw {raw:>9,.0f}/s   ratio {lib / raw:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    n, size = args.postings, args.batch_size
    print(f"{n} two-leg postings each; batch = {size} journals per call/transaction")

    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            lib_engine = fresh_sqlite(Path(tmp) / "lib.db")
            single = library_single(lib_engine, n)
            sample = sample_rows(lib_engine)
            batch = library_batch(lib_engine, n, size)
            lib_engine.dispose()
            for name in ("raw1.db", "raw2.db"):
                fresh_sqlite(Path(tmp) / name).dispose()
            raw_single = raw_sqlite(Path(tmp) / "raw1.db", sample, n, 1)
            raw_batch = raw_sqlite(Path(tmp) / "raw2.db", sample, n, size)
        report("SQLite (file, WAL) single", single, raw_single)
        report("SQLite (file, WAL) batch", batch, raw_batch)

    if args.only != "sqlite":
        lib_engine = fresh_pg(args.pg_url)
        single = library_single(lib_engine, n)
        sample = sample_rows(lib_engine)
        batch = library_batch(lib_engine, n, size)
        lib_engine.dispose()
        fresh_pg(args.pg_url).dispose()
        raw_single = raw_postgres(args.pg_url, sample, n, 1)
        fresh_pg(args.pg_url).dispose()
        raw_batch = raw_postgres(args.pg_url, sample, n, size)
        report("PostgreSQL single", single, raw_single)
        report("PostgreSQL batch", batch, raw_batch)


if __name__ == "__main__":
    main()
