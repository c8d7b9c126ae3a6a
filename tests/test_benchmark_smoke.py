"""The ledger benchmark still runs end to end (tiny sizes, SQLite only): the figures in
docs/benchmarks.md come from it, and nothing else would notice it breaking."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ledger_benchmark_prints_every_figure() -> None:
    tiny = ["--only", "sqlite", "--postings", "40", "--rounds", "2", "--batch-size", "10"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ledger_bench", *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
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
