"""SQLAlchemy implementation of the ledger store. Reads (and row locks) go out at once;
writes are buffered and handed to the driver session at :meth:`flush` as a few multi-row
statements (sent at once on PostgreSQL, run at the next read or commit on SQLite)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from finfactory.adapters.sqlalchemy.driver import DriverSession, read_json, read_ts
from finfactory.primitives.ledger.model import (
    Account,
    AccountStatus,
    AccountType,
    BalanceBound,
    Direction,
    Entry,
    Hold,
    HoldStatus,
    Journal,
)
from finfactory.primitives.ledger.tables import accounts, entries, holds, journals


class SqlLedgerStore:
    def __init__(
        self, conn: Connection, driver: DriverSession, *, owns_transaction: bool = False
    ) -> None:
        self._conn = conn
        self._drv = driver
        # Only in a transaction FinFactory opened: in a caller's, switching the check to
        # IMMEDIATE would also check at once the caller's own journals still being written.
        self._check_balance_early = owns_transaction and driver.postgres
        self._checking_now = False  # the early check is switched on, until the last flush
        self._lock = driver.postgres
        self._new_accounts: list[dict[str, Any]] = []
        self._saved_accounts: dict[str, Account] = {}
        self._new_journals: list[dict[str, Any]] = []
        self._new_entries: list[dict[str, Any]] = []
        self._new_holds: list[dict[str, Any]] = []
        self._saved_holds: dict[str, Hold] = {}

    # -- reads ----------------------------------------------------------------------------
    def _core(self) -> Connection:
        self._drv.flush()
        return self._conn

    def _in(self, column: str, values: list[str], prefix: str) -> tuple[str, dict[str, Any]]:
        """``column = value`` for one value; for more, ``column IN (...)`` on SQLite and
        ``column = ANY(array)`` on PostgreSQL, whose statement text then stays short and
        cacheable however many values there are."""
        if len(values) == 1:
            return f"{column} = :{prefix}", {prefix: values[0]}
        if self._drv.postgres:
            return f"{column} = ANY(CAST(:{prefix} AS varchar[]))", {prefix: values}
        marks = ", ".join(f":{prefix}{i}" for i in range(len(values)))
        return f"{column} IN ({marks})", {f"{prefix}{i}": v for i, v in enumerate(values)}

    def lock_accounts(self, tenant_id: str, account_ids: Collection[str]) -> dict[str, Account]:
        # Found by primary key (the plan never depends on table statistics), filtered by
        # tenant in the statement itself: FOR UPDATE must never lock another tenant's row,
        # or a command naming that tenant's account ids could stall its payments.
        condition, params = self._in("id", sorted(account_ids), "a")
        params["tenant_id"] = tenant_id
        sql = (
            f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts"
            f" WHERE {condition} AND tenant_id = :tenant_id ORDER BY id"
        )
        if self._lock:
            sql += " FOR UPDATE"
        return {acc.id: acc for acc in map(_account_from_tuple, self._drv.query(sql, params))}

    def get_account(self, tenant_id: str, account_id: str) -> Account | None:
        row = (
            self._core()
            .execute(
                select(accounts).where(
                    accounts.c.tenant_id == tenant_id, accounts.c.id == account_id
                )
            )
            .first()
        )
        return None if row is None else _account(row._mapping)

    def account_id_for_code(self, tenant_id: str, code: str) -> str | None:
        return (
            self._core()
            .execute(
                select(accounts.c.id).where(
                    accounts.c.tenant_id == tenant_id, accounts.c.code == code
                )
            )
            .scalar_one_or_none()
        )

    def list_accounts(self, tenant_id: str, after_code: str, limit: int) -> list[Account]:
        # Code-point order on every backend (memory and SQLite compare that way; a database
        # collation such as ICU "en-US" would order and page differently).
        code = accounts.c.code.collate("C") if self._lock else accounts.c.code
        rows = self._core().execute(
            select(accounts)
            .where(accounts.c.tenant_id == tenant_id, code > after_code)
            .order_by(code)
            .limit(limit)
        )
        return [_account(r._mapping) for r in rows]

    def existing_references(self, tenant_id: str, references: Collection[str]) -> set[str]:
        wanted = list(references)
        if self._drv.postgres and len(wanted) > 1:
            # One unique-index probe per reference, whatever the table statistics say: with
            # "reference = ANY(...)" a planner that has not analysed the table yet scans all
            # of the tenant's journals instead (seen: 4 ms for a batch of 100 on a fresh
            # database, growing with the table). LIMIT 1 keeps the probe a nested loop.
            rows = self._drv.query(
                "SELECT found.reference FROM unnest(CAST(:r AS varchar[])) AS wanted(reference),"
                " LATERAL (SELECT reference FROM ledger_journals WHERE tenant_id = :tenant_id"
                " AND reference = wanted.reference LIMIT 1) AS found",
                {"r": wanted, "tenant_id": tenant_id},
            )
            return {r[0] for r in rows}
        condition, params = self._in("reference", wanted, "r")
        params["tenant_id"] = tenant_id
        rows = self._drv.query(
            f"SELECT reference FROM ledger_journals WHERE tenant_id = :tenant_id AND {condition}",
            params,
        )
        return {r[0] for r in rows}

    def get_journal(self, tenant_id: str, journal_id: str) -> Journal | None:
        row = (
            self._core()
            .execute(
                select(journals).where(
                    journals.c.tenant_id == tenant_id, journals.c.id == journal_id
                )
            )
            .first()
        )
        if row is None:
            return None
        legs = self._core().execute(
            select(entries).where(entries.c.journal_id == journal_id).order_by(entries.c.leg)
        )
        m = row._mapping
        return Journal(
            id=m["id"],
            tenant_id=m["tenant_id"],
            reference=m["reference"],
            effective_date=m["effective_date"],
            description=m["description"],
            metadata=m["metadata"],
            posted_at=m["posted_at"],
            reverses_journal_id=m["reverses_journal_id"],
            entries=tuple(_entry(e._mapping) for e in legs),
        )

    def reversal_of(self, tenant_id: str, journal_id: str) -> str | None:
        return (
            self._core()
            .execute(
                select(journals.c.id).where(
                    journals.c.tenant_id == tenant_id, journals.c.reverses_journal_id == journal_id
                )
            )
            .scalar_one_or_none()
        )

    def lock_hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        stmt = select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
        if self._lock:
            stmt = stmt.with_for_update()
        row = self._core().execute(stmt).first()
        return None if row is None else _hold(row._mapping)

    def get_hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        row = (
            self._core()
            .execute(select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id))
            .first()
        )
        return None if row is None else _hold(row._mapping)

    def hold_reference_taken(self, tenant_id: str, reference: str) -> bool:
        return (
            self._core()
            .execute(
                select(holds.c.id).where(
                    holds.c.tenant_id == tenant_id, holds.c.reference == reference
                )
            )
            .first()
            is not None
        )

    def expired_hold_ids(self, tenant_id: str, now: datetime, limit: int) -> list[str]:
        rows = self._core().execute(
            select(holds.c.id)
            .where(
                holds.c.tenant_id == tenant_id,
                holds.c.status == HoldStatus.PENDING.value,
                holds.c.expires_at.is_not(None),
                holds.c.expires_at <= now,
            )
            .order_by(holds.c.expires_at, holds.c.id)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def entries(
        self, tenant_id: str, account_id: str, after_sequence: int, limit: int
    ) -> list[Entry]:
        rows = self._core().execute(
            select(entries)
            .where(
                entries.c.tenant_id == tenant_id,
                entries.c.account_id == account_id,
                entries.c.account_sequence > after_sequence,
            )
            .order_by(entries.c.account_sequence)
            .limit(limit)
        )
        return [_entry(r._mapping) for r in rows]

    def posted_as_of(self, tenant_id: str, account_id: str, at: datetime) -> int:
        value = (
            self._core()
            .execute(
                select(entries.c.balance_after)
                .where(
                    and_(
                        entries.c.tenant_id == tenant_id,
                        entries.c.account_id == account_id,
                        entries.c.posted_at <= at,
                    )
                )
                .order_by(entries.c.posted_at.desc(), entries.c.account_sequence.desc())
                .limit(1)
            )
            .scalar_one_or_none()
        )
        return int(value or 0)

    # -- buffered writes ------------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        self._new_accounts.append(_account_row(account))

    def save_accounts(self, changed: Sequence[Account]) -> None:
        for acc in changed:
            self._saved_accounts[acc.id] = acc

    def add_journal(self, journal: Journal) -> None:
        self._new_journals.append(
            {
                "id": journal.id,
                "tenant_id": journal.tenant_id,
                "reference": journal.reference,
                "effective_date": journal.effective_date,
                "description": journal.description,
                "metadata": journal.metadata,
                "posted_at": journal.posted_at,
                "reverses_journal_id": journal.reverses_journal_id,
            }
        )
        self._new_entries.extend(
            {
                "journal_id": e.journal_id,
                "leg": e.leg,
                "tenant_id": e.tenant_id,
                "account_id": e.account_id,
                "direction": e.direction.value,
                "amount": e.amount,
                "currency": e.currency,
                "account_sequence": e.account_sequence,
                "balance_after": e.balance_after,
                "posted_at": e.posted_at,
            }
            for e in journal.entries
        )

    def add_hold(self, hold: Hold) -> None:
        self._new_holds.append(_hold_row(hold))

    def save_hold(self, hold: Hold) -> None:
        self._saved_holds[hold.id] = hold

    def flush(self, *, more: bool = False) -> None:
        """Queue buffered writes on the driver session, parents before children, and start
        them (see the module doc).

        ``more`` says the command has further chunks to write and will flush again, without
        ``more``, before it ends: account totals, which every chunk changes, are held back
        for that last flush (one update per account per command), and the early balance
        check stays switched on in between.
        """
        drv = self._drv
        if self._new_accounts:
            for row in self._new_accounts:
                row["metadata"] = drv.json(row["metadata"])
                row["created_at"] = drv.ts(row["created_at"])
                row["last_posted_at"] = drv.ts(row["last_posted_at"])
            drv.queue(_INSERT_ACCOUNT, self._new_accounts)
        if self._new_journals:
            for row in self._new_journals:
                row["metadata"] = drv.json(row["metadata"])
                row["posted_at"] = drv.ts(row["posted_at"])
                row["effective_date"] = drv.day(row["effective_date"])
            drv.queue(_INSERT_JOURNAL, self._new_journals)
            for row in self._new_entries:
                row["posted_at"] = drv.ts(row["posted_at"])
            # The balance check is deferred to commit for writers that add a journal's entries
            # over several statements; ours go in one, so where we may (see __init__) it runs
            # as that statement ends, while Python works on the next chunk, not at commit.
            if self._check_balance_early and not self._checking_now:
                drv.queue(_CHECK_BALANCE_NOW, [{}])
                self._checking_now = True
            drv.queue(_INSERT_ENTRY, self._new_entries)
        if self._checking_now and not more:
            drv.queue(_CHECK_BALANCE_AT_COMMIT, [{}])
            self._checking_now = False
        if self._new_holds:
            for row in self._new_holds:
                row["metadata"] = drv.json(row["metadata"])
                for col in ("expires_at", "created_at", "released_at"):
                    row[col] = drv.ts(row[col])
            drv.queue(_INSERT_HOLD, self._new_holds)
        if self._saved_accounts and not more:
            drv.queue(
                _SAVE_ACCOUNT,
                [
                    {
                        "id": a.id,
                        "status": a.status.value,
                        "dp": a.debits_posted,
                        "cp": a.credits_posted,
                        "dh": a.debits_held,
                        "ch": a.credits_held,
                        "version": a.version,
                        "entry_count": a.entry_count,
                        "last_posted_at": drv.ts(a.last_posted_at),
                    }
                    for a in self._saved_accounts.values()
                ],
            )
        if self._saved_holds:
            drv.queue(
                _SAVE_HOLD,
                [
                    {
                        "id": h.id,
                        "status": h.status.value,
                        "captured": h.captured_amount,
                        "released_at": drv.ts(h.released_at),
                        "journal": h.capture_journal_id,
                        "version": h.version,
                    }
                    for h in self._saved_holds.values()
                ],
            )
        self._new_accounts, self._new_journals, self._new_entries = [], [], []
        self._new_holds = []
        self._saved_holds = {}
        if not more:
            self._saved_accounts = {}
        drv.send()


def _insert_sql(table: str, columns: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"


_ACCOUNT_COLUMNS = (
    "id, tenant_id, code, currency, type, balance_bound, status, metadata, created_at,"
    " debits_posted, credits_posted, debits_held, credits_held, version, entry_count,"
    " last_posted_at"
)
_INSERT_ACCOUNT = _insert_sql("ledger_accounts", _ACCOUNT_COLUMNS)
_INSERT_JOURNAL = _insert_sql(
    "ledger_journals",
    "id, tenant_id, reference, effective_date, description, metadata, posted_at,"
    " reverses_journal_id",
)
_INSERT_ENTRY = _insert_sql(
    "ledger_entries",
    "journal_id, leg, tenant_id, account_id, direction, amount, currency, account_sequence,"
    " balance_after, posted_at",
)
_INSERT_HOLD = _insert_sql(
    "ledger_holds",
    "id, tenant_id, reference, debit_account_id, credit_account_id, amount, currency, status,"
    " captured_amount, expires_at, created_at, released_at, capture_journal_id, metadata,"
    " version",
)
_CHECK_BALANCE_NOW = "SET CONSTRAINTS ledger_entries_balanced IMMEDIATE"
_CHECK_BALANCE_AT_COMMIT = "SET CONSTRAINTS ledger_entries_balanced DEFERRED"
_SAVE_ACCOUNT = (
    "UPDATE ledger_accounts SET status = :status, debits_posted = :dp, credits_posted = :cp,"
    " debits_held = :dh, credits_held = :ch, version = :version, entry_count = :entry_count,"
    " last_posted_at = :last_posted_at WHERE id = :id"
)
_SAVE_HOLD = (
    "UPDATE ledger_holds SET status = :status, captured_amount = :captured,"
    " released_at = :released_at, capture_journal_id = :journal, version = :version"
    " WHERE id = :id"
)


def _account_from_tuple(r: tuple[Any, ...]) -> Account:
    return Account(
        id=r[0],
        tenant_id=r[1],
        code=r[2],
        currency=r[3],
        type=AccountType(r[4]),
        bound=BalanceBound(r[5]),
        status=AccountStatus(r[6]),
        metadata=read_json(r[7]),
        created_at=read_ts(r[8]),
        debits_posted=int(r[9]),
        credits_posted=int(r[10]),
        debits_held=int(r[11]),
        credits_held=int(r[12]),
        version=int(r[13]),
        entry_count=int(r[14]),
        last_posted_at=None if r[15] is None else read_ts(r[15]),
    )


def _account_row(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "tenant_id": a.tenant_id,
        "code": a.code,
        "currency": a.currency,
        "type": a.type.value,
        "balance_bound": a.bound.value,
        "status": a.status.value,
        "metadata": a.metadata,
        "created_at": a.created_at,
        "debits_posted": a.debits_posted,
        "credits_posted": a.credits_posted,
        "debits_held": a.debits_held,
        "credits_held": a.credits_held,
        "version": a.version,
        "entry_count": a.entry_count,
        "last_posted_at": a.last_posted_at,
    }


def _account(m: Any) -> Account:
    return Account(
        id=m["id"],
        tenant_id=m["tenant_id"],
        code=m["code"],
        currency=m["currency"],
        type=AccountType(m["type"]),
        bound=BalanceBound(m["balance_bound"]),
        status=AccountStatus(m["status"]),
        metadata=m["metadata"],
        created_at=m["created_at"],
        debits_posted=int(m["debits_posted"]),
        credits_posted=int(m["credits_posted"]),
        debits_held=int(m["debits_held"]),
        credits_held=int(m["credits_held"]),
        version=int(m["version"]),
        entry_count=int(m["entry_count"]),
        last_posted_at=m["last_posted_at"],
    )


def _entry(m: Any) -> Entry:
    return Entry(
        journal_id=m["journal_id"],
        leg=int(m["leg"]),
        tenant_id=m["tenant_id"],
        account_id=m["account_id"],
        direction=Direction(m["direction"]),
        amount=int(m["amount"]),
        currency=m["currency"],
        account_sequence=int(m["account_sequence"]),
        balance_after=int(m["balance_after"]),
        posted_at=m["posted_at"],
    )


def _hold_row(h: Hold) -> dict[str, Any]:
    return {
        "id": h.id,
        "tenant_id": h.tenant_id,
        "reference": h.reference,
        "debit_account_id": h.debit_account_id,
        "credit_account_id": h.credit_account_id,
        "amount": h.amount,
        "currency": h.currency,
        "status": h.status.value,
        "captured_amount": h.captured_amount,
        "expires_at": h.expires_at,
        "created_at": h.created_at,
        "released_at": h.released_at,
        "capture_journal_id": h.capture_journal_id,
        "metadata": h.metadata,
        "version": h.version,
    }


def _hold(m: Any) -> Hold:
    return Hold(
        id=m["id"],
        tenant_id=m["tenant_id"],
        reference=m["reference"],
        debit_account_id=m["debit_account_id"],
        credit_account_id=m["credit_account_id"],
        amount=int(m["amount"]),
        currency=m["currency"],
        status=HoldStatus(m["status"]),
        captured_amount=int(m["captured_amount"]),
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        released_at=m["released_at"],
        capture_journal_id=m["capture_journal_id"],
        metadata=m["metadata"],
        version=int(m["version"]),
    )
