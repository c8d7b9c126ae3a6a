"""Driver errors come back as FinFactory errors; the outbox reader and determinism hold."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from moneyed import Money

from finfactory.adapters.sqlalchemy.storage import SqlStorage, SqlUnitOfWork, translate_db_error
from finfactory.events import OutboxReader
from finfactory.kernel.authz import default_policy
from finfactory.kernel.errors import (
    ConcurrencyError,
    IntegrityViolation,
    StorageError,
    ValidationError,
)
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


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
def test_outbox_reader_refuses_a_bad_limit_alike_on_every_backend(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """0 meant "the default", -1 read everything on SQLite, one event in memory and failed
    on PostgreSQL; a batch size of 0 drained nothing from SQL and everything from memory."""
    storage = make_storage(backend, request)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    for n in range(3):
        ledger.open_account(context(), c.OpenAccount(code=f"x{n}", currency="PHP", type="asset"))
    reader = OutboxReader(storage)
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValidationError) as refused:
            reader.read(limit=bad)  # type: ignore[arg-type]
        assert refused.value.field == "limit"
        with pytest.raises(ValidationError) as refused:
            OutboxReader(storage, batch_size=bad)  # type: ignore[arg-type]
        assert refused.value.field == "batch_size"
    with pytest.raises(ValidationError) as refused:
        reader.read(after_position=-1)
    assert refused.value.field == "after_position"
    assert [e.position for e in reader.read(limit=2)] == [1, 2]
    with storage.read() as tx:
        assert tx.kernel.read_events(0, 0) == []


def test_a_postgres_lock_timeout_is_a_retryable_concurrency_error(
    request: pytest.FixtureRequest,
) -> None:
    """Another transaction held the lock past lock_timeout (or NOWAIT found it taken): a race
    lost, like a deadlock, not a failed database."""
    storage = make_storage("postgres", request)
    assert isinstance(storage, SqlStorage)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    account = ledger.open_account(
        context(), c.OpenAccount(code="locked", currency="PHP", type="asset")
    )
    with storage.engine.connect() as holder, storage.engine.connect() as waiter:
        holder.exec_driver_sql(
            "SELECT 1 FROM ledger_accounts WHERE id = %(id)s FOR UPDATE", {"id": account.id}
        )
        waiter.exec_driver_sql("SET lock_timeout = '50ms'")
        with pytest.raises(sa.exc.OperationalError) as raised:
            waiter.exec_driver_sql(
                "SELECT 1 FROM ledger_accounts WHERE id = %(id)s FOR UPDATE", {"id": account.id}
            )
    translated = translate_db_error(raised.value)
    assert isinstance(translated, ConcurrencyError)
    assert translated.details["sqlstate"] == "55P03"
