"""Picks the ledger store that matches a unit of work's adapter."""

from __future__ import annotations

from finfactory.kernel.errors import ConfigurationError
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.ledger.ports import LedgerStore


def default_store_factory(uow: UnitOfWork) -> LedgerStore:
    from finfactory.adapters.memory import MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork

    if isinstance(uow, SqlUnitOfWork):
        from finfactory.primitives.ledger.sql_store import SqlLedgerStore

        return SqlLedgerStore(uow.connection, uow.driver, owns_transaction=uow.owns_transaction)
    if isinstance(uow, MemoryUnitOfWork):
        from finfactory.primitives.ledger.memory_store import MemoryLedgerStore

        return MemoryLedgerStore(uow)
    raise ConfigurationError(
        f"no ledger store for {type(uow).__name__}; pass store_factory to LedgerService"
    )
