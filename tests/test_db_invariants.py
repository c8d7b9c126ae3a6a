"""Writes that bypass the library are refused by the database itself."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import UuidGenerator
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import BATCH_CHUNK, LedgerService
from finfactory.primitives.ledger.tables import accounts, entries, journals
from finfactory.testing import ManualClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    name = "sqlite_engine" if request.param == "sqlite" else "pg_clean"
    found: sa.Engine = request.getfixturevalue(name)
    return found


@pytest.fixture
def pg(pg_clean: sa.Engine) -> sa.Engine:
    return pg_clean


def _ledger(engine: sa.Engine) -> LedgerService:
    return LedgerService(SqlStorage(engine), default_policy(), ManualClock(), UuidGenerator())


def _ctx() -> RequestContext:
    return RequestContext(
        tenant_id="tenant-a", actor=Actor("ops", ActorKind.USER, frozenset({"admin"}))
    )


def _open(engine: sa.Engine, code: str, type_: str = "asset", bound: str = "none") -> str:
    return (
        _ledger(engine)
        .open_account(
            _ctx(), c.OpenAccount(code=code, currency="PHP", type=type_, balance_bound=bound)
        )
        .id
    )


def _journal(conn: sa.Connection, journal_id: str) -> None:
    conn.execute(
        sa.insert(journals).values(
            id=journal_id,
            tenant_id="tenant-a",
            reference=f"ref-{journal_id}",
            effective_date=date(2026, 1, 1),
            description="",
            metadata={},
            posted_at=NOW,
            reverses_journal_id=None,
        )
    )


def _entry(conn: sa.Connection, journal_id: str, leg: int, account_id: str, **kw: Any) -> None:
    values: dict[str, Any] = {
        "journal_id": journal_id,
        "leg": leg,
        "tenant_id": "tenant-a",
        "account_id": account_id,
        "direction": "debit",
        "amount": 100,
        "currency": "PHP",
        "account_sequence": 1000 + leg,
        "balance_after": 0,
        "posted_at": NOW,
    }
    values.update(kw)
    conn.execute(sa.insert(entries).values(**values))


def _transfer_legs(debit: str, credit: str) -> list[c.Leg]:
    amount = Money("1.00", "PHP")
    return [
        c.Leg(account_id=debit, direction="debit", amount=amount),
        c.Leg(account_id=credit, direction="credit", amount=amount),
    ]


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- PostgreSQL: every journal balances per currency (deferred to COMMIT) ---------------------


@pytest.mark.postgres
def test_pg_unbalanced_journal_is_refused_at_commit(pg: sa.Engine) -> None:
    cash, bank = _open(pg, "cash"), _open(pg, "bank")
    with pg.connect() as conn:
        tx = conn.begin()
        _journal(conn, "j-unbalanced")
        _entry(conn, "j-unbalanced", 0, cash, direction="debit", amount=100)
        _entry(conn, "j-unbalanced", 1, bank, direction="credit", amount=99)
        # the check is deferred: the statements themselves went through
        with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
            tx.commit()
    assert _count(pg, journals) == 0
    assert _count(pg, entries) == 0


@pytest.mark.postgres
def test_pg_journal_with_a_single_entry_is_refused_at_commit(pg: sa.Engine) -> None:
    cash = _open(pg, "cash")
    with pg.connect() as conn:
        tx = conn.begin()
        _journal(conn, "j-one-leg")
        _entry(conn, "j-one-leg", 0, cash)
        with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
            tx.commit()
    assert _count(pg, entries) == 0


@pytest.mark.postgres
def test_pg_journal_balanced_across_but_not_within_currencies_is_refused(pg: sa.Engine) -> None:
    cash, bank = _open(pg, "cash"), _open(pg, "bank")
    with pg.connect() as conn:
        tx = conn.begin()
        _journal(conn, "j-fx")
        _entry(conn, "j-fx", 0, cash, direction="debit", amount=100, currency="PHP")
        _entry(conn, "j-fx", 1, bank, direction="credit", amount=100, currency="USD")
        with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
            tx.commit()
    assert _count(pg, journals) == 0


@pytest.mark.postgres
def test_pg_balanced_journal_written_directly_is_accepted(pg: sa.Engine) -> None:
    """The control case: the trigger refuses imbalance, not direct writes as such."""
    cash, bank = _open(pg, "cash"), _open(pg, "bank")
    with pg.begin() as conn:
        _journal(conn, "j-ok")
        _entry(conn, "j-ok", 0, cash, direction="debit", amount=100)
        _entry(conn, "j-ok", 1, bank, direction="credit", amount=60)
        _entry(conn, "j-ok", 2, bank, direction="credit", amount=40)
    assert _count(pg, entries) == 3


@pytest.mark.postgres
def test_pg_check_stays_deferred_for_the_callers_writes_around_a_ledger_command(
    pg: sa.Engine,
) -> None:
    """The library checks its own entries as its statement ends; a caller's journal written
    over several statements in the same transaction is still checked only at commit."""
    cash, bank = _open(pg, "cash"), _open(pg, "bank")
    ledger = _ledger(pg)
    legs = _transfer_legs(cash, bank)
    with pg.connect() as conn:
        tx = conn.begin()
        _journal(conn, "j-caller")
        _entry(conn, "j-caller", 0, cash, direction="debit", amount=100)  # half a journal
        with SqlStorage.join(conn) as uow:
            ledger.post_journals(
                _ctx(),
                c.PostJournals(journals=[c.PostJournal(reference="lib", legs=legs)]),
                uow=uow,
            )
        _entry(conn, "j-caller", 1, bank, direction="credit", amount=100)  # now it balances
        tx.commit()
    assert _count(pg, journals) == 2

    with pg.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            ledger.post_journal(_ctx(), c.PostJournal(reference="lib-2", legs=legs), uow=uow)
        _journal(conn, "j-unbalanced")
        _entry(conn, "j-unbalanced", 0, cash, direction="debit", amount=100, account_sequence=2000)
        with pytest.raises(sa.exc.IntegrityError, match="does not balance"):
            tx.commit()
    assert _count(pg, journals) == 2


@pytest.mark.postgres
def test_pg_check_is_deferred_again_after_a_batch_in_an_own_multi_command_transaction(
    pg: sa.Engine,
) -> None:
    """In a transaction FinFactory opened, a batch checks its entries chunk by chunk; once it
    ends, a journal written by hand over several statements is checked at commit again."""
    cash, bank = _open(pg, "cash"), _open(pg, "bank")
    ledger = _ledger(pg)
    legs = _transfer_legs(cash, bank)
    batch = [c.PostJournal(reference=f"b-{n}", legs=legs) for n in range(2 * BATCH_CHUNK + 1)]
    with SqlStorage(pg).transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        ledger.post_journals(_ctx(), c.PostJournals(journals=batch), uow=uow)
        _journal(uow.connection, "j-by-hand")
        _entry(uow.connection, "j-by-hand", 0, cash, direction="debit", amount=100)
        _entry(uow.connection, "j-by-hand", 1, bank, direction="credit", amount=100)
    assert _count(pg, journals) == len(batch) + 1


# -- both SQL backends: CHECK constraints ---------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -100])
def test_non_positive_entry_amount_is_refused(engine: sa.Engine, amount: int) -> None:
    cash = _open(engine, "cash")
    with engine.connect() as conn, conn.begin():
        _journal(conn, "j-bad")
        with pytest.raises(sa.exc.IntegrityError, match="ck_ledger_entries_amount_positive"):
            _entry(conn, "j-bad", 0, cash, amount=amount)
    assert _count(engine, entries) == 0


@pytest.mark.parametrize("direction", ["across", "DEBIT", ""])
def test_unknown_entry_direction_is_refused(engine: sa.Engine, direction: str) -> None:
    cash = _open(engine, "cash")
    with engine.connect() as conn, conn.begin():
        _journal(conn, "j-bad")
        with pytest.raises(sa.exc.IntegrityError, match="ck_ledger_entries_direction"):
            _entry(conn, "j-bad", 0, cash, direction=direction)
    assert _count(engine, entries) == 0


def _set_totals(engine: sa.Engine, account_id: str, **totals: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(**totals))


def _totals(engine: sa.Engine, account_id: str) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                accounts.c.debits_posted,
                accounts.c.credits_posted,
                accounts.c.debits_held,
                accounts.c.credits_held,
            ).where(accounts.c.id == account_id)
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


@pytest.mark.parametrize(
    "breach",
    [
        {"debits_posted": 501},
        {"debits_held": 501},
        {"debits_posted": 300, "debits_held": 201},
    ],
)
def test_debit_bound_breach_is_refused(engine: sa.Engine, breach: dict[str, int]) -> None:
    wallet = _open(engine, "wallet", "liability", "debits_must_not_exceed_credits")
    _set_totals(engine, wallet, credits_posted=500)
    _set_totals(engine, wallet, debits_posted=300, debits_held=200)  # exactly at the bound
    with pytest.raises(sa.exc.IntegrityError, match="ck_ledger_accounts_debit_bound"):
        _set_totals(engine, wallet, **breach)
    assert _totals(engine, wallet) == (300, 500, 200, 0)


@pytest.mark.parametrize("breach", [{"credits_posted": 501}, {"credits_held": 501}])
def test_credit_bound_breach_is_refused(engine: sa.Engine, breach: dict[str, int]) -> None:
    card = _open(engine, "card", "asset", "credits_must_not_exceed_debits")
    _set_totals(engine, card, debits_posted=500, credits_posted=500)
    with pytest.raises(sa.exc.IntegrityError, match="ck_ledger_accounts_credit_bound"):
        _set_totals(engine, card, **breach)
    assert _totals(engine, card) == (500, 500, 0, 0)


@pytest.mark.parametrize(
    "column", ["debits_posted", "credits_posted", "debits_held", "credits_held"]
)
def test_negative_account_totals_are_refused(engine: sa.Engine, column: str) -> None:
    cash = _open(engine, "cash")
    with pytest.raises(sa.exc.IntegrityError, match="ck_ledger_accounts_totals_non_negative"):
        _set_totals(engine, cash, **{column: -1})
    assert _totals(engine, cash) == (0, 0, 0, 0)


def test_unbounded_account_may_go_either_way(engine: sa.Engine) -> None:
    """The control case: the bound checks only apply to accounts that declare a bound."""
    cash = _open(engine, "cash")
    _set_totals(engine, cash, debits_posted=10, credits_posted=900, credits_held=50)
    assert _totals(engine, cash) == (10, 900, 0, 50)
