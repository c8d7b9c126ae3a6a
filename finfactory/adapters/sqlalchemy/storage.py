"""Transactions on SQLAlchemy: SQLite (embedded default) and PostgreSQL.

``SqlStorage.transaction()`` opens and commits its own transaction. ``SqlStorage.join(conn)``
runs commands inside a transaction the caller owns (a ``Connection`` or ``Session``); the
library then writes through it and never commits or rolls it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import attrs
import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from finfactory.adapters.pending import START, PendingMark
from finfactory.adapters.sqlalchemy.driver import DriverSession, Savepoint
from finfactory.adapters.sqlalchemy.kernel_store import SqlKernelStore
from finfactory.kernel.errors import (
    ConcurrencyError,
    IntegrityViolation,
    StorageError,
)

_IMMEDIATE = "finfactory_begin_immediate"
_DRIVER = "finfactory_driver_session"


@attrs.frozen
class OpenSavepoint:
    name: str
    marker: Savepoint
    marks: PendingMark  # the kernel store's pending rows when it was taken


class SqlUnitOfWork:
    def __init__(
        self, conn: Connection, *, owns_transaction: bool, session: Session | None = None
    ) -> None:
        self.connection = conn
        self._session = session
        self.dialect = conn.dialect.name
        self.driver = DriverSession(conn)
        # For _queued_writes_first; the info dict outlives this transaction (it belongs to
        # the pooled DBAPI connection), so detach() puts back what was there.
        self._outer_driver = conn.info.get(_DRIVER)
        conn.info[_DRIVER] = self.driver
        self._owns = owns_transaction
        self._kernel = SqlKernelStore(conn, self.driver)
        self._savepoints = 0

    def flush(self) -> None:
        """Run the queued writes and wait until the database has applied them."""
        self.driver.flush()

    def detach(self) -> None:
        """The transaction is over: statements on the connection no longer concern us."""
        if self._outer_driver is None:
            self.connection.info.pop(_DRIVER, None)
        else:
            self.connection.info[_DRIVER] = self._outer_driver

    def finish(self) -> None:
        """Write the deferred outbox and audit rows and wait for everything queued.

        Runs right before the transaction commits: at the end of ``transaction()``, and for
        a caller-owned transaction when its ``join()`` block ends or the caller commits.
        """
        self._kernel.finish()
        self.driver.flush()

    def in_session_transaction(self) -> None:
        """Make sure the caller's transaction is the one this unit of work writes into."""
        if self._session is not None:
            # An ORM session opens a begin_nested() savepoint only when it next uses the
            # connection: open it now, so that the command runs inside it.
            if self._session.connection() is not self.connection:
                raise StorageError(
                    "the session's transaction ended inside this join block (commit or"
                    " rollback); open a new join block for the next transaction"
                )
        elif not self.connection.in_transaction():
            # The caller committed or rolled back inside the block and goes on, relying on
            # autobegin: begin what SQLAlchemy would have begun at its next statement.
            self.connection.begin()

    def begin_savepoint(self) -> OpenSavepoint:
        self._savepoints += 1
        name = f"ff_savepoint_{self._savepoints}"
        return OpenSavepoint(name, self.driver.queue_savepoint(name), self._kernel.pending_marks())

    def abandon(self, marks: PendingMark, failed: BaseException | None = None) -> None:
        """The database is about to undo what followed ``marks``: forget the writes still
        queued and the audit records and events still waiting since then, and leave an
        open (perhaps aborted) pipeline so that the rollback can run."""
        self.driver.discard()
        with suppress(*_DB_ERRORS):
            self.driver.close(failed)
        self._forget_since(marks)

    def _forget_since(self, marks: PendingMark) -> None:
        self._kernel.truncate_pending(marks)
        # Locks taken since (the outbox lock) go with the rollback.
        self._kernel.forget_locks()

    def rollback_to(self, savepoint: OpenSavepoint, failed: BaseException) -> None:
        """Undo everything since ``savepoint`` (which ends), after ``failed``."""
        if not savepoint.marker.sent:
            # Nothing after it reached the database (SQLite defers writes); what was queued
            # before it stays queued.
            self.driver.drop_savepoint(savepoint.marker, with_what_follows=True)
            self._forget_since(savepoint.marks)
            return
        self.abandon(savepoint.marks, failed)
        try:
            self.driver.query(f"ROLLBACK TO SAVEPOINT {savepoint.name}", {})
        except _DB_ERRORS:
            # A write queued before the savepoint failed, so the savepoint never came to be:
            # the transaction is lost anyway; report the first error.
            if not isinstance(failed, _DB_ERRORS):
                raise

    def release(self, savepoint: OpenSavepoint) -> None:
        if savepoint.marker.sent:
            self.driver.queue(f"RELEASE SAVEPOINT {savepoint.name}", [{}])
        else:
            # Its writes are still queued: they need no savepoint of their own, since a
            # refusal fails what encloses it.
            self.driver.drop_savepoint(savepoint.marker, with_what_follows=False)

    @contextmanager
    def savepoint(self, *, settle: bool = True) -> Iterator[None]:
        if not self._owns:
            self.in_session_transaction()
        savepoint = self.begin_savepoint()
        self.driver.send()
        try:
            yield
            if settle:
                self.driver.flush()  # so a failing write raises here, while it can be undone
        except BaseException as failed:
            self.rollback_to(savepoint, failed)
            if isinstance(failed, _DB_ERRORS):
                raise translate_db_error(failed) from failed
            raise
        self.release(savepoint)

    @property
    def kernel(self) -> SqlKernelStore:
        return self._kernel

    @property
    def owns_transaction(self) -> bool:
        return self._owns


def _queued_writes_first(conn: Connection, *_: Any) -> None:
    # A unit of work keeps writes queued (on SQLite savepoints too, until it reads; on
    # PostgreSQL in an open pipeline; see driver.py): a statement run through SQLAlchemy on
    # the same connection, such as a custom store's or the product's own, must come after
    # them, inside the savepoints, and outside the pipeline.
    driver = conn.info.get(_DRIVER)
    if driver is not None:
        driver.flush()


def watch_sqlalchemy(engine: Engine) -> None:
    """Have SQLAlchemy statements on ``engine`` run after FinFactory's queued writes."""
    if not event.contains(engine, "before_cursor_execute", _queued_writes_first):
        event.listen(engine, "before_cursor_execute", _queued_writes_first)


def configure_sqlite(engine: Engine) -> None:
    """Make pysqlite transactions explicit; writers take the lock at BEGIN (IMMEDIATE).

    Without this, pysqlite begins lazily and a reader that later writes can fail with
    "database is locked" instead of waiting its turn.
    """
    watch_sqlalchemy(engine)
    if engine.dialect.name != "sqlite" or engine.dialect.driver != "pysqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.info.pop(_IMMEDIATE, False)
        # Straight to the driver: this runs once per transaction and is on the hot path.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str | sqlalchemy.URL, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` with the settings FinFactory relies on."""
    engine = sqlalchemy.create_engine(url, **kwargs)
    configure_sqlite(engine)
    return engine


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Base exception classes of the DBAPI drivers (the hot path talks to them directly)."""
    found: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the postgres extra is not installed
        pass
    else:
        found.append(psycopg.Error)
    return tuple(found)


DRIVER_ERRORS = _driver_errors()


def translate_db_error(err: BaseException) -> Exception:
    """Driver and SQLAlchemy errors -> the FinFactory error tree (stable codes)."""
    orig = err.orig if isinstance(err, sa_exc.DBAPIError) else err
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    integrity = isinstance(err, sa_exc.IntegrityError | sqlite3.IntegrityError)
    # Serialization failure, deadlock, lock_timeout (or NOWAIT): another transaction won.
    if sqlstate in ("40001", "40P01", "55P03"):
        return ConcurrencyError("transaction lost a race; retry it", sqlstate=sqlstate)
    if integrity or (sqlstate or "").startswith("23"):
        return IntegrityViolation(f"database refused the write: {orig}", sqlstate=sqlstate)
    if "locked" in str(orig) or "busy" in str(orig):
        return ConcurrencyError("database is locked; retry", sqlstate=sqlstate)
    return StorageError(f"database error: {orig}", sqlstate=sqlstate)


_DB_ERRORS: tuple[type[BaseException], ...] = (sa_exc.DBAPIError, *DRIVER_ERRORS)


class SqlStorage:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        watch_sqlalchemy(engine)

    @contextmanager
    def transaction(self) -> Iterator[SqlUnitOfWork]:
        try:
            with self.engine.connect() as conn:
                conn.info[_IMMEDIATE] = True
                with conn.begin():
                    uow = SqlUnitOfWork(conn, owns_transaction=True)
                    try:
                        yield uow
                        uow.finish()
                    except BaseException as failed:
                        uow.driver.close(failed)
                        raise
                    finally:
                        uow.detach()
        except _DB_ERRORS as err:
            raise translate_db_error(err) from err

    @contextmanager
    def read(self) -> Iterator[SqlUnitOfWork]:
        try:
            with self.engine.connect() as conn:
                conn.info[_IMMEDIATE] = False
                if conn.dialect.name == "postgresql":
                    # One snapshot for every statement: a chain and its head read together.
                    conn = conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                with conn.begin() as tx:
                    uow = SqlUnitOfWork(conn, owns_transaction=True)
                    try:
                        yield uow
                    finally:
                        uow.driver.close()
                        uow.detach()
                    tx.rollback()
        except _DB_ERRORS as err:
            raise translate_db_error(err) from err

    @staticmethod
    @contextmanager
    def join(conn_or_session: Connection | Session) -> Iterator[SqlUnitOfWork]:
        """Run inside the caller's transaction; commit and rollback stay the caller's.

        However the block ends, an exception the caller catches included, the commands that
        succeeded in it keep their outbox events and audit records; if those cannot be
        written, everything the block did is undone (it runs in a savepoint of its own).
        Errors raised by the caller's own code pass through unchanged.
        """
        try:
            session = conn_or_session if isinstance(conn_or_session, Session) else None
            conn = conn_or_session if session is None else session.connection()
            assert isinstance(conn, Connection)
            watch_sqlalchemy(conn.engine)
            uow = SqlUnitOfWork(conn, owns_transaction=False, session=session)
            block = _JoinBlock(uow)
        except _DB_ERRORS as err:
            raise translate_db_error(err) from err
        try:
            yield uow
        except BaseException as failed:
            block.end(failed)
            raise
        else:
            block.end(None)
        finally:
            block.close()


class _JoinBlock:
    """A join block in the caller's transaction: its own savepoint, and its commands'
    waiting rows kept in step with what the caller does to the transaction meanwhile.

    The outbox and audit rows of the block's commands wait for its end (or the caller's
    commit): a command inside a savepoint the caller rolls back must take them along, or
    they would be written for journals that no longer exist.
    """

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow
        self._conn = uow.connection
        self._marks: dict[str, PendingMark] = {}
        for name, handler in self._handlers():
            event.listen(self._conn, name, handler)
        self._savepoint: OpenSavepoint | None = uow.begin_savepoint()
        uow.driver.send()

    def _handlers(self) -> list[tuple[str, Any]]:
        return [
            ("commit", self._before_commit),
            ("rollback", self._before_rollback),
            ("before_cursor_execute", self._before_statement),
            ("rollback_savepoint", self._before_rollback_to),
            ("release_savepoint", self._before_release),
        ]

    def end(self, failed: BaseException | None) -> None:
        """Write the block's waiting rows and end its savepoint; if that fails, undo the
        block: raise the failure, or add a note to ``failed``, which the caller then gets."""
        uow = self._uow
        if self._conn.closed:
            # An ORM session handed its connection back when it committed or rolled back
            # (which wrote or dropped the waiting rows); a later command was refused.
            return
        if uow.driver.aborted():
            # The caller's own statement failed and PostgreSQL aborted the transaction: it
            # can only be rolled back. Repairing it (by rolling back to the block's
            # savepoint) would let a commit keep the caller's earlier writes without the
            # block's, so it stays as the caller left it.
            if failed is None:
                raise StorageError(
                    "the transaction was aborted inside this join block by a failed statement;"
                    " roll it back"
                )
            return
        try:
            uow.finish()
            if self._savepoint is not None:
                uow.release(self._savepoint)
                uow.driver.flush()
        except BaseException as finishing:
            if self._savepoint is not None:
                uow.rollback_to(self._savepoint, finishing)
            error = translate_db_error(finishing) if isinstance(finishing, _DB_ERRORS) else None
            if failed is not None:
                failed.add_note(
                    "FinFactory undid this join block: the outbox events and audit records of"
                    f" its commands could not be written ({error or finishing!r})"
                )
                return
            if error is not None:
                raise error from finishing
            raise

    def close(self) -> None:
        if self._conn.closed:
            return
        for name, handler in self._handlers():
            event.remove(self._conn, name, handler)
        self._uow.detach()

    def _before_commit(self, _conn: Connection) -> None:
        # The waiting rows go first; the commit then ends their locks and every savepoint.
        self._uow.finish()
        self._uow.kernel.forget_locks()
        self._marks.clear()
        self._savepoint = None

    def _before_rollback(self, _conn: Connection) -> None:
        self._uow.abandon(START)
        self._marks.clear()
        self._savepoint = None

    def _before_statement(self, _conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        # The "savepoint" event comes before SQLAlchemy has named the savepoint; its
        # statement carries the name. Writes queued until now run before it
        # (_queued_writes_first), so they stay outside the savepoint.
        if statement.startswith("SAVEPOINT "):
            self._marks[statement.split()[1].strip('"')] = self._uow.kernel.pending_marks()

    def _before_rollback_to(self, _conn: Connection, name: str, _context: object) -> None:
        marks = self._marks.pop(name, None)
        if marks is None:
            # A savepoint taken before the block began: it covers everything the block did,
            # the block's own savepoint included.
            self._uow.abandon(START)
            self._savepoint = None
        else:
            self._uow.abandon(marks)

    def _before_release(self, _conn: Connection, name: str, _context: object) -> None:
        if self._marks.pop(name, None) is None:
            # A savepoint taken before the block began: releasing it releases the block's
            # own savepoint too; the block's work stays, now part of the enclosing level.
            self._savepoint = None
