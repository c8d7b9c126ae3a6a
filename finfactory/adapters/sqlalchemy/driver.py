"""Hot-path SQL straight through the DBAPI connection SQLAlchemy holds.

Writes are queued and sent together: on PostgreSQL in one psycopg pipeline (one network
round trip for the lot), on SQLite with ``executemany``. This is where the ledger's speed
comes from: a posting costs a handful of round trips, not one per row. Statements are
written with ``:name`` parameters and rewritten per driver.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection

_NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")
_SIMPLE_INSERT = re.compile(r"^INSERT INTO (\w+) \(([^)]*)\) VALUES \(([^()]*)\)$")
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"
# Column types of tables, read once from the catalog, for ``unnest`` array casts.
_PG_COLUMN_TYPES: dict[str, dict[str, str]] = {}


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


@lru_cache(maxsize=256)
def _simple_insert(sql: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """``INSERT INTO t (a, b) VALUES (:x, :y)`` -> (t, (a, b), (x, y)); else None."""
    match = _SIMPLE_INSERT.match(sql)
    if match is None:
        return None
    values = tuple(v.strip() for v in match.group(3).split(","))
    if not all(v.startswith(":") for v in values):
        return None
    columns = tuple(c.strip() for c in match.group(2).split(","))
    return match.group(1), columns, tuple(v[1:] for v in values)


class DriverSession:
    """Queued writes and immediate reads on the connection's DBAPI connection."""

    def __init__(self, conn: Connection) -> None:
        if not conn.in_transaction():
            conn.begin()
        self.postgres = conn.dialect.name == "postgresql"
        raw = conn.connection.dbapi_connection
        assert raw is not None
        self._raw: Any = raw
        self._queue: list[tuple[str, list[dict[str, Any]]]] = []
        self._last_ts: datetime | None = None
        self._last_text = ""

    def _sql(self, sql: str) -> str:
        return _pyformat(sql) if self.postgres else sql

    def queue(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._queue.append((sql, rows))

    def query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Send what is queued, then run ``sql`` and return its rows."""
        stmt = self._sql(sql)
        cur = self._raw.cursor()
        try:
            if self.postgres and self._queue:
                with self._raw.pipeline() as pipeline:
                    self._send(self._raw.cursor())
                    cur.execute(stmt, params)
                    pipeline.sync()
                    rows = cur.fetchall() if cur.description else []
                return list(rows)
            self._send(cur)
            cur.execute(stmt, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def flush(self) -> None:
        if not self._queue:
            return
        cur = self._raw.cursor()
        try:
            if self.postgres:
                with self._raw.pipeline():
                    self._send(cur)
            else:
                self._send(cur)
        finally:
            cur.close()

    def _send(self, cur: Any) -> None:
        queued, self._queue = self._queue, []
        for sql, rows in queued:
            if len(rows) == 1:
                cur.execute(self._sql(sql), rows[0])
                continue
            insert = _simple_insert(sql) if self.postgres else None
            if insert is None:
                cur.executemany(self._sql(sql), rows)
                continue
            # Many rows in one statement, one array per column: the server parses and plans
            # it once, and the statement text stays short enough for psycopg's cache.
            table, columns, names = insert
            types = self._column_types(table)
            arrays = ", ".join(f"%b::{types[c]}[]" for c in columns)
            cur.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})",
                # %b: arrays go in binary, without per-element quoting and escaping.
                [[row[name] for row in rows] for name in names],
            )

    def _column_types(self, table: str) -> dict[str, str]:
        types = _PG_COLUMN_TYPES.get(table)
        if types is None:
            cur = self._raw.cursor()
            cur.execute(
                "SELECT column_name, udt_name FROM information_schema.columns"
                " WHERE table_name = %s AND table_schema = ANY(current_schemas(false))",
                [table],
            )
            types = {name: udt for name, udt in cur.fetchall()}
            cur.close()
            _PG_COLUMN_TYPES[table] = types
        return types

    # -- value conversion (SQLite keeps text; psycopg adapts natively) ---------------------
    def ts(self, value: datetime | None) -> Any:
        if value is None or self.postgres:
            return value
        # A command stamps every row with the same clock reading: convert it once.
        if value is not self._last_ts:
            self._last_ts = value
            self._last_text = value.astimezone(UTC).strftime(_SQLITE_TS)
        return self._last_text

    def day(self, value: date) -> Any:
        return value if self.postgres else value.isoformat()

    def json(self, value: Any) -> str:
        return to_json(value).decode()

    def flag(self, value: bool | None) -> Any:
        if value is None or self.postgres:
            return value
        return int(value)


def read_ts(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


def read_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def read_day(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value
