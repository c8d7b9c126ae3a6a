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

from sqlalchemy import Connection

from finfactory.kernel.canonical import canonical_json

_NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


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

    def _sql(self, sql: str) -> str:
        return _pyformat(sql) if self.postgres else sql

    def queue(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._queue.append((self._sql(sql), rows))

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
        for stmt, rows in queued:
            if len(rows) == 1:
                cur.execute(stmt, rows[0])
            else:
                cur.executemany(stmt, rows)

    # -- value conversion (SQLite keeps text; psycopg adapts natively) ---------------------
    def ts(self, value: datetime | None) -> Any:
        if value is None or self.postgres:
            return value
        return value.astimezone(UTC).strftime(_SQLITE_TS)

    def day(self, value: date) -> Any:
        return value if self.postgres else value.isoformat()

    def json(self, value: Any) -> str:
        return canonical_json(value)

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
