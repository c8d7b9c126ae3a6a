"""Apply FinFactory's schema (Alembic migrations shipped in the package)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData

VERSION_TABLE = "ff_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")


def all_metadata() -> list[MetaData]:
    from finfactory.adapters.sqlalchemy.tables import metadata as kernel
    from finfactory.primitives.ledger.tables import metadata as ledger

    return [kernel, ledger]


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine_or_connection: Engine | Connection, revision: str = "head") -> None:
    """Upgrade the database to ``revision``. Safe to run at every start-up."""
    if isinstance(engine_or_connection, Engine):
        with engine_or_connection.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    else:
        command.upgrade(alembic_config(engine_or_connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
