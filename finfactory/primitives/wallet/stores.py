"""Picks the wallet store that matches a unit of work's adapter."""

from __future__ import annotations

from finfactory.kernel.errors import ConfigurationError
from finfactory.kernel.ports import UnitOfWork
from finfactory.primitives.wallet.ports import WalletStore


def default_store_factory(uow: UnitOfWork) -> WalletStore:
    from finfactory.adapters.memory import MemoryUnitOfWork
    from finfactory.adapters.sqlalchemy.storage import SqlUnitOfWork

    if isinstance(uow, SqlUnitOfWork):
        from finfactory.primitives.wallet.sql_store import SqlWalletStore

        return SqlWalletStore(uow.driver)
    if isinstance(uow, MemoryUnitOfWork):
        from finfactory.primitives.wallet.memory_store import MemoryWalletStore

        return MemoryWalletStore(uow)
    raise ConfigurationError(
        f"no wallet store for {type(uow).__name__}; pass store_factory to WalletService"
    )
