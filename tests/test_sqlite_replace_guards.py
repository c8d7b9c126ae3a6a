"""SQLite: INSERT OR REPLACE cannot delete append-only rows through any UNIQUE key, nor
replace an audit head (0014).

The forged rows are written over a plain sqlite3 connection, as a tamperer with the file
would: foreign keys are off there, so only the triggers stand in the way.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.migrate import downgrade
from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.authz import default_policy
from finfactory.kernel.money import from_minor
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds
from tests.conftest import context

JOURNAL_COLUMNS = (
    "id, tenant_id, reference, effective_date, description, metadata, posted_at,"
    " reverses_journal_id"
)
ENTRY_COLUMNS = (
    "journal_id, leg, tenant_id, account_id, direction, amount, currency, account_sequence,"
    " balance_after, posted_at"
)
AUDIT_COLUMNS = (
    "tenant_id, sequence, id, occurred_at, actor_id, actor_kind, action, resource_type,"
    " resource_id, outcome, reason, trace_id, summary, prev_hash, hash"
)

# (table, a REPLACE with a new primary key that collides on one other UNIQUE key)
FORGERIES = [
    pytest.param(
        "ledger_journals",
        f"INSERT OR REPLACE INTO ledger_journals ({JOURNAL_COLUMNS})"
        " SELECT 'forged', tenant_id, reference, effective_date, 'forged', metadata,"
        " posted_at, NULL FROM ledger_journals WHERE id = :original",
        id="journal-reference",
    ),
    pytest.param(
        "ledger_journals",
        f"INSERT OR REPLACE INTO ledger_journals ({JOURNAL_COLUMNS})"
        " SELECT 'forged', tenant_id, 'forged', effective_date, 'forged', metadata,"
        " posted_at, reverses_journal_id FROM ledger_journals"
        " WHERE reverses_journal_id = :original",
        id="journal-reversal",
    ),
    pytest.param(
        "ledger_entries",
        f"INSERT OR REPLACE INTO ledger_entries ({ENTRY_COLUMNS})"
        " SELECT :other, 7, tenant_id, account_id, direction, 1, currency, account_sequence,"
        " 1, posted_at FROM ledger_entries WHERE journal_id = :original AND leg = 0",
        id="entry-account-sequence",
    ),
    pytest.param(
        "ff_audit_log",
        f"INSERT OR REPLACE INTO ff_audit_log ({AUDIT_COLUMNS})"
        " SELECT tenant_id, 999, id, occurred_at, actor_id, actor_kind, action, resource_type,"
        " resource_id, outcome, 'forged', trace_id, summary, prev_hash, hash"
        " FROM ff_audit_log WHERE sequence = 1",
        id="audit-id",
    ),
    pytest.param(
        "ff_audit_heads",
        "INSERT OR REPLACE INTO ff_audit_heads (tenant_id, last_sequence, last_hash)"
        " SELECT tenant_id, 1, last_hash FROM ff_audit_heads",
        id="audit-head-wound-back",
    ),
]


@attrs.frozen
class Books:
    engine: sa.Engine
    ledger: LedgerService
    cash: str
    bank: str
    ids: dict[str, str]  # original: a reversed journal; other: a second journal


def _transfer(reference: str, debit: str, credit: str) -> c.PostJournal:
    amount = from_minor(100, "PHP")
    return c.PostJournal(
        reference=reference,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=amount),
            c.Leg(account_id=credit, direction="credit", amount=amount),
        ],
    )


@pytest.fixture
def books(sqlite_engine: sa.Engine) -> Books:
    ledger = LedgerService(
        SqlStorage(sqlite_engine), default_policy(), ManualClock(), SequentialIds()
    )
    ctx = context()
    cash, bank = (
        ledger.open_account(ctx, c.OpenAccount(code=code, currency="PHP", type="asset")).id
        for code in ("cash", "bank")
    )
    original = ledger.post_journal(ctx, _transfer("j1", cash, bank)).id
    other = ledger.post_journal(ctx, _transfer("j2", bank, cash)).id
    ledger.reverse_journal(ctx, c.ReverseJournal(journal_id=original, reference="j1-rev"))
    return Books(sqlite_engine, ledger, cash, bank, {"original": original, "other": other})


def _rows(engine: sa.Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1, 2")]


def _forge(engine: sa.Engine, statement: str, params: dict[str, str]) -> None:
    with closing(sqlite3.connect(str(engine.url.database))) as raw:
        raw.execute(statement, params)
        raw.commit()


@pytest.mark.parametrize(("table", "statement"), FORGERIES)
def test_replace_colliding_on_a_unique_key_is_refused(
    books: Books, table: str, statement: str
) -> None:
    before = _rows(books.engine, table)
    with pytest.raises(sqlite3.IntegrityError, match=f"{table} rows cannot be replaced"):
        _forge(books.engine, statement, books.ids)
    assert _rows(books.engine, table) == before
    books.ledger.post_journal(context(), _transfer("after", books.cash, books.bank))


@pytest.mark.parametrize(("table", "statement"), FORGERIES)
def test_without_the_guards_the_same_replace_rewrites_history(
    books: Books, table: str, statement: str
) -> None:
    """The control case: each forgery really collides, and 0014's downgrade drops its guard."""
    downgrade(books.engine, "0013")
    before = _rows(books.engine, table)
    _forge(books.engine, statement, books.ids)
    after = _rows(books.engine, table)
    assert len(after) == len(before)  # one row deleted, one forged in its place
    assert after != before


def test_new_rows_still_go_in(books: Books) -> None:
    """The guards refuse collisions only: postings, reversals and NULL reversal links pass."""
    ctx = context()
    journals = len(_rows(books.engine, "ledger_journals"))
    posted = books.ledger.post_journal(ctx, _transfer("j3", books.cash, books.bank))
    books.ledger.reverse_journal(ctx, c.ReverseJournal(journal_id=posted.id, reference="j3-rev"))
    _forge(
        books.engine,
        f"INSERT OR REPLACE INTO ledger_journals ({JOURNAL_COLUMNS})"
        " SELECT 'new', tenant_id, 'new', effective_date, '', metadata, posted_at, NULL"
        " FROM ledger_journals WHERE id = :original",
        books.ids,
    )
    assert len(_rows(books.engine, "ledger_journals")) == journals + 3
    assert len(books.ledger.get_journal(ctx, posted.id).legs) == 2
