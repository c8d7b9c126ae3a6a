"""Every storage adapter passes the public contract suite with the same results."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.ports import Storage
from finfactory.testing import MemoryStorage
from finfactory.testing.contract import StorageContract
from tests.conftest import truncate_all


class TestMemoryContract(StorageContract):
    def make_storage(self) -> Storage:
        return MemoryStorage()


class TestSqliteContract(StorageContract):
    @pytest.fixture(autouse=True)
    def _engine(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._dir = tmp_path_factory.mktemp("contract")
        self._count = 0

    def make_storage(self) -> Storage:
        self._count += 1
        engine = create_engine(f"sqlite:///{self._dir / f'db{self._count}.sqlite'}")
        migrate(engine)
        return SqlStorage(engine)


class TestPostgresContract(StorageContract):
    @pytest.fixture(autouse=True)
    def _engine(self, pg_engine: sa.Engine) -> None:
        self._pg = pg_engine

    def make_storage(self) -> Storage:
        truncate_all(self._pg)
        return SqlStorage(self._pg)
