"""The ledger benchmarks still run end to end (tiny sizes): the figures in docs/benchmarks.md
come from them, and nothing else would notice them breaking."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def test_ledger_benchmark_prints_every_figure() -> None:
    tiny = ["--only", "sqlite", "--postings", "40", "--rounds", "2", "--batch-size", "10"]
    done = _run("benchmarks.ledger_bench", tiny)
    lines = done.stdout.splitlines()
    memory = [line for line in lines if line.startswith("In memory")]
    sqlite = [line for line in lines if line.startswith("SQLite")]
    assert len(memory) == 2, done.stdout
    assert len(sqlite) == 2, done.stdout
    for line in memory:
        assert re.search(r"library +[\d,]+/s +[\d,]+ us of Python per posting$", line), line
    for line in sqlite:
        found = re.search(r"ratio +(\d+\.\d\d) +\(ceiling (\d+\.\d\d)\)$", line)
        assert found, line
        ratio, ceiling = float(found[1]), float(found[2])
        assert ratio > 0, line
        assert 0 < ceiling < 1, line
    assert not any(line.startswith("PostgreSQL") for line in lines)


def test_writers_benchmark_prints_a_line_per_writer_count() -> None:
    target = sa.make_url(PG_URL)
    url = target.set(database=f"{target.database}_writers").render_as_string(False)
    tiny = ["--postings", "8", "--writers", "1,2", "--rounds", "1", "--pg-url", url]
    try:
        done = _run("benchmarks.ledger_writers", tiny)
    finally:
        _drop_databases(target, f"{target.database}_writers", f"{target.database}_writers_raw")
    lines = [line for line in done.stdout.splitlines() if "writer" in line and "ratio" in line]
    pattern = r"library +[\d,]+/s +raw +[\d,]+/s +ratio +\d+\.\d\d +library x(\d+\.\d\d) of one"
    assert [line.split()[0] for line in lines] == ["1", "2"], done.stdout
    found = [re.search(pattern, line) for line in lines]
    assert all(found), done.stdout
    one_writer = found[0]
    assert one_writer is not None
    assert one_writer[1] == "1.00"


def _drop_databases(server: sa.URL, *names: str) -> None:
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
