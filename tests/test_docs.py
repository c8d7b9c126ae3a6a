"""The documentation's code must run, and so must the demo.

Every ```python block in docs/*.md and README.md is executed, in order, one namespace per
file, so later examples can use what earlier ones built. A block directly preceded by the
HTML comment ``<!-- no-test -->`` is skipped (use it for shell sessions or fragments).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SKIP_MARK = "<!-- no-test -->"
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first code line number, code) of each runnable ```python block, in document order."""
    blocks = []
    for match in _FENCE.finditer(text):
        if text[: match.start()].rstrip().endswith(SKIP_MARK):
            continue
        first_line = text.count("\n", 0, match.start(1)) + 1
        blocks.append((first_line, match.group(1)))
    return blocks


def test_block_extraction_honours_the_skip_mark() -> None:
    text = (
        "intro\n```python\na = 1\n```\n\n<!-- no-test -->\n```python\nraise SystemExit\n```\n"
        "```bash\nls\n```\n```python title=x\nb = a + 1\n```\n"
    )
    assert python_blocks(text) == [(3, "a = 1\n"), (14, "b = a + 1\n")]


def _with_examples() -> list[Path]:
    return [d for d in DOC_FILES if python_blocks(d.read_text(encoding="utf-8"))]


def test_the_user_guides_have_runnable_examples() -> None:
    names = {d.name for d in _with_examples()}
    assert {"quickstart.md", "kernel.md", "ledger.md"} <= names


@pytest.mark.parametrize("doc", _with_examples(), ids=lambda p: p.name)
def test_doc_examples_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(doc.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # anything an example writes lands in a scratch directory
    namespace: dict[str, Any] = {"__name__": f"docs_{doc.stem}"}
    for first_line, code in blocks:
        # Pad with blank lines so tracebacks point at the line in the markdown file.
        compiled = compile("\n" * (first_line - 1) + code, str(doc), "exec")
        try:
            exec(compiled, namespace)
        except Exception:
            pytest.fail(
                f"{doc.name}: the python block at line {first_line} failed:\n"
                f"{traceback.format_exc()}",
                pytrace=False,
            )


# -- the demo -----------------------------------------------------------------------------

EXPECTED_LINES = (
    "journal.posted",
    "balance.updated",
    "hold.created",
    "hold.released",
    "transaction.reversed",
    "ledger.account.opened",
    "ledger.insufficient_funds",
    "idempotency_conflict",
    "Balances (PHP)",
    "Statement of wallet.alice",
    "trial balance: assets 1,500.00 = liabilities + revenue 1,500.00",
    "audit chain: verified",
)


def run_demo(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.ledger_demo",
            "--deterministic",
            "--database-url",
            database_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_runs_and_is_deterministic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = run_demo(url)
    assert first.returncode == 0, first.stdout + first.stderr
    for expected in EXPECTED_LINES:
        assert expected in first.stdout, f"demo output lacks {expected!r}"
    second = run_demo(url)  # the same file: the demo starts from a fresh database each run
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout == first.stdout


def test_demo_exits_non_zero_on_failure(tmp_path: Path) -> None:
    bad = run_demo(f"sqlite:///{tmp_path / 'missing-dir' / 'demo.db'}")
    assert bad.returncode != 0


@pytest.mark.postgres
def test_demo_gives_the_same_output_on_postgresql(tmp_path: Path) -> None:
    """Deterministic ledger behaviour: same commands, same clock, same results and hashes."""
    base = sa.make_url(
        os.environ.get(
            "FINFACTORY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/finfactory_test"
        )
    )
    target = base.set(database=f"{base.database}_demo")
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if (
            conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
            ).first()
            is None
        ):
            conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    on_pg = run_demo(target.render_as_string(hide_password=False))
    assert on_pg.returncode == 0, on_pg.stdout + on_pg.stderr
    on_sqlite = run_demo(f"sqlite:///{tmp_path / 'demo.db'}")
    assert on_sqlite.returncode == 0, on_sqlite.stdout + on_sqlite.stderr
    # Everything but the first line (which names the database) must match.
    assert on_pg.stdout.splitlines()[1:] == on_sqlite.stdout.splitlines()[1:]
