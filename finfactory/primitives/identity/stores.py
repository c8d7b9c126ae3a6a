"""Picks the identity store that matches a unit of work's adapter."""

from __future__ import annotations

from finfactory.kernel.errors import ConfigurationError
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.identity.ports import IdentityStore


def default_store_factory(uow: UnitOfWork) -> IdentityStore:
    from finfactory.adapters.memory import MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork

    if isinstance(uow, SqlUnitOfWork):
        from finfactory.primitives.identity.sql_store import SqlIdentityStore

        return SqlIdentityStore(uow.connection, uow.driver)
    if isinstance(uow, MemoryUnitOfWork):
        from finfactory.primitives.identity.memory_store import MemoryIdentityStore

        return MemoryIdentityStore(uow)
    raise ConfigurationError(
        f"no identity store for {type(uow).__name__}; pass store_factory to IdentityService"
    )
