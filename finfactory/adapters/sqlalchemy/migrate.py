"""Apply FinFactory's schema (Alembic migrations shipped in the package)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData

VERSION_TABLE = "ff_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")


def all_metadata() -> list[MetaData]:
    """The kernel's tables, then each primitive's (every primitive owns a ``tables`` module)."""
    import finfactory.primitives as primitives
    from finfactory.adapters.sqlalchemy.tables import metadata as kernel

    found = [kernel]
    for info in sorted(pkgutil.iter_modules(primitives.__path__), key=lambda m: m.name):
        name = f"{primitives.__name__}.{info.name}.tables"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name).metadata)
    return found


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine_or_connection: Engine | Connection, revision: str = "heads") -> None:
    """Upgrade the database to ``revision``. Safe to run at every start-up.

    The kernel and ledger migrations form the trunk; every other primitive's migrations are
    an Alembic branch of their own (labelled with the primitive's name) on top of it, so
    ``"heads"`` means every primitive's newest schema.
    """
    if isinstance(engine_or_connection, Engine):
        with engine_or_connection.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    else:
        command.upgrade(alembic_config(engine_or_connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
