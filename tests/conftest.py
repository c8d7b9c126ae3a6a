"""Shared fixtures: one ledger per storage backend (memory, SQLite file, PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.migrate import all_metadata, migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds

PG_URL = os.environ.get(
    "FINFACTORY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/finfactory_test"
)
BACKENDS = ["memory", "sqlite", "postgres"]


def _ensure_pg_database(url: str) -> None:
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
        ).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[sa.Engine]:
    _ensure_pg_database(PG_URL)
    engine = create_engine(PG_URL, pool_size=20, max_overflow=20)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    migrate(engine)
    yield engine
    engine.dispose()


def truncate_all(engine: sa.Engine) -> None:
    """Empty every FinFactory table. The append-only tables refuse TRUNCATE (migration
    0016); a session in replica mode fires no ordinary triggers, which tests may use."""
    names = [t.name for md in all_metadata() for t in md.sorted_tables]
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")


@pytest.fixture
def pg_clean(pg_engine: sa.Engine) -> sa.Engine:
    truncate_all(pg_engine)
    return pg_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'ff.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def make_storage(backend: str, request: pytest.FixtureRequest) -> Storage:
    if backend == "memory":
        return MemoryStorage()
    if backend == "sqlite":
        return SqlStorage(request.getfixturevalue("sqlite_engine"))
    return SqlStorage(request.getfixturevalue("pg_clean"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest) -> Storage:
    return make_storage(backend, request)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()


@pytest.fixture
def ledger(storage: Storage, clock: ManualClock, ids: SequentialIds) -> LedgerService:
    return LedgerService(storage, default_policy(), clock, ids)


def context(
    tenant: str = "tenant-a", roles: frozenset[str] = frozenset({"admin"}), actor: str = "ops-1"
) -> RequestContext:
    return RequestContext(tenant_id=tenant, actor=Actor(actor, ActorKind.USER, roles))


@pytest.fixture
def ctx() -> RequestContext:
    return context()
