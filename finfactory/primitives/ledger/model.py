"""Ledger entities and the pure arithmetic on them. Integers only; no I/O."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import attrs

from finfactory.kernel.money import MAX_MINOR
from finfactory.primitives.ledger.errors import (
    AccountNotActive,
    AmountOutOfRange,
    BalanceBoundExceeded,
    CurrencyMismatch,
)


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"

    @property
    def debit_normal(self) -> bool:
        return self in _DEBIT_NORMAL


# A set lookup hashes the member's text; the tuple test compared members one by one, and
# every balance read asks this.
_DEBIT_NORMAL: frozenset[AccountType] = frozenset({AccountType.ASSET, AccountType.EXPENSE})


class BalanceBound(StrEnum):
    NONE = "none"
    DEBITS_NOT_OVER_CREDITS = "debits_must_not_exceed_credits"
    CREDITS_NOT_OVER_DEBITS = "credits_must_not_exceed_debits"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class Direction(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"

    @property
    def opposite(self) -> Direction:
        return Direction.CREDIT if self is Direction.DEBIT else Direction.DEBIT


class HoldStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


@attrs.frozen
class Account:
    """An account with its running totals. ``version`` numbers its events."""

    id: str
    tenant_id: str
    code: str
    currency: str
    type: AccountType
    bound: BalanceBound
    status: AccountStatus
    metadata: dict[str, Any]
    created_at: datetime
    debits_posted: int = 0
    credits_posted: int = 0
    debits_held: int = 0
    credits_held: int = 0
    version: int = 1
    entry_count: int = 0
    # When its newest entry was posted: entries are stamped no earlier (see posting_time).
    last_posted_at: datetime | None = None

    @property
    def posted(self) -> int:
        """Posted balance on the account's normal side."""
        if self.type.debit_normal:
            return self.debits_posted - self.credits_posted
        return self.credits_posted - self.debits_posted

    @property
    def held(self) -> int:
        """Funds reserved by pending holds that will reduce the normal-side balance."""
        return self.credits_held if self.type.debit_normal else self.debits_held

    @property
    def available(self) -> int:
        return self.posted - self.held

    def check_bound(self) -> None:
        if self.bound is BalanceBound.DEBITS_NOT_OVER_CREDITS:
            if self.debits_posted + self.debits_held > self.credits_posted:
                raise BalanceBoundExceeded(
                    f"account {self.code} would have more debits than credits",
                    account_id=self.id,
                )
        elif (
            self.bound is BalanceBound.CREDITS_NOT_OVER_DEBITS
            and self.credits_posted + self.credits_held > self.debits_posted
        ):
            raise BalanceBoundExceeded(
                f"account {self.code} would have more credits than debits", account_id=self.id
            )

    def require_active(self) -> None:
        if self.status is not AccountStatus.ACTIVE:
            raise AccountNotActive(
                f"account {self.code} is {self.status.value}", account_id=self.id
            )

    def require_currency(self, currency: str) -> None:
        if currency != self.currency:
            raise CurrencyMismatch(
                f"account {self.code} holds {self.currency}, not {currency}", account_id=self.id
            )

    def _with(self, **changes: Any) -> Account:
        # attrs.evolve re-runs __init__ and copy.copy goes through __reduce_ex__; filling
        # the slots directly is several times cheaper, and this runs for every leg posted.
        clone = object.__new__(Account)
        for name in _ACCOUNT_SLOTS:
            object.__setattr__(clone, name, changes.get(name, getattr(self, name)))
        return clone

    def post(self, direction: Direction, amount: int, at: datetime) -> Account:
        total = self.debits_posted if direction is Direction.DEBIT else self.credits_posted
        if total + amount > MAX_MINOR:
            raise AmountOutOfRange(f"account {self.code} totals would overflow", account_id=self.id)
        if direction is Direction.DEBIT:
            return self._with(
                debits_posted=self.debits_posted + amount,
                entry_count=self.entry_count + 1,
                last_posted_at=at,
            )
        return self._with(
            credits_posted=self.credits_posted + amount,
            entry_count=self.entry_count + 1,
            last_posted_at=at,
        )

    def hold(self, direction: Direction, amount: int) -> Account:
        """``amount`` may be negative to release a hold."""
        total = self.debits_held if direction is Direction.DEBIT else self.credits_held
        if total + amount > MAX_MINOR:
            raise AmountOutOfRange(f"account {self.code} holds would overflow", account_id=self.id)
        if direction is Direction.DEBIT:
            return self._with(debits_held=self.debits_held + amount)
        return self._with(credits_held=self.credits_held + amount)

    def with_status(self, status: AccountStatus) -> Account:
        return self._with(status=status)

    def bump(self) -> Account:
        return self._with(version=self.version + 1)


_ACCOUNT_SLOTS = tuple(f.name for f in attrs.fields(Account))


@attrs.frozen
class Entry:
    """One leg of a posted journal, with the account's posted balance right after it."""

    journal_id: str
    leg: int
    tenant_id: str
    account_id: str
    direction: Direction
    amount: int
    currency: str
    account_sequence: int
    balance_after: int
    posted_at: datetime


@attrs.frozen
class Journal:
    id: str
    tenant_id: str
    reference: str
    effective_date: date
    description: str
    metadata: dict[str, Any]
    posted_at: datetime
    reverses_journal_id: str | None
    entries: tuple[Entry, ...]


@attrs.frozen
class Hold:
    """A two-phase transfer: reserved now, captured (fully or partly) or released later."""

    id: str
    tenant_id: str
    reference: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    status: HoldStatus
    captured_amount: int
    expires_at: datetime | None
    created_at: datetime
    released_at: datetime | None
    capture_journal_id: str | None
    metadata: dict[str, Any]
    version: int = 1
