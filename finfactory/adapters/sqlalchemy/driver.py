"""Hot-path SQL straight through the DBAPI connection SQLAlchemy holds.

Writes are queued and sent together: on PostgreSQL in one psycopg pipeline (one network
round trip for the lot), on SQLite with ``executemany``. This is where the ledger's speed
comes from: a posting costs a handful of round trips, not one per row. Statements are
written with ``:name`` parameters and rewritten per driver.

On SQLite there is no server to work in parallel, so queued writes wait until a read, a
flush or the end of the transaction, and a savepoint with nothing written after it waits
through plain ``SELECT`` reads: a savepoint none of whose writes have run can then be dropped
instead of executed (SQLite copies every page changed under a savepoint to a sub-journal).
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


class Savepoint(list[dict[str, Any]]):
    """The (empty) parameters of a ``SAVEPOINT`` statement in the queue, which mark its entry
    as one; ``sent`` once it reached the database."""

    def __init__(self) -> None:
        super().__init__([{}])
        self.sent = False


class DriverSession:
    """Queued writes and immediate reads on the connection's DBAPI connection.

    On PostgreSQL, :meth:`send` starts queued writes without waiting for them, inside a
    pipeline that stays open until the next read or :meth:`flush`; the server works on them
    while Python goes on computing the next part of the command.
    """

    def __init__(self, conn: Connection) -> None:
        if not conn.in_transaction():
            conn.begin()
        self.postgres = conn.dialect.name == "postgresql"
        raw = conn.connection.dbapi_connection
        assert raw is not None
        self._raw: Any = raw
        self._queue: list[tuple[str, list[dict[str, Any]]]] = []
        self._pipeline: Any = None
        self._pipeline_cm: Any = None
        self._writer: Any = None
        self._last_ts: datetime | None = None
        self._last_text = ""

    def _sql(self, sql: str) -> str:
        return _pyformat(sql) if self.postgres else sql

    def queue(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._queue.append((sql, rows))

    def aborted(self) -> bool:
        """PostgreSQL: a statement failed and the transaction refuses everything but a
        rollback (to a savepoint, or of the whole). SQLite transactions survive errors."""
        if not self.postgres or self._pipeline is not None:
            return False  # in a pipeline the last statements are ours, checked as they end
        import psycopg

        return bool(self._raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR)

    def discard(self) -> None:
        """Forget writes queued but not yet sent (the command that queued them failed)."""
        self._queue = []

    def queue_savepoint(self, name: str) -> Savepoint:
        savepoint = Savepoint()
        self._queue.append((f"SAVEPOINT {name}", savepoint))
        return savepoint

    def drop_savepoint(self, savepoint: Savepoint, *, with_what_follows: bool) -> None:
        """Take an unsent savepoint out of the queue, alone or with all queued after it."""
        index = next((i for i, (_, p) in enumerate(self._queue) if p is savepoint), None)
        if index is None:
            return  # lost with a write before it that failed: nothing after it ran either
        del self._queue[index : None if with_what_follows else index + 1]

    def _open_pipeline(self) -> Any:
        if self._pipeline is None:
            self._pipeline_cm = self._raw.pipeline()
            self._pipeline = self._pipeline_cm.__enter__()
            self._writer = self._raw.cursor()
        return self._pipeline

    def send(self) -> None:
        """Start the queued writes on PostgreSQL (pipelined); on SQLite they keep waiting."""
        if not self._queue or not self.postgres:
            return
        self._open_pipeline()
        self._send(self._writer)

    def query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Send what is queued, then run ``sql`` and return its rows."""
        stmt = self._sql(sql)
        if self.postgres and (self._queue or self._pipeline is not None):
            pipeline = self._open_pipeline()
            self._send(self._writer)
            cur = self._raw.cursor()
            try:
                cur.execute(stmt, params)
                pipeline.sync()
                return list(cur.fetchall()) if cur.description else []
            finally:
                cur.close()
        # Anything but a plain SELECT may write: the savepoints before it must be in place.
        self._execute_queue(hold_savepoints=not self.postgres and stmt.startswith("SELECT "))
        cur = self._raw.cursor()
        try:
            cur.execute(stmt, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def flush(self) -> None:
        """Send everything queued and wait until the server has applied it."""
        if self.postgres:
            if self._queue:
                self._open_pipeline()
                self._send(self._writer)
            self.close()
        else:
            self._execute_queue()

    def close(self, failed: BaseException | None = None) -> None:
        """Leave pipeline mode (waiting for the server); errors surface here or at a read."""
        manager, writer = self._pipeline_cm, self._writer
        if self._pipeline is None:
            return
        self._pipeline = self._writer = self._pipeline_cm = None
        try:
            if failed is None:
                manager.__exit__(None, None, None)
            else:
                manager.__exit__(type(failed), failed, failed.__traceback__)
        finally:
            writer.close()

    def _execute_queue(self, *, hold_savepoints: bool = False) -> None:
        if not self._queue:
            return
        cur = self._raw.cursor()
        try:
            self._send(cur, hold_savepoints=hold_savepoints)
        finally:
            cur.close()

    def _send(self, cur: Any, *, hold_savepoints: bool = False) -> None:
        queued, self._queue = self._queue, []
        if hold_savepoints:
            # Savepoints with no write after them yet wait for one (see the module doc).
            held = len(queued)
            while held and isinstance(queued[held - 1][1], Savepoint):
                held -= 1
            queued, self._queue = queued[:held], queued[held:]
        for sql, rows in queued:
            if isinstance(rows, Savepoint):
                rows.sent = True
            insert = _simple_insert(sql) if self.postgres else None
            if insert is not None and insert[1] == insert[2]:
                # All rows as one JSON document that the server unpacks into the table's row
                # type: one statement, and the per-value work happens in Rust (pydantic-core
                # serializes) and C (the server parses) instead of Python.
                table, columns, _ = insert
                names = ", ".join(columns)
                cur.execute(
                    f"INSERT INTO {table} ({names}) SELECT {names}"
                    f" FROM json_populate_recordset(NULL::{table}, %s::json)",
                    [to_json(rows).decode()],
                )
            elif len(rows) == 1:
                cur.execute(self._sql(sql), rows[0])
            else:
                cur.executemany(self._sql(sql), rows)

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

    def json(self, value: Any) -> Any:
        """A JSON column value: text on SQLite; the object itself on PostgreSQL, where rows
        travel as one JSON document (see :meth:`_send`)."""
        return value if self.postgres else to_json(value).decode()

    def flag(self, value: bool | None) -> Any:
        if value is None or self.postgres:
            return value
        return int(value)


def read_ts(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif value.tzinfo is UTC:
        return value  # type: ignore[no-any-return]
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


def read_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
