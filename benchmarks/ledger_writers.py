"""Ledger posting throughput on PostgreSQL with several writers at once, against the raw
driver writing the same rows with as many writers.

Run: ``python -m benchmarks.ledger_writers`` (PostgreSQL at FINFACTORY_BENCH_PG_URL; it drops
and re-creates that database and the one named with ``_raw`` appended).

Each writer is a process of its own (threads would take turns for the GIL) posting single
two-leg journals, one transaction each, in a tenant of its own, as a service serving many
tenants does. Writers in different tenants share no rows, but every command that writes outbox
events takes one transaction-scoped advisory lock, held until commit, so that a reader's
cursor never skips an event committed late (see docs/kernel.md, "Outbox"). The raw writers
take no such lock: the ratio at each number of writers shows what the library's work and that
lock cost together, and the library's rate against its own single writer shows how far it
scales.

For each number of writers: the library, then raw, in ``--rounds`` rounds; medians of the
rates and of the per-round ratios. Each writer builds its postings before a common start, and
the rate is all postings over the time from that start until the last writer finished.
Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from statistics import median
from typing import Any

import sqlalchemy as sa

from benchmarks.ledger_bench import (
    CTX,
    PG_URL,
    LibraryPoster,
    fresh_pg,
    raw_postgres,
    sample_rows,
)
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.context import RequestContext

_START_TIMEOUT = 300.0  # seconds for every writer to connect and build its postings


def writer(
    kind: str,
    url: str,
    tenant: str,
    n: int,
    sample: dict[str, Any],
    start: Barrier,
    finished: Queue[float],
) -> None:
    """One writer process: set up, wait for the common start, post ``n``, report when done."""
    close: Callable[[], None]
    if kind == "library":
        engine = create_engine(url)
        poster = LibraryPoster(SqlStorage(engine), tenant, RequestContext(tenant, CTX.actor))
        run, close = poster.prepare_single(n), engine.dispose
    else:
        raw = raw_postgres(url, sample, tenant, tenant)
        run, close = raw.prepare(n, 1), raw.close
    start.wait(_START_TIMEOUT)
    run()
    finished.put(time.perf_counter())
    close()


def measure(kind: str, url: str, writers: int, n: int, sample: dict[str, Any], tag: str) -> float:
    """Postings/s of ``writers`` processes posting ``n`` in all, ``n / writers`` each."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(writers + 1)
    finished: Queue[float] = spawn.Queue()
    each = n // writers
    processes = [
        spawn.Process(
            target=writer,
            args=(kind, url, f"{tag}-{k}", each, sample, start, finished),
        )
        for k in range(writers)
    ]
    for process in processes:
        process.start()
    start.wait(_START_TIMEOUT)  # a writer that failed to start breaks the barrier: no hang
    began = time.perf_counter()
    ends = [finished.get(timeout=_START_TIMEOUT + 3600) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a {kind} writer exited with {process.exitcode}")
    return each * writers / (max(ends) - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=2400, help="per measurement, in all")
    parser.add_argument("--writers", default="1,2,4,8", help="comma-separated writer counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    counts = [int(w) for w in args.writers.split(",")]
    if any(w < 1 or args.postings % w for w in counts):
        parser.error("--postings must be a positive multiple of every writer count")

    lib_url = sa.make_url(args.pg_url)
    raw_url = lib_url.set(database=f"{lib_url.database}_raw").render_as_string(False)
    lib_engine = fresh_pg(args.pg_url)
    LibraryPoster(SqlStorage(lib_engine), "sample")  # rows for the raw writers to copy
    sample = sample_rows(lib_engine)
    lib_engine.dispose()
    fresh_pg(raw_url).dispose()
    lib_target = lib_url.render_as_string(False)
    print(
        f"PostgreSQL, {args.postings} single postings per measurement; each writer a process"
        f" with a tenant of its own; medians of {args.rounds} rounds"
    )

    single_writer: float | None = None
    for writers in counts:
        lib_rates, raw_rates = [], []
        for r in range(args.rounds):
            if hasattr(os, "sync"):  # not on Windows: flush earlier rounds' pending writes
                os.sync()
            tag = f"w{writers}r{r}"
            lib_rates.append(measure("library", lib_target, writers, args.postings, sample, tag))
            raw_rates.append(measure("raw", raw_url, writers, args.postings, sample, tag))
        lib, raw = median(lib_rates), median(raw_rates)
        ratio = median(a / b for a, b in zip(lib_rates, raw_rates, strict=True))
        if writers == 1:
            single_writer = lib
        line = (
            f"{writers:>2} writer{'s' if writers > 1 else ' '}"
            f"   library {lib:>7,.0f}/s   raw {raw:>7,.0f}/s   ratio {ratio:4.2f}"
        )
        if single_writer is not None:
            line += f"   library x{lib / single_writer:4.2f} of one writer"
        print(line, flush=True)


if __name__ == "__main__":
    main()
