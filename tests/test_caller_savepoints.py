"""The product's own savepoints, commits, rollbacks and errors while a join block is open.

A join block keeps its commands' outbox and audit rows back until it ends (or the caller
commits): whatever the caller undoes must take those rows along, and whatever it keeps must
keep them, so that no event or audit record outlives its journal and none goes missing.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.errors import IntegrityViolation, StorageError
from tests.test_caller_transaction import (
    Invoice,
    Shop,
    _advisory_locks,
    _ctx,
    engine,
    orders,
    refused_reference,
    refused_rows,
    transfer,
)

__all__ = ["engine"]


def _pay(shop: Shop, uow: object, reference: str, key: str | None = None) -> str:
    journal = shop.ledger.post_journal(
        _ctx(),
        transfer(reference, shop.wallet, shop.merchant, 100),
        idempotency_key=key,
        uow=uow,  # type: ignore[arg-type]
    )
    return journal.id


def _events_of(engine: sa.Engine, journal_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM ff_outbox WHERE event_type = 'journal.posted'"
                    " AND aggregate_id = :j"
                ),
                {"j": journal_id},
            ).scalar_one()
        )


def _grew(shop: Shop, before: dict[str, object], journals: int, keys: int = 0) -> None:
    after = shop.state()
    assert after["journals"] == before["journals"] + journals  # type: ignore[operator]
    assert after["entries"] == before["entries"] + 2 * journals  # type: ignore[operator]
    # journal.posted and two balance.updated per journal; one audit record per command
    assert after["outbox"] == before["outbox"] + 3 * journals  # type: ignore[operator]
    assert after["audit"] == before["audit"] + journals  # type: ignore[operator]
    assert after["audit_head"] == before["audit_head"] + journals  # type: ignore[operator]
    assert after["keys"] == before["keys"] + keys  # type: ignore[operator]
    assert shop.chain_ok()


def test_a_rolled_back_nested_transaction_takes_its_commands_along(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            kept_1 = _pay(shop, uow, "kept-1", key="k-1")
            nested = conn.begin_nested()
            conn.execute(sa.insert(orders).values(id="o-undone", amount=1))
            undone = _pay(shop, uow, "undone", key="k-undone")
            nested.rollback()
            kept_2 = _pay(shop, uow, "kept-2")
        tx.commit()
    _grew(shop, before, journals=2, keys=1)
    assert shop.state()["orders"] == before["orders"]
    assert [_events_of(engine, j) for j in (kept_1, undone, kept_2)] == [1, 0, 1]
    # The undone command's idempotency key went with it: the request runs afresh.
    assert _pay(shop, None, "undone", key="k-undone") != undone


def test_a_released_nested_transaction_keeps_its_commands(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            with conn.begin_nested():
                _pay(shop, uow, "inside")
                with conn.begin_nested():  # nested twice, released twice
                    _pay(shop, uow, "deeper")
            _pay(shop, uow, "after")
        tx.commit()
    _grew(shop, before, journals=3)


def test_an_error_through_two_savepoints_undoes_both(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "kept")
            with pytest.raises(RuntimeError), conn.begin_nested():
                _pay(shop, uow, "outer")
                with conn.begin_nested():
                    _pay(shop, uow, "inner")
                    raise RuntimeError("undo both")
            _pay(shop, uow, "after")
        tx.commit()
    _grew(shop, before, journals=2)


def test_a_savepoint_taken_before_the_block_covers_the_whole_block(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        nested = conn.begin_nested()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "first")
            _pay(shop, uow, "second")
            nested.rollback()
            _pay(shop, uow, "third")
        tx.commit()
    _grew(shop, before, journals=1)


def test_orm_session_savepoints_inside_a_join_block(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with Session(engine) as session:
        with SqlStorage.join(session) as uow:
            _pay(shop, uow, "kept")
            with pytest.raises(RuntimeError), session.begin_nested():
                session.add(Invoice(id="inv-undone", total=1))
                _pay(shop, uow, "undone")
                raise RuntimeError("the product changes its mind")
            session.add(Invoice(id="inv-kept", total=1))
        session.commit()
    _grew(shop, before, journals=1)
    assert shop.state()["invoices"] == before["invoices"] + 1


def test_the_caller_rolls_back_and_goes_on_inside_the_block(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        conn.begin()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "abandoned")
            conn.rollback()
            conn.begin()
            _pay(shop, uow, "fresh")
        conn.commit()
    _grew(shop, before, journals=1)


def test_the_caller_commits_and_goes_on_inside_the_block(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        conn.begin()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "first")
            conn.commit()  # the deferred rows of "first" go in before this commit
            _grew(shop, before, journals=1)
            conn.begin()
            _pay(shop, uow, "second")
        conn.commit()
    _grew(shop, before, journals=2)


def test_the_outbox_lock_is_taken_again_after_the_callers_commit(pg_clean: sa.Engine) -> None:
    """Outbox positions follow commit order only if every transaction that writes events
    holds the outbox lock: one the caller starts inside the block must take it anew."""
    shop = Shop(pg_clean)
    with pg_clean.connect() as conn:
        conn.begin()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "first")
            uow.finish()
            assert _advisory_locks(conn) == 1
            conn.commit()
            conn.begin()
            _pay(shop, uow, "second")
            uow.finish()
            assert _advisory_locks(conn) == 1
        conn.commit()


def test_the_caller_commits_and_goes_on_without_beginning_again(engine: sa.Engine) -> None:
    """SQLAlchemy 2.0 begins anew at the next statement (autobegin): so does the next
    command, and the caller's next commit or rollback decides about it."""
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        conn.begin()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "committed")
            conn.commit()
            _pay(shop, uow, "rolled-back")
            assert conn.in_transaction()
            conn.rollback()
            _pay(shop, uow, "committed-too")
        conn.commit()
    _grew(shop, before, journals=2)


class ProductError(Exception):
    pass


def test_commands_before_an_error_the_caller_catches_keep_their_events(
    engine: sa.Engine,
) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        with pytest.raises(ProductError), SqlStorage.join(conn) as uow:
            _pay(shop, uow, "paid", key="k-paid")
            raise ProductError("the product fails after the payment")
        tx.commit()  # the caller decides to keep what went through
    _grew(shop, before, journals=1, keys=1)


def test_commands_before_a_failed_command_keep_their_events(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    with refused_reference(engine, "poison"), engine.connect() as conn:
        tx = conn.begin()
        with pytest.raises(IntegrityViolation), SqlStorage.join(conn) as uow:
            _pay(shop, uow, "paid")
            _pay(shop, uow, "poison")  # undone alone, in its own savepoint
        tx.commit()
    _grew(shop, before, journals=1)


def test_a_block_whose_audit_records_cannot_be_written_is_undone(engine: sa.Engine) -> None:
    shop = Shop(engine)
    before = shop.state()
    refused = refused_rows(engine, "ff_audit_log", "NEW.resource_type = 'journal'")
    with refused, engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.insert(orders).values(id="o-before", amount=1))
        with pytest.raises(IntegrityViolation), SqlStorage.join(conn) as uow:
            conn.execute(sa.insert(orders).values(id="o-inside", amount=1))
            _pay(shop, uow, "paid", key="k-paid")
        assert tx.is_active  # the caller's transaction goes on without the block
        conn.execute(sa.insert(orders).values(id="o-after", amount=1))
        tx.commit()
    with engine.connect() as conn:
        kept = conn.execute(sa.select(orders.c.id).order_by(orders.c.id)).scalars().all()
    assert kept == ["o-after", "o-before"]  # nothing the block did, the product's row included
    _grew(shop, before, journals=0)


def test_the_callers_own_database_errors_pass_through_unchanged(engine: sa.Engine) -> None:
    shop = Shop(engine)
    with engine.connect() as conn:
        conn.begin()
        conn.execute(sa.insert(orders).values(id="o-1", amount=1))
        with pytest.raises(sa.exc.IntegrityError), SqlStorage.join(conn) as uow:
            _pay(shop, uow, "paid")
            conn.execute(sa.insert(orders).values(id="o-1", amount=1))  # the product's bug
        conn.rollback()


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_a_command_after_the_session_ended_its_transaction_is_refused(
    engine: sa.Engine, ending: str
) -> None:
    shop = Shop(engine)
    before = shop.state()
    with Session(engine) as session:
        with SqlStorage.join(session) as uow:
            _pay(shop, uow, "first")
            getattr(session, ending)()
            with pytest.raises(StorageError, match="transaction ended inside this join block"):
                _pay(shop, uow, "second")
        session.commit()
    _grew(shop, before, journals=1 if ending == "commit" else 0)
    with engine.connect() as conn:  # the pool's connections are healthy
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_a_finish_inside_a_savepoint_does_not_keep_what_the_savepoint_undoes(
    engine: sa.Engine,
) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        with SqlStorage.join(conn) as uow:
            nested = conn.begin_nested()
            _pay(shop, uow, "written-early")
            uow.finish()  # its rows go in now, inside the savepoint
            _pay(shop, uow, "still-waiting")
            nested.rollback()
            _pay(shop, uow, "kept")
        tx.commit()
    _grew(shop, before, journals=1)


def test_releasing_a_savepoint_taken_before_the_block_keeps_the_block(
    engine: sa.Engine,
) -> None:
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        tx = conn.begin()
        nested = conn.begin_nested()
        with SqlStorage.join(conn) as uow:
            _pay(shop, uow, "first")
            nested.commit()  # releases the block's own savepoint with it
            _pay(shop, uow, "second")
        tx.commit()
    _grew(shop, before, journals=2)


def test_a_session_joined_to_an_outer_transaction_commits_inside_the_block(
    engine: sa.Engine,
) -> None:
    """The usual test-fixture pattern: the session's commit releases a savepoint."""
    shop = Shop(engine)
    before = shop.state()
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        with SqlStorage.join(session) as uow:
            _pay(shop, uow, "first")
            session.commit()
        outer.commit()
    _grew(shop, before, journals=1)


def test_a_transaction_the_callers_statement_aborted_stays_aborted(pg_clean: sa.Engine) -> None:
    """PostgreSQL aborts a transaction at a failed statement. The block does not repair it
    (by rolling back to its savepoint): a commit would then keep the product's earlier
    writes without the payment. It stays aborted, and the commit keeps nothing."""
    shop = Shop(pg_clean)
    before = shop.state()
    with pg_clean.begin() as conn:
        orders.drop(conn, checkfirst=True)
        orders.create(conn)
    with pg_clean.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.insert(orders).values(id="o-1", amount=1))
        with pytest.raises(sa.exc.IntegrityError), SqlStorage.join(conn) as uow:
            _pay(shop, uow, "paid")
            conn.execute(sa.insert(orders).values(id="o-1", amount=1))
        tx.commit()  # PostgreSQL answers a COMMIT of an aborted transaction with ROLLBACK
    after = shop.state()
    assert after["orders"] == 0
    _grew(shop, before, journals=0)
