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
  a journal.posted per journal; one balance.updated per account, one idempotency record and
  one audit record for the whole batch.

First it measures the library alone on its in-memory adapter (no SQL at all), and prints for
SQLite the ratio that Python work would allow even if the library's SQL cost no more than the
raw driver's (the "ceiling"; see :func:`ceiling`).

Library and raw take turns in rounds (5 by default), so that a machine whose speed drifts
during the run slows both alike; it prints the median postings/s of each and the median of the
per-round ratios library/raw. Before each of the four measurements the disk writes still
pending are flushed (``os.sync``): the SQLite part writes over a gigabyte of WAL, whose
write-back otherwise slowed the PostgreSQL part that follows by up to a quarter. Nothing here
is asserted.
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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import psycopg
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.memory import MemoryStorage
from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import SystemClock, UuidGenerator
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.ports import Storage
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


def open_pair(ledger: LedgerService, tag: str, ctx: RequestContext = CTX) -> tuple[str, str]:
    cash = ledger.open_account(ctx, c.OpenAccount(code=f"cash-{tag}", currency="PHP", type="asset"))
    wallet = ledger.open_account(
        ctx,
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
class LibraryPoster:
    """Posts through ``LedgerService`` between one pair of accounts, continuing its numbering
    from call to call so that rounds can alternate with the raw driver."""

    def __init__(self, storage: Storage, tag: str, ctx: RequestContext = CTX) -> None:
        self.ledger = LedgerService(storage, default_policy(), SystemClock(), UuidGenerator())
        self.cash, self.wallet = open_pair(self.ledger, tag, ctx)
        self.tag, self.done, self.ctx = tag, 0, ctx
        for i in range(20):  # warm caches (compiled SQL, pool, imports)
            self.ledger.post_journal(
                ctx, journal(i, self.cash, self.wallet, f"warm-{tag}"), idempotency_key=f"w{tag}{i}"
            )

    def single(self, n: int) -> float:
        return n / timed(self.prepare_single(n))

    def prepare_single(self, n: int) -> Callable[[], None]:
        """The next ``n`` postings, built and ready to run (building them is not timed)."""
        first, self.done = self.done, self.done + n
        commands = [journal(i, self.cash, self.wallet, self.tag) for i in range(first, first + n)]

        def run() -> None:
            for i, command in enumerate(commands, first):
                self.ledger.post_journal(self.ctx, command, idempotency_key=f"{self.tag}-{i}")

        return run

    def batch(self, n: int, size: int) -> float:
        first, self.done = self.done, self.done + n
        batches = [
            c.PostJournals(
                journals=[journal(i, self.cash, self.wallet, self.tag) for i in range(b, b + size)]
            )
            for b in range(first, first + n, size)
        ]

        def run() -> None:
            for b, batch in enumerate(batches):
                key = f"{self.tag}-{first}-{b}"
                self.ledger.post_journals(self.ctx, batch, idempotency_key=key)

        return n / timed(run)


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
    i: int,
    tag: str,
    cash: str,
    wallet: str,
    sample: dict[str, Any],
    now: Any,
    per_tx: int,
    tenant: str = "raw",
) -> list[tuple[str, dict[str, Any]]]:
    """One posting's rows, ``per_tx`` postings to a transaction. Like the library's batch, the
    last posting of a transaction also writes the command's rows: the idempotency record (with
    a response as long as the batch's), the balance.updated events and the audit record."""
    jid = str(uuid.uuid4())
    rows: list[tuple[str, dict[str, Any]]] = [
        (
            "INSERT INTO ledger_journals (id, tenant_id, reference, effective_date, description,"
            " metadata, posted_at, reverses_journal_id) VALUES (:id, :tenant, :ref, :day, '', '{}',"
            " :now, NULL)",
            {"tenant": tenant, "id": jid, "ref": f"{tag}-{i}", "day": "2026-01-01", "now": now},
        ),
    ]
    for leg, (acc, direction) in enumerate(((cash, "debit"), (wallet, "credit"))):
        rows.append(
            (
                "INSERT INTO ledger_entries (journal_id, leg, tenant_id, account_id, direction,"
                " amount, currency, account_sequence, balance_after, posted_at) VALUES (:j, :leg,"
                " :tenant, :acc, :dir, 125, 'PHP', :seq, :bal, :now)",
                {
                    "tenant": tenant,
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
            {"id": cash, "tenant": tenant},
        )
    )
    rows.append(
        (
            "UPDATE ledger_accounts SET credits_posted = credits_posted + 125,"
            " version = version + 1, entry_count = entry_count + 1 WHERE id = :id",
            {"id": wallet, "tenant": tenant},
        )
    )
    last_of_tx = (i + 1) % per_tx == 0
    events = sample["events"] if last_of_tx else sample["events"][:1]
    for n, (etype, payload) in enumerate(events):
        rows.append(
            (
                "INSERT INTO ff_outbox (id, event_type, schema_version, tenant_id, source,"
                " aggregate_type, aggregate_id, aggregate_sequence, payload, recorded_at, trace_id,"
                " correlation_id, causation_id) VALUES (:id, :et, 1, :tenant, 'ledger', :at, :aid,"
                " :seq, :p, :now, :tr, :tr, NULL)",
                {
                    "tenant": tenant,
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
    if not last_of_tx:
        return rows
    response = sample["response"]
    if per_tx > 1:
        response = '{"journals":[' + ",".join([response] * per_tx) + "]}"
    rows.append(
        (
            "INSERT INTO ff_idempotency (tenant_id, key, command, request_hash, succeeded,"
            " response, created_at) VALUES (:t, :k, 'ledger.post_journal', :h, :ok, :r, :now)",
            {"t": tenant, "k": f"{tag}-{i}", "h": "0" * 64, "ok": True, "r": response, "now": now},
        )
    )
    rows.append(
        (
            "UPDATE ff_audit_heads SET last_sequence = :seq, last_hash = :h"
            " WHERE tenant_id = :tenant",
            {"tenant": tenant, "seq": i + 1, "h": "b" * 64},
        )
    )
    rows.append(
        (
            "INSERT INTO ff_audit_log (tenant_id, sequence, id, occurred_at, actor_id, actor_kind,"
            " action, resource_type, resource_id, outcome, reason, trace_id, summary, prev_hash,"
            " hash) VALUES (:tenant, :seq, :id, :now, 'bench-runner', 'service',"
            " 'ledger.post_journal', 'journal', :jid, 'succeeded', 'role admin grants', :tr, :s,"
            " :h, :h)",
            {
                "tenant": tenant,
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


def seed_raw(
    execute: Callable[[str, dict[str, Any]], object], now: Any, tenant: str = "raw"
) -> tuple[str, str]:
    cash, wallet = str(uuid.uuid4()), str(uuid.uuid4())
    for aid, code, kind, bound in (
        (cash, "cash", "asset", "none"),
        (wallet, "wallet", "liability", "debits_must_not_exceed_credits"),
    ):
        execute(
            "INSERT INTO ledger_accounts (id, tenant_id, code, currency, type, balance_bound,"
            " status, metadata, created_at, debits_posted, credits_posted, debits_held,"
            " credits_held, version, entry_count) VALUES (:id, :tenant, :code, 'PHP', :kind,"
            " :bound, 'active', '{}', :now, 0, 0, 0, 0, 1, 0)",
            {"tenant": tenant, "id": aid, "code": code, "kind": kind, "bound": bound, "now": now},
        )
    execute(
        "INSERT INTO ff_audit_heads (tenant_id, last_sequence, last_hash) VALUES (:tenant, 0, :h)",
        {"tenant": tenant, "h": "0" * 64},
    )
    return cash, wallet


class RawPoster:
    """The same rows as the library, written with the bare driver: one statement per row,
    ``per_tx`` postings per transaction."""

    def __init__(
        self,
        execute: Callable[[str, dict[str, Any]], object],
        transaction: Callable[[], AbstractContextManager[object]],
        close: Callable[[], None],
        sample: dict[str, Any],
        now: Any,
        tag: str,
        tenant: str = "raw",
    ) -> None:
        self.execute, self.transaction, self.close = execute, transaction, close
        self.sample, self.now, self.tag, self.done = sample, now, tag, 0
        self.tenant = tenant
        with transaction():
            self.cash, self.wallet = seed_raw(execute, now, tenant)

    def post(self, n: int, per_tx: int) -> float:
        return n / timed(self.prepare(n, per_tx))

    def prepare(self, n: int, per_tx: int) -> Callable[[], None]:
        """The next ``n`` postings' rows, built and ready to write (building is not timed)."""
        first, self.done = self.done, self.done + n
        work = [
            raw_rows(
                i, self.tag, self.cash, self.wallet, self.sample, self.now, per_tx, self.tenant
            )
            for i in range(first, first + n)
        ]

        def run() -> None:
            for start in range(0, n, per_tx):
                with self.transaction():
                    for rows in work[start : start + per_tx]:
                        for sql, params in rows:
                            self.execute(sql, params)

        return run


def raw_sqlite(path: Path, sample: dict[str, Any], tag: str) -> RawPoster:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def transaction() -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return RawPoster(conn.execute, transaction, conn.close, sample, now, tag)


def raw_postgres(url: str, sample: dict[str, Any], tag: str, tenant: str = "raw") -> RawPoster:
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn)
    pattern = re.compile(r":([a-z]+)")
    cache: dict[str, str] = {}

    def execute(sql: str, params: dict[str, Any]) -> None:
        if sql not in cache:
            cache[sql] = pattern.sub(r"%(\1)s", sql)
        conn.execute(cache[sql], params)

    now = datetime.now(UTC)
    return RawPoster(execute, conn.transaction, conn.close, sample, now, tag, tenant)


# -- the library without a database ------------------------------------------------------
def in_memory(n: int, size: int, rounds: int) -> tuple[float, float]:
    """Median postings/s, single and batch, of the library on its in-memory adapter: the
    Python work of a posting (validation, permission, idempotency, checks, events, audit)
    with no SQL at all. A fresh store each round: the garbage collector's passes over a
    store grown by earlier rounds would otherwise slow the later ones."""
    single, batch = [], []
    for r in range(rounds):
        single.append(LibraryPoster(MemoryStorage(), f"ms{r}").single(n // rounds))
        batch.append(LibraryPoster(MemoryStorage(), f"mb{r}").batch(n // rounds, size))
    return median(single), median(batch)


def ceiling(raw: float, python: float) -> float:
    """The ratio library/raw if the library's SQL cost exactly what the raw driver's does and
    only the Python measured in memory came on top. SQLite runs in this process, so its time
    and Python's add up; a PostgreSQL server works in parallel, so no such bound applies
    there. The in-memory figure includes that adapter's own bookkeeping (a fifth to a quarter
    of it, profiled), so this is an estimate, not a proof."""
    return (1 / raw) / (1 / raw + 1 / python)


# -- report ------------------------------------------------------------------------------
def alternate(
    library: Callable[[int], float], raw: Callable[[int], float], n: int, rounds: int
) -> tuple[float, float, float]:
    """Library and raw take turns, ``n / rounds`` postings each per turn: a machine whose
    speed drifts during the run then slows both alike. Medians of the rates and of the
    per-round ratios."""
    lib_rates, raw_rates = [], []
    for _ in range(rounds):
        lib_rates.append(library(n // rounds))
        raw_rates.append(raw(n // rounds))
    ratios = [lib / raw for lib, raw in zip(lib_rates, raw_rates, strict=True)]
    return median(lib_rates), median(raw_rates), median(ratios)


def settled(
    library: Callable[[int], float], raw: Callable[[int], float], n: int, rounds: int
) -> tuple[float, float, float]:
    """:func:`alternate`, after flushing the writes earlier measurements left pending."""
    if hasattr(os, "sync"):  # not on Windows
        os.sync()
    return alternate(library, raw, n, rounds)


def report(name: str, figures: tuple[float, float, float], python: float | None = None) -> None:
    lib, raw, ratio = figures
    line = f"{name:<34} library {lib:>9,.0f}/s   raw {raw:>9,.0f}/s   ratio {ratio:5.2f}"
    if python is not None:
        line += f"   (ceiling {ceiling(raw, python):4.2f})"
    print(line)


def report_memory(name: str, rate: float) -> None:
    print(f"{name:<34} library {rate:>9,.0f}/s   {1e6 / rate:,.0f} us of Python per posting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    n, size, rounds = args.postings, args.batch_size, args.rounds
    if n % (rounds * size):
        parser.error("--postings must be a multiple of --rounds x --batch-size")
    print(
        f"{n} two-leg postings each, in {rounds} rounds alternating library and raw;"
        f" batch = {size} journals per call/transaction"
    )

    memory_single, memory_batch = in_memory(n, size, rounds)
    report_memory("In memory, no database: single", memory_single)
    report_memory("In memory, no database: batch", memory_batch)

    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            lib_engine = fresh_sqlite(Path(tmp) / "lib.db")
            single_lib = LibraryPoster(SqlStorage(lib_engine), "s")
            sample = sample_rows(lib_engine)
            fresh_sqlite(Path(tmp) / "raw1.db").dispose()
            single_raw = raw_sqlite(Path(tmp) / "raw1.db", sample, "r1")
            single = settled(single_lib.single, lambda k: single_raw.post(k, 1), n, rounds)
            single_raw.close()
            batch_lib = LibraryPoster(SqlStorage(lib_engine), "b")
            fresh_sqlite(Path(tmp) / "raw2.db").dispose()
            batch_raw = raw_sqlite(Path(tmp) / "raw2.db", sample, f"r{size}")
            batch = settled(
                lambda k: batch_lib.batch(k, size), lambda k: batch_raw.post(k, size), n, rounds
            )
            batch_raw.close()
            lib_engine.dispose()
        report("SQLite (file, WAL) single", single, memory_single)
        report("SQLite (file, WAL) batch", batch, memory_batch)

    if args.only != "sqlite":
        lib_url = sa.make_url(args.pg_url)
        raw_url = lib_url.set(database=f"{lib_url.database}_raw").render_as_string(False)
        lib_engine = fresh_pg(args.pg_url)
        single_lib = LibraryPoster(SqlStorage(lib_engine), "s")
        sample = sample_rows(lib_engine)
        fresh_pg(raw_url).dispose()
        single_raw = raw_postgres(raw_url, sample, "r1")
        single = settled(single_lib.single, lambda k: single_raw.post(k, 1), n, rounds)
        single_raw.close()
        batch_lib = LibraryPoster(SqlStorage(lib_engine), "b")
        fresh_pg(raw_url).dispose()
        batch_raw = raw_postgres(raw_url, sample, f"r{size}")
        batch = settled(
            lambda k: batch_lib.batch(k, size), lambda k: batch_raw.post(k, size), n, rounds
        )
        batch_raw.close()
        lib_engine.dispose()
        report("PostgreSQL single", single)
        report("PostgreSQL batch", batch)


if __name__ == "__main__":
    main()
