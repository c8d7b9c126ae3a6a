"""SQLAlchemy storage: SQLite (embedded default) and PostgreSQL, schema via Alembic."""

from finfactory.adapters.sqlalchemy.migrate import downgrade, migrate
from finfactory.adapters.sqlalchemy.storage import (
    SqlStorage,
    SqlUnitOfWork,
    configure_sqlite,
    create_engine,
)

__all__ = [
    "SqlStorage",
    "SqlUnitOfWork",
    "configure_sqlite",
    "create_engine",
    "downgrade",
    "migrate",
]
