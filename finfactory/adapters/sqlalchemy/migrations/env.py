"""Alembic environment for FinFactory's own tables (version table ``ff_alembic_version``)."""

from __future__ import annotations

from alembic import context

from finfactory.adapters.sqlalchemy.migrate import VERSION_TABLE, all_metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic entry point is supported
    raise RuntimeError("run FinFactory migrations with finfactory.adapters.sqlalchemy.migrate()")

context.configure(
    connection=connection,
    target_metadata=all_metadata(),
    version_table=VERSION_TABLE,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
