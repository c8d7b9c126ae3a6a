"""The product's own savepoints, commits and rollbacks while a join block is open.

A join block keeps its commands' outbox and audit rows back until it ends (or the caller
commits): whatever the caller undoes must take those rows along, and whatever it keeps must
keep them, so that no event or audit record outlives its journal and none goes missing.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from tests.test_caller_transaction import (
    Invoice,
    Shop,
    _advisory_locks,
    _ctx,
    engine,
    orders,
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
