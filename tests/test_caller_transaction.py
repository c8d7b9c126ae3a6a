"""Ledger commands inside a transaction the product owns (SqlStorage.join).

The product's row and everything the ledger writes (journal, entries, holds, balances, outbox,
audit, idempotency key) commit together or vanish together, and only the product commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.audit import verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import IntegrityViolation
from finfactory.kernel.money import Money, from_minor
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import BalanceBoundExceeded
from finfactory.primitives.ledger.service import BATCH_CHUNK, LedgerService
from finfactory.testing import ManualClock, SequentialIds

TENANT = "shop"
product = sa.MetaData()
orders = sa.Table(
    "product_orders",
    product,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("amount", sa.Integer, nullable=False),
)


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "product_invoices"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    total: Mapped[int]


def _ctx() -> RequestContext:
    return RequestContext(
        tenant_id=TENANT, actor=Actor("checkout", ActorKind.SERVICE, frozenset({"admin"}))
    )


def php(minor: int) -> Money:
    return from_minor(minor, "PHP")


def transfer(reference: str, debit: str, credit: str, minor: int) -> c.PostJournal:
    return c.PostJournal(
        reference=reference,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=php(minor)),
            c.Leg(account_id=credit, direction="credit", amount=php(minor)),
        ],
    )


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    name = "sqlite_engine" if request.param == "sqlite" else "pg_clean"
    found: sa.Engine = request.getfixturevalue(name)
    with found.begin() as conn:
        for table in (orders, Invoice.__table__):
            assert isinstance(table, sa.Table)
            table.drop(conn, checkfirst=True)
            table.create(conn)
    return found


class Shop:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.ledger = LedgerService(
            SqlStorage(engine), default_policy(), ManualClock(), SequentialIds()
        )
        ctx = _ctx()
        self.cash = self.ledger.open_account(
            ctx, c.OpenAccount(code="cash", currency="PHP", type="asset")
        ).id
        self.wallet = self.ledger.open_account(
            ctx,
            c.OpenAccount(
                code="wallet",
                currency="PHP",
                type="liability",
                balance_bound="debits_must_not_exceed_credits",
            ),
        ).id
        self.merchant = self.ledger.open_account(
            ctx, c.OpenAccount(code="merchant", currency="PHP", type="liability")
        ).id
        self.ledger.post_journal(ctx, transfer("seed", self.cash, self.wallet, 10_000))

    def state(self) -> dict[str, Any]:
        """Everything relevant, as a separate connection sees it."""
        with self.engine.connect() as conn:

            def scalar(sql: str) -> Any:
                return conn.execute(sa.text(sql), {"t": TENANT}).scalar_one()

            return {
                "orders": scalar("SELECT count(*) FROM product_orders"),
                "invoices": scalar("SELECT count(*) FROM product_invoices"),
                "journals": scalar("SELECT count(*) FROM ledger_journals WHERE tenant_id = :t"),
                "entries": scalar("SELECT count(*) FROM ledger_entries WHERE tenant_id = :t"),
                "holds": scalar("SELECT count(*) FROM ledger_holds WHERE tenant_id = :t"),
                "outbox": scalar("SELECT count(*) FROM ff_outbox WHERE tenant_id = :t"),
                "audit": scalar("SELECT count(*) FROM ff_audit_log WHERE tenant_id = :t"),
                "audit_head": scalar(
                    "SELECT last_sequence FROM ff_audit_heads WHERE tenant_id = :t"
                ),
                "keys": scalar("SELECT count(*) FROM ff_idempotency WHERE tenant_id = :t"),
                "accounts": sorted(
                    tuple(r)
                    for r in conn.execute(
                        sa.text(
                            "SELECT code, debits_posted, credits_posted, debits_held, credits_held,"
                            " version, entry_count FROM ledger_accounts WHERE tenant_id = :t"
                        ),
                        {"t": TENANT},
                    )
                ),
            }

    def chain_ok(self) -> bool:
        with SqlStorage(self.engine).read() as uow:
            return verify_chain(uow.kernel.audit_records(TENANT), uow.kernel.audit_head(TENANT)).ok


def _checkout(shop: Shop, conn: sa.Connection | Session, key: str) -> tuple[str, str]:
    """The ledger part of a checkout, run in the caller's transaction."""
    ctx = _ctx()
    with SqlStorage.join(conn) as uow:
        assert uow.owns_transaction is False
        journal = shop.ledger.post_journal(
            ctx,
            transfer(f"pay-{key}", shop.wallet, shop.merchant, 2_000),
            idempotency_key=f"checkout-{key}",
            uow=uow,
        )
        hold = shop.ledger.create_hold(
            ctx,
            c.CreateHold(
                reference=f"tip-{key}",
                debit_account_id=shop.wallet,
                credit_account_id=shop.merchant,
                amount=php(500),
            ),
            uow=uow,
        )
        # reads inside the caller's transaction see its uncommitted writes
        assert shop.ledger.balance(ctx, shop.wallet, uow=uow).available == php(7_500)
    with SqlStorage.join(conn) as uow:  # a second join in the same transaction
        shop.ledger.capture_hold(
            ctx, c.CaptureHold(hold_id=hold.id, reference=f"cap-{key}", amount=php(200)), uow=uow
        )
    return journal.id, hold.id


@contextmanager
def _count_commits(engine: sa.Engine) -> Iterator[list[int]]:
    """Every COMMIT SQLAlchemy sends on ``engine`` while the block runs."""
    commits: list[int] = []

    def seen(conn: sa.Connection) -> None:
        commits.append(1)

    sa.event.listen(engine, "commit", seen)
    try:
        yield commits
    finally:
        sa.event.remove(engine, "commit", seen)


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_connection_transaction_commits_or_discards_everything_together(
    engine: sa.Engine, outcome: str
) -> None:
    shop = Shop(engine)
    baseline = shop.state()
    with _count_commits(engine) as commits, engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.insert(orders).values(id="o-1", amount=2_000))
        journal_id, _ = _checkout(shop, conn, "o-1")
        assert conn.in_transaction()
        assert tx.is_active
        assert commits == []  # the library committed nothing
        assert shop.state() == baseline  # and nothing is visible outside the transaction
        if outcome == "rollback":
            tx.rollback()
        else:
            tx.commit()

    after = shop.state()
    if outcome == "rollback":
        assert after == baseline
        assert shop.chain_ok()
        # the idempotency key went with the rollback: the same request runs afresh
        again = shop.ledger.post_journal(
            _ctx(),
            transfer("pay-o-1", shop.wallet, shop.merchant, 2_000),
            idempotency_key="checkout-o-1",
        )
        assert again.id != journal_id
        assert shop.state()["audit_head"] == baseline["audit_head"] + 1  # no gap left
    else:
        assert after["orders"] == 1
        assert after["journals"] == baseline["journals"] + 2  # payment and capture
        assert after["entries"] == baseline["entries"] + 4
        assert after["holds"] == baseline["holds"] + 1
        assert after["outbox"] > baseline["outbox"]
        assert after["audit"] == baseline["audit"] + 3
        assert after["audit_head"] == baseline["audit_head"] + 3
        assert after["keys"] == baseline["keys"] + 1
        assert shop.chain_ok()
        assert shop.ledger.balance(_ctx(), shop.wallet).posted == php(7_800)
        assert shop.ledger.get_journal(_ctx(), journal_id).reference == "pay-o-1"
        replay = shop.ledger.post_journal(
            _ctx(),
            transfer("pay-o-1", shop.wallet, shop.merchant, 2_000),
            idempotency_key="checkout-o-1",
        )
        assert replay.id == journal_id


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_orm_session_transaction_commits_or_discards_everything_together(
    engine: sa.Engine, outcome: str
) -> None:
    shop = Shop(engine)
    baseline = shop.state()
    with _count_commits(engine) as commits, Session(engine) as session:
        session.add(Invoice(id="inv-1", total=2_000))
        session.flush()
        journal_id, hold_id = _checkout(shop, session, "inv-1")
        session.add(Invoice(id="inv-2", total=1))  # the product keeps working afterwards
        session.flush()
        assert session.in_transaction()
        assert commits == []
        assert shop.state() == baseline
        if outcome == "rollback":
            session.rollback()
        else:
            session.commit()

    after = shop.state()
    if outcome == "rollback":
        assert after == baseline
        assert shop.chain_ok()
    else:
        assert after["invoices"] == 2
        assert after["journals"] == baseline["journals"] + 2
        assert after["keys"] == baseline["keys"] + 1
        assert after["audit_head"] == baseline["audit_head"] + 3
        assert shop.chain_ok()
        assert shop.ledger.get_hold(_ctx(), hold_id).status == "captured"
        assert shop.ledger.get_journal(_ctx(), journal_id).reference == "pay-inv-1"


def test_a_rejection_inside_the_callers_transaction_leaves_the_choice_to_the_caller(
    engine: sa.Engine,
) -> None:
    shop = Shop(engine)
    baseline = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.insert(orders).values(id="o-big", amount=1))
        with pytest.raises(BalanceBoundExceeded), SqlStorage.join(conn) as uow:
            shop.ledger.post_journal(
                _ctx(), transfer("too-much", shop.wallet, shop.merchant, 50_000), uow=uow
            )
        assert tx.is_active  # the caller's transaction is still usable
        assert shop.state() == baseline
        conn.execute(sa.insert(orders).values(id="o-small", amount=1))
        tx.commit()
    after = shop.state()
    assert after["orders"] == 2
    assert after["journals"] == baseline["journals"]
    assert after["accounts"] == baseline["accounts"]
    assert after["audit"] == baseline["audit"] + 1  # the rejection, committed by the caller
    assert shop.chain_ok()


@contextmanager
def refused_rows(engine: sa.Engine, table: str, condition: str) -> Iterator[None]:
    """A trigger that makes the database itself refuse inserts into ``table`` whose row
    meets ``condition`` (SQL on ``NEW``, the same on both dialects): a write failure the
    library's own checks cannot see coming (failure injection)."""
    name = f"test_refuse_{table}"
    if engine.dialect.name == "postgresql":
        install = [
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF {condition} THEN"
            " RAISE EXCEPTION 'refused by test trigger' USING ERRCODE = 'check_violation';"
            " END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {name}()",
        ]
        remove = [f"DROP TRIGGER {name} ON {table}", f"DROP FUNCTION {name}()"]
    else:
        install = [
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {condition}"
            " BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
        ]
        remove = [f"DROP TRIGGER {name}"]
    with engine.begin() as conn:
        for sql in install:
            conn.exec_driver_sql(sql)
    try:
        yield
    finally:
        with engine.begin() as conn:
            for sql in remove:
                conn.exec_driver_sql(sql)


def refused_reference(engine: sa.Engine, reference: str) -> AbstractContextManager[None]:
    """The database refuses journals with ``reference``."""
    return refused_rows(engine, "ledger_journals", f"NEW.reference = '{reference}'")


def _batch_with_refused_last_chunk(shop: Shop) -> c.PostJournals:
    # The refused journal sits in the last chunk: the earlier chunks have been sent (and
    # applied) by then, and the last one is still in flight when the handler returns.
    size = 2 * BATCH_CHUNK + 5
    journals = [transfer(f"mid-{n}", shop.wallet, shop.merchant, 1) for n in range(size)]
    journals[-2] = transfer("poison", shop.wallet, shop.merchant, 1)
    return c.PostJournals(journals=journals)


def test_a_write_the_database_refuses_mid_batch_undoes_the_whole_batch(
    engine: sa.Engine,
) -> None:
    shop = Shop(engine)
    baseline = shop.state()
    batch = _batch_with_refused_last_chunk(shop)
    with refused_reference(engine, "poison"), pytest.raises(IntegrityViolation):
        shop.ledger.post_journals(_ctx(), batch, idempotency_key="refused-batch")
    assert shop.state() == baseline  # no journal, entry, balance, event, audit record or key
    assert shop.chain_ok()
    # Nothing was remembered under the key: the same batch goes through once allowed.
    result = shop.ledger.post_journals(_ctx(), batch, idempotency_key="refused-batch")
    assert len(result.journals) == len(batch.journals)


def test_a_write_the_database_refuses_mid_batch_in_the_callers_transaction(
    engine: sa.Engine,
) -> None:
    shop = Shop(engine)
    baseline = shop.state()
    batch = _batch_with_refused_last_chunk(shop)
    with refused_reference(engine, "poison"), engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.insert(orders).values(id="o-before", amount=1))
        with pytest.raises(IntegrityViolation), SqlStorage.join(conn) as uow:
            shop.ledger.post_journals(_ctx(), batch, idempotency_key="refused-batch", uow=uow)
        assert tx.is_active  # the command was undone alone; the caller's transaction goes on
        conn.execute(sa.insert(orders).values(id="o-after", amount=1))
        tx.commit()
    after = shop.state()
    assert after["orders"] == baseline["orders"] + 2
    assert {k: v for k, v in after.items() if k != "orders"} == {
        k: v for k, v in baseline.items() if k != "orders"
    }
    assert shop.chain_ok()


def _advisory_locks(conn: sa.Connection) -> int:
    return int(
        conn.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).scalar_one()
    )


def test_the_outbox_lock_waits_for_the_end_of_the_callers_transaction(
    pg_clean: sa.Engine,
) -> None:
    """Commands in a transaction of their own send their events as soon as they have taken
    their row locks; in the caller's transaction the events (and the global outbox lock)
    wait for the end, because a later command there may still lock rows."""
    shop = Shop(pg_clean)
    with pg_clean.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            shop.ledger.post_journals(
                _ctx(),
                c.PostJournals(journals=[transfer("first", shop.wallet, shop.merchant, 1)]),
                uow=uow,
            )
            assert _advisory_locks(conn) == 0
            shop.ledger.post_journal(_ctx(), transfer("second", shop.cash, shop.wallet, 1), uow=uow)
            assert _advisory_locks(conn) == 0
        assert _advisory_locks(conn) == 1  # taken when the join block wrote the events
        tx.commit()
    with pg_clean.connect() as conn:
        journals = conn.exec_driver_sql("SELECT count(*) FROM ledger_journals").scalar_one()
    assert journals == 3  # the seed and both commands
