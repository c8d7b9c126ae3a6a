"""In-memory ledger store; mirrors the SQL store's uniqueness rules and buffering."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from finfactory.adapters.memory import MemoryUnitOfWork
from finfactory.kernel.errors import IntegrityViolation
from finfactory.primitives.ledger.model import Account, Entry, Hold, HoldStatus, Journal

ACCOUNTS = "ledger_accounts"
CODES = "ledger_account_codes"
JOURNALS = "ledger_journals"
REFERENCES = "ledger_journal_references"
REVERSALS = "ledger_reversals"
ENTRIES = "ledger_entries"
HOLDS = "ledger_holds"
HOLD_REFS = "ledger_hold_references"


class MemoryLedgerStore:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow
        self._pending: list[tuple[str, object]] = []

    def _account(self, tenant_id: str, account_id: str) -> Account | None:
        acc = self._uow.get(ACCOUNTS, account_id)
        return acc if acc is not None and acc.tenant_id == tenant_id else None

    def lock_accounts(self, tenant_id: str, account_ids: Collection[str]) -> dict[str, Account]:
        found = (self._account(tenant_id, aid) for aid in sorted(account_ids))
        return {acc.id: acc for acc in found if acc is not None}

    def get_account(self, tenant_id: str, account_id: str) -> Account | None:
        return self._account(tenant_id, account_id)

    def account_id_for_code(self, tenant_id: str, code: str) -> str | None:
        found: str | None = self._uow.get(CODES, (tenant_id, code))
        return found

    def list_accounts(self, tenant_id: str, after_code: str, limit: int) -> list[Account]:
        accs = [
            a for a in self._uow.rows(ACCOUNTS) if a.tenant_id == tenant_id and a.code > after_code
        ]
        return sorted(accs, key=lambda a: a.code)[:limit]

    def existing_references(self, tenant_id: str, references: Collection[str]) -> set[str]:
        return {r for r in references if self._uow.get(REFERENCES, (tenant_id, r)) is not None}

    def get_journal(self, tenant_id: str, journal_id: str) -> Journal | None:
        j = self._uow.get(JOURNALS, journal_id)
        return j if j is not None and j.tenant_id == tenant_id else None

    def reversal_of(self, tenant_id: str, journal_id: str) -> str | None:
        found: str | None = self._uow.get(REVERSALS, journal_id)
        return found

    def lock_hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        return self.get_hold(tenant_id, hold_id)

    def get_hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        h = self._uow.get(HOLDS, hold_id)
        return h if h is not None and h.tenant_id == tenant_id else None

    def hold_reference_taken(self, tenant_id: str, reference: str) -> bool:
        return self._uow.get(HOLD_REFS, (tenant_id, reference)) is not None

    def expired_hold_ids(self, tenant_id: str, now: datetime, limit: int) -> list[str]:
        due = [
            h
            for h in self._uow.rows(HOLDS)
            if h.tenant_id == tenant_id
            and h.status is HoldStatus.PENDING
            and h.expires_at is not None
            and h.expires_at <= now
        ]
        due.sort(key=lambda h: (h.expires_at, h.id))
        return [h.id for h in due[:limit]]

    def entries(
        self, tenant_id: str, account_id: str, after_sequence: int, limit: int
    ) -> list[Entry]:
        acc = self._account(tenant_id, account_id)
        if acc is None:
            return []
        out = []
        for seq in range(after_sequence + 1, min(acc.entry_count, after_sequence + limit) + 1):
            out.append(self._uow.get(ENTRIES, (account_id, seq)))
        return out

    def posted_as_of(self, tenant_id: str, account_id: str, at: datetime) -> int:
        acc = self._account(tenant_id, account_id)
        if acc is None:
            return 0
        best: Entry | None = None
        for seq in range(1, acc.entry_count + 1):
            e: Entry = self._uow.get(ENTRIES, (account_id, seq))
            if e.posted_at <= at and (
                best is None
                or (e.posted_at, e.account_sequence) > (best.posted_at, best.account_sequence)
            ):
                best = e
        return 0 if best is None else best.balance_after

    def add_account(self, account: Account) -> None:
        self._pending.append(("account", account))

    def save_accounts(self, accounts: Sequence[Account]) -> None:
        self._pending.extend(("saved_account", a) for a in accounts)

    def add_journal(self, journal: Journal) -> None:
        self._pending.append(("journal", journal))

    def add_hold(self, hold: Hold) -> None:
        self._pending.append(("hold", hold))

    def save_hold(self, hold: Hold) -> None:
        self._pending.append(("saved_hold", hold))

    def flush(self, *, more: bool = False) -> None:
        uow = self._uow
        for kind, item in self._pending:
            if kind == "account":
                assert isinstance(item, Account)
                if uow.get(CODES, (item.tenant_id, item.code)) is not None:
                    raise IntegrityViolation("duplicate account code", code=item.code)
                self._require_new(ACCOUNTS, item.id)
                uow.put(CODES, (item.tenant_id, item.code), item.id)
                uow.put(ACCOUNTS, item.id, item)
            elif kind == "saved_account":
                assert isinstance(item, Account)
                uow.put(ACCOUNTS, item.id, item)
            elif kind == "journal":
                assert isinstance(item, Journal)
                self._insert_journal(item)
            else:
                assert isinstance(item, Hold)
                if kind == "hold":
                    if uow.get(HOLD_REFS, (item.tenant_id, item.reference)) is not None:
                        raise IntegrityViolation("duplicate hold reference")
                    self._require_new(HOLDS, item.id)
                    uow.put(HOLD_REFS, (item.tenant_id, item.reference), item.id)
                uow.put(HOLDS, item.id, item)
        self._pending.clear()

    def _require_new(self, table: str, key: object) -> None:
        # A primary key taken (two id generators that overlap): refused like the database
        # refuses it, never overwritten.
        if self._uow.get(table, key) is not None:
            raise IntegrityViolation(f"{table}: {key} already exists")

    def _insert_journal(self, j: Journal) -> None:
        uow = self._uow
        if uow.get(REFERENCES, (j.tenant_id, j.reference)) is not None:
            raise IntegrityViolation("duplicate journal reference", reference=j.reference)
        self._require_new(JOURNALS, j.id)
        if j.reverses_journal_id is not None:
            if uow.get(REVERSALS, j.reverses_journal_id) is not None:
                raise IntegrityViolation("journal already reversed")
            uow.put(REVERSALS, j.reverses_journal_id, j.id)
        uow.put(REFERENCES, (j.tenant_id, j.reference), j.id)
        uow.put(JOURNALS, j.id, j)
        for e in j.entries:
            if e.amount <= 0:
                raise IntegrityViolation("entry amounts must be positive")
            self._require_new(ENTRIES, (e.account_id, e.account_sequence))
            uow.put(ENTRIES, (e.account_id, e.account_sequence), e)
