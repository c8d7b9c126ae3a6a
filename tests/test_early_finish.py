"""A unit of work's waiting audit records and events, written early by ``finish()`` inside a
savepoint that is then undone: the database undoes those writes, so the rows wait again and
are written when the transaction ends. They were lost: the command's state committed without
its audit record and its event."""

from __future__ import annotations

import pytest

from finfactory.adapters.memory import MemoryUnitOfWork
from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork
from finfactory.kernel.authz import default_policy
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds
from tests.conftest import context


class Undo(Exception):
    pass


def _open(ledger: LedgerService, code: str, uow: MemoryUnitOfWork | SqlUnitOfWork) -> None:
    ledger.open_account(context(), c.OpenAccount(code=code, currency="PHP", type="asset"), uow=uow)


@pytest.mark.parametrize("written_before", [False, True])
def test_rows_written_inside_an_undone_savepoint_wait_again(
    storage: Storage, written_before: bool
) -> None:
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    with storage.transaction() as uow:
        assert isinstance(uow, MemoryUnitOfWork | SqlUnitOfWork)
        _open(ledger, "first", uow)
        if written_before:
            uow.finish()  # written before the savepoint: stays written
        _open(ledger, "second", uow)
        with pytest.raises(Undo), uow.savepoint():
            uow.finish()
            _open(ledger, "undone", uow)
            uow.finish()
            raise Undo
    with storage.read() as tx:
        records = list(tx.kernel.audit_records(context().tenant_id))
        events = tx.kernel.read_events(0, 100)
    assert [r.summary["after"]["code"] for r in records] == ["first", "second"]
    assert [r.sequence for r in records] == [1, 2]
    assert [e.payload.get("code") for e in events] == ["first", "second"]
