"""The shipped Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from finfactory.adapters.sqlalchemy.migrate import VERSION_TABLE, all_metadata, downgrade, migrate
from finfactory.adapters.sqlalchemy.storage import create_engine
from tests.conftest import PG_URL, _ensure_pg_database


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        combined = sa.MetaData()
        for metadata in all_metadata():
            for table in metadata.tables.values():
                table.to_metadata(combined)
        return list(compare_metadata(ctx, combined))


def test_sqlite_schema_matches_models(tmp_path: pytest.TempPathFactory) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    assert _diff(engine) == []
    migrate(engine)  # a second run is a no-op
    downgrade(engine)
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    assert names <= {VERSION_TABLE}
    migrate(engine)
    assert _diff(engine) == []


def test_postgres_schema_matches_models() -> None:
    url = sa.make_url(PG_URL).set(database="finfactory_migrations")
    _ensure_pg_database(url.render_as_string(hide_password=False))
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    migrate(engine)
    assert _diff(engine) == []
    downgrade(engine)
    migrate(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_sqlite_outbox_keeps_autoincrement_through_every_step(tmp_path: Path) -> None:
    """Positions must never be reused (retention deletes old rows): AUTOINCREMENT stays."""
    engine = create_engine(f"sqlite:///{tmp_path}/a.db")
    query = "SELECT sql FROM sqlite_master WHERE name = 'ff_outbox'"
    migrate(engine)
    for revision in ("0003", "0002", "0001"):
        downgrade(engine, revision)
        with engine.connect() as conn:
            assert "AUTOINCREMENT" in conn.exec_driver_sql(query).scalar_one()
        migrate(engine)
        with engine.connect() as conn:
            assert "AUTOINCREMENT" in conn.exec_driver_sql(query).scalar_one()
