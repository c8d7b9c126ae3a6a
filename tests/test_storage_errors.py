"""Driver errors come back as FinFactory errors; the outbox reader and determinism hold."""

from __future__ import annotations

import pytest
from moneyed import Money

from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork
from finfactory.events import OutboxReader
from finfactory.kernel.authz import default_policy
from finfactory.kernel.errors import IntegrityViolation, StorageError
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds
from tests.conftest import context, make_storage


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_constraint_violation_from_the_driver_is_an_integrity_violation(
    backend: str, request: pytest.FixtureRequest
) -> None:
    storage = make_storage(backend, request)
    assert isinstance(storage, SqlStorage)
    with pytest.raises(IntegrityViolation) as caught:
        with storage.transaction() as uow:
            assert isinstance(uow, SqlUnitOfWork)
            uow.driver.queue(
                "INSERT INTO ff_audit_heads (tenant_id, last_sequence, last_hash)"
                " VALUES (:t, 0, :h)",
                [{"t": "dup", "h": "0" * 64}, {"t": "dup", "h": "0" * 64}],
            )
    assert caught.value.code == "integrity_violation"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bad_sql_is_a_storage_error(backend: str, request: pytest.FixtureRequest) -> None:
    storage = make_storage(backend, request)
    assert isinstance(storage, SqlStorage)
    with pytest.raises(StorageError), storage.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        uow.driver.query("SELECT no_such_column FROM ff_outbox", {})


def _scenario(storage: Storage) -> list[tuple[object, ...]]:
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    ctx = context()
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    wallet = ledger.open_account(ctx, c.OpenAccount(code="w", currency="PHP", type="liability"))
    for n in range(3):
        ledger.post_journal(
            ctx,
            c.PostJournal(
                reference=f"r{n}",
                legs=[
                    c.Leg(account_id=cash.id, direction="debit", amount=Money("2.50", "PHP")),
                    c.Leg(account_id=wallet.id, direction="credit", amount=Money("2.50", "PHP")),
                ],
            ),
        )
    return [
        (
            e.position,
            e.id,
            e.event_type,
            e.aggregate_id,
            e.aggregate_sequence,
            e.payload,
            e.recorded_at,
        )
        for e in OutboxReader(storage, batch_size=4).drain()
    ]


def test_same_commands_give_the_same_events(backend: str, request: pytest.FixtureRequest) -> None:
    first = _scenario(MemoryStorage())
    second = _scenario(make_storage(backend, request))
    assert first == second
    assert len(first) == 2 + 3 * 3


def test_outbox_reader_pages_and_filters_by_tenant() -> None:
    storage = MemoryStorage()
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    for n, tenant in enumerate(["a", "b", "a", "b", "a"]):
        ledger.open_account(
            context(tenant), c.OpenAccount(code=f"x{n}", currency="PHP", type="asset")
        )
    everything = list(OutboxReader(storage, batch_size=2).drain())
    assert [e.position for e in everything] == [1, 2, 3, 4, 5]
    only_a = list(OutboxReader(storage, tenant_id="a", batch_size=1).drain())
    assert [e.position for e in only_a] == [1, 3, 5]
    assert OutboxReader(storage).read(after_position=5) == []
