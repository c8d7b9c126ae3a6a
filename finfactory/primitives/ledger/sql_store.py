"""SQLAlchemy implementation of the ledger store. Reads (and row locks) go out at once;
writes are buffered and sent at :meth:`flush` as a few multi-row statements."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

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

_SAVE_ACCOUNT = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"), debits_posted=bindparam("b_dp"),
        credits_posted=bindparam("b_cp"), debits_held=bindparam("b_dh"),
        credits_held=bindparam("b_ch"), version=bindparam("b_version"),
        entry_count=bindparam("b_count"),
    )
)
_SAVE_HOLD = (
    update(holds)
    .where(holds.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"), captured_amount=bindparam("b_captured"),
        released_at=bindparam("b_released"), capture_journal_id=bindparam("b_journal"),
        version=bindparam("b_version"),
    )
)


class SqlLedgerStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = conn.dialect.name == "postgresql"
        self._new_accounts: list[dict[str, Any]] = []
        self._saved_accounts: dict[str, Account] = {}
        self._new_journals: list[dict[str, Any]] = []
        self._new_entries: list[dict[str, Any]] = []
        self._new_holds: list[dict[str, Any]] = []
        self._saved_holds: dict[str, Hold] = {}

    # -- reads ----------------------------------------------------------------------------
    def lock_accounts(self, tenant_id: str, account_ids: Collection[str]) -> dict[str, Account]:
        stmt = (
            select(accounts)
            .where(accounts.c.tenant_id == tenant_id, accounts.c.id.in_(sorted(account_ids)))
            .order_by(accounts.c.id)
        )
        if self._lock:
            stmt = stmt.with_for_update()
        return {row.id: _account(row._mapping) for row in self._conn.execute(stmt)}

    def get_account(self, tenant_id: str, account_id: str) -> Account | None:
        row = self._conn.execute(
            select(accounts).where(accounts.c.tenant_id == tenant_id, accounts.c.id == account_id)
        ).first()
        return None if row is None else _account(row._mapping)

    def account_id_for_code(self, tenant_id: str, code: str) -> str | None:
        return self._conn.execute(
            select(accounts.c.id).where(accounts.c.tenant_id == tenant_id,
                                        accounts.c.code == code)
        ).scalar_one_or_none()

    def list_accounts(self, tenant_id: str, after_code: str, limit: int) -> list[Account]:
        rows = self._conn.execute(
            select(accounts)
            .where(accounts.c.tenant_id == tenant_id, accounts.c.code > after_code)
            .order_by(accounts.c.code)
            .limit(limit)
        )
        return [_account(r._mapping) for r in rows]

    def existing_references(self, tenant_id: str, references: Collection[str]) -> set[str]:
        rows = self._conn.execute(
            select(journals.c.reference).where(
                journals.c.tenant_id == tenant_id, journals.c.reference.in_(list(references))
            )
        )
        return {r[0] for r in rows}

    def get_journal(self, tenant_id: str, journal_id: str) -> Journal | None:
        row = self._conn.execute(
            select(journals).where(journals.c.tenant_id == tenant_id, journals.c.id == journal_id)
        ).first()
        if row is None:
            return None
        legs = self._conn.execute(
            select(entries).where(entries.c.journal_id == journal_id).order_by(entries.c.leg)
        )
        m = row._mapping
        return Journal(
            id=m["id"], tenant_id=m["tenant_id"], reference=m["reference"],
            effective_date=m["effective_date"], description=m["description"],
            metadata=m["metadata"], posted_at=m["posted_at"],
            reverses_journal_id=m["reverses_journal_id"],
            entries=tuple(_entry(e._mapping) for e in legs),
        )

    def reversal_of(self, tenant_id: str, journal_id: str) -> str | None:
        return self._conn.execute(
            select(journals.c.id).where(journals.c.tenant_id == tenant_id,
                                        journals.c.reverses_journal_id == journal_id)
        ).scalar_one_or_none()

    def lock_hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        stmt = select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
        if self._lock:
            stmt = stmt.with_for_update()
        row = self._conn.execute(stmt).first()
        return None if row is None else _hold(row._mapping)

    def get_hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        row = self._conn.execute(
            select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
        ).first()
        return None if row is None else _hold(row._mapping)

    def hold_reference_taken(self, tenant_id: str, reference: str) -> bool:
        return self._conn.execute(
            select(holds.c.id).where(holds.c.tenant_id == tenant_id,
                                     holds.c.reference == reference)
        ).first() is not None

    def expired_hold_ids(self, tenant_id: str, now: datetime, limit: int) -> list[str]:
        rows = self._conn.execute(
            select(holds.c.id)
            .where(holds.c.tenant_id == tenant_id, holds.c.status == HoldStatus.PENDING.value,
                   holds.c.expires_at.is_not(None), holds.c.expires_at <= now)
            .order_by(holds.c.expires_at, holds.c.id)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def entries(
        self, tenant_id: str, account_id: str, after_sequence: int, limit: int
    ) -> list[Entry]:
        rows = self._conn.execute(
            select(entries)
            .where(entries.c.tenant_id == tenant_id, entries.c.account_id == account_id,
                   entries.c.account_sequence > after_sequence)
            .order_by(entries.c.account_sequence)
            .limit(limit)
        )
        return [_entry(r._mapping) for r in rows]

    def posted_as_of(self, tenant_id: str, account_id: str, at: datetime) -> int:
        value = self._conn.execute(
            select(entries.c.balance_after)
            .where(and_(entries.c.tenant_id == tenant_id, entries.c.account_id == account_id,
                        entries.c.posted_at <= at))
            .order_by(entries.c.posted_at.desc(), entries.c.account_sequence.desc())
            .limit(1)
        ).scalar_one_or_none()
        return int(value or 0)

    # -- buffered writes ------------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        self._new_accounts.append(_account_row(account))

    def save_accounts(self, changed: Sequence[Account]) -> None:
        for acc in changed:
            self._saved_accounts[acc.id] = acc

    def add_journal(self, journal: Journal) -> None:
        self._new_journals.append({
            "id": journal.id, "tenant_id": journal.tenant_id, "reference": journal.reference,
            "effective_date": journal.effective_date, "description": journal.description,
            "metadata": journal.metadata, "posted_at": journal.posted_at,
            "reverses_journal_id": journal.reverses_journal_id,
        })
        self._new_entries.extend(
            {
                "journal_id": e.journal_id, "leg": e.leg, "tenant_id": e.tenant_id,
                "account_id": e.account_id, "direction": e.direction.value, "amount": e.amount,
                "currency": e.currency, "account_sequence": e.account_sequence,
                "balance_after": e.balance_after, "posted_at": e.posted_at,
            }
            for e in journal.entries
        )

    def add_hold(self, hold: Hold) -> None:
        self._new_holds.append(_hold_row(hold))

    def save_hold(self, hold: Hold) -> None:
        self._saved_holds[hold.id] = hold

    def flush(self) -> None:
        conn = self._conn
        if self._new_accounts:
            conn.execute(insert(accounts), self._new_accounts)
        if self._new_journals:
            conn.execute(insert(journals), self._new_journals)
            conn.execute(insert(entries), self._new_entries)
        if self._new_holds:
            conn.execute(insert(holds), self._new_holds)
        if self._saved_accounts:
            conn.execute(_SAVE_ACCOUNT, [
                {"b_id": a.id, "b_status": a.status.value, "b_dp": a.debits_posted,
                 "b_cp": a.credits_posted, "b_dh": a.debits_held, "b_ch": a.credits_held,
                 "b_version": a.version, "b_count": a.entry_count}
                for a in self._saved_accounts.values()
            ])
        if self._saved_holds:
            conn.execute(_SAVE_HOLD, [
                {"b_id": h.id, "b_status": h.status.value, "b_captured": h.captured_amount,
                 "b_released": h.released_at, "b_journal": h.capture_journal_id,
                 "b_version": h.version}
                for h in self._saved_holds.values()
            ])
        self._new_accounts, self._new_journals, self._new_entries = [], [], []
        self._new_holds = []
        self._saved_accounts, self._saved_holds = {}, {}


def _account_row(a: Account) -> dict[str, Any]:
    return {
        "id": a.id, "tenant_id": a.tenant_id, "code": a.code, "currency": a.currency,
        "type": a.type.value, "balance_bound": a.bound.value, "status": a.status.value,
        "metadata": a.metadata, "created_at": a.created_at, "debits_posted": a.debits_posted,
        "credits_posted": a.credits_posted, "debits_held": a.debits_held,
        "credits_held": a.credits_held, "version": a.version, "entry_count": a.entry_count,
    }


def _account(m: Any) -> Account:
    return Account(
        id=m["id"], tenant_id=m["tenant_id"], code=m["code"], currency=m["currency"],
        type=AccountType(m["type"]), bound=BalanceBound(m["balance_bound"]),
        status=AccountStatus(m["status"]), metadata=m["metadata"], created_at=m["created_at"],
        debits_posted=int(m["debits_posted"]), credits_posted=int(m["credits_posted"]),
        debits_held=int(m["debits_held"]), credits_held=int(m["credits_held"]),
        version=int(m["version"]), entry_count=int(m["entry_count"]),
    )


def _entry(m: Any) -> Entry:
    return Entry(
        journal_id=m["journal_id"], leg=int(m["leg"]), tenant_id=m["tenant_id"],
        account_id=m["account_id"], direction=Direction(m["direction"]),
        amount=int(m["amount"]), currency=m["currency"],
        account_sequence=int(m["account_sequence"]), balance_after=int(m["balance_after"]),
        posted_at=m["posted_at"],
    )


def _hold_row(h: Hold) -> dict[str, Any]:
    return {
        "id": h.id, "tenant_id": h.tenant_id, "reference": h.reference,
        "debit_account_id": h.debit_account_id, "credit_account_id": h.credit_account_id,
        "amount": h.amount, "currency": h.currency, "status": h.status.value,
        "captured_amount": h.captured_amount, "expires_at": h.expires_at,
        "created_at": h.created_at, "released_at": h.released_at,
        "capture_journal_id": h.capture_journal_id, "metadata": h.metadata,
        "version": h.version,
    }


def _hold(m: Any) -> Hold:
    return Hold(
        id=m["id"], tenant_id=m["tenant_id"], reference=m["reference"],
        debit_account_id=m["debit_account_id"], credit_account_id=m["credit_account_id"],
        amount=int(m["amount"]), currency=m["currency"], status=HoldStatus(m["status"]),
        captured_amount=int(m["captured_amount"]), expires_at=m["expires_at"],
        created_at=m["created_at"], released_at=m["released_at"],
        capture_journal_id=m["capture_journal_id"], metadata=m["metadata"],
        version=int(m["version"]),
    )
