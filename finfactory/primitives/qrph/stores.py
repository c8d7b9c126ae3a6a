"""Picks the QR Ph store that matches a unit of work's adapter."""

from __future__ import annotations

from finfactory.kernel.errors import ConfigurationError
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.qrph.ports import QrStore


def default_store_factory(uow: UnitOfWork) -> QrStore:
    from finfactory.adapters.memory import MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork

    if isinstance(uow, SqlUnitOfWork):
        from finfactory.primitives.qrph.sql_store import SqlQrStore

        return SqlQrStore(uow.connection, uow.driver)
    if isinstance(uow, MemoryUnitOfWork):
        from finfactory.primitives.qrph.memory_store import MemoryQrStore

        return MemoryQrStore(uow)
    raise ConfigurationError(
        f"no QR Ph store for {type(uow).__name__}; pass store_factory to QrPaymentService"
    )
