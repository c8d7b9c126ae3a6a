"""Savepoints of the SQL unit of work: what a block undoes and keeps, on both databases.

On SQLite a savepoint waits in the write queue until a write follows it (reads do not need
it), and one whose writes never ran is dropped instead of executed. These tests hold that to
the same outcomes as a savepoint executed at once.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
from finfactory.kernel.errors import IntegrityViolation
from tests.conftest import make_storage

_HEAD = "INSERT INTO ff_audit_heads (tenant_id, last_sequence, last_hash) VALUES (:t, 0, :h)"


class Refused(Exception):
    pass


def _write(uow: SqlUnitOfWork, tenant: str) -> None:
    uow.driver.queue(_HEAD, [{"t": tenant, "h": "0" * 64}])
    uow.driver.send()


def _read(uow: SqlUnitOfWork) -> list[str]:
    rows = uow.driver.query("SELECT tenant_id FROM ff_audit_heads ORDER BY tenant_id", {})
    return [str(r[0]) for r in rows]


def _committed(storage: SqlStorage) -> list[str]:
    with storage.read() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        return _read(uow)


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest) -> SqlStorage:
    found = make_storage(request.param, request)
    assert isinstance(found, SqlStorage)
    return found


@pytest.mark.parametrize("settle", [True, False])
def test_a_failing_block_undoes_its_writes_and_keeps_earlier_ones(
    storage: SqlStorage, settle: bool
) -> None:
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        _write(uow, "before")
        with pytest.raises(Refused), uow.savepoint(settle=settle):
            assert _read(uow) == ["before"]  # a read inside sees the write before the block
            _write(uow, "inside")
            assert _read(uow) == ["before", "inside"]
            _write(uow, "inside-late")  # still queued when the block fails
            raise Refused
        assert _read(uow) == ["before"]
        _write(uow, "after")
    assert _committed(storage) == ["after", "before"]


@pytest.mark.parametrize("settle", [True, False])
def test_a_block_that_only_queued_writes_keeps_them(storage: SqlStorage, settle: bool) -> None:
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        with uow.savepoint(settle=settle):
            assert _read(uow) == []
            _write(uow, "queued")
        with pytest.raises(Refused), uow.savepoint(settle=settle):
            _write(uow, "undone")
            raise Refused
    assert _committed(storage) == ["queued"]


def test_a_write_inside_an_unsettled_block_that_the_database_refuses_fails_the_transaction(
    storage: SqlStorage,
) -> None:
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        _write(uow, "taken")
    with pytest.raises(IntegrityViolation), storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        _write(uow, "new")
        with uow.savepoint(settle=False):
            _write(uow, "taken")
    assert _committed(storage) == ["taken"]


def test_a_refused_write_in_a_settled_nested_block_is_undone_alone(storage: SqlStorage) -> None:
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        _write(uow, "taken")
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        with uow.savepoint():
            _write(uow, "outer")
            with pytest.raises(IntegrityViolation), uow.savepoint():
                assert _read(uow) == ["outer", "taken"]
                _write(uow, "inner")
                _write(uow, "taken")
            _write(uow, "outer-after")
    assert _committed(storage) == ["outer", "outer-after", "taken"]


def test_a_write_through_the_sqlalchemy_connection_is_inside_the_savepoint(
    storage: SqlStorage,
) -> None:
    """Custom stores and product code may write through ``uow.connection``: such a write
    runs after the writes FinFactory queued, and inside the open savepoints."""
    insert = sa.text(_HEAD)
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        _write(uow, "queued")
        seen = uow.connection.execute(sa.text("SELECT tenant_id FROM ff_audit_heads")).all()
        assert [r[0] for r in seen] == ["queued"]
        with pytest.raises(Refused), uow.savepoint(settle=False):
            _write(uow, "queued-inside")
            uow.connection.execute(insert, {"t": "direct-inside", "h": "0" * 64})
            raise Refused
        uow.connection.execute(insert, {"t": "direct-after", "h": "0" * 64})
    assert _committed(storage) == ["direct-after", "queued"]


def test_a_refused_write_queued_before_a_savepoint_is_a_typed_error(storage: SqlStorage) -> None:
    with storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        _write(uow, "taken")
    with pytest.raises(IntegrityViolation), storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        uow.driver.queue(_HEAD, [{"t": "taken", "h": "0" * 64}])
        with uow.savepoint():
            pass
    assert _committed(storage) == ["taken"]
