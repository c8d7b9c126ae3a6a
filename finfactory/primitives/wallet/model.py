"""Wallet entities, the lifecycle state machine and the usage counters. Integers (minor
units) only; no I/O."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import attrs

from finfactory.primitives.wallet.errors import InvalidTransition


class WalletKind(StrEnum):
    PERSONAL = "personal"
    MERCHANT = "merchant"


class WalletStatus(StrEnum):
    CREATED = "created"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class MovementKind(StrEnum):
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"
    TRANSFER = "transfer"
    MERCHANT_PAYMENT = "merchant_payment"


class LimitKind(StrEnum):
    BALANCE_CAP = "balance_cap"
    DAILY_IN = "daily_in"
    MONTHLY_IN = "monthly_in"
    DAILY_OUT = "daily_out"
    MONTHLY_OUT = "monthly_out"
    PER_TRANSACTION = "per_transaction"


LIMIT_KINDS: tuple[LimitKind, ...] = tuple(LimitKind)

# status -> the statuses it may move to. Closed is final.
_TRANSITIONS: dict[WalletStatus, frozenset[WalletStatus]] = {
    WalletStatus.CREATED: frozenset({WalletStatus.ACTIVE, WalletStatus.CLOSED}),
    WalletStatus.ACTIVE: frozenset({WalletStatus.SUSPENDED, WalletStatus.CLOSED}),
    WalletStatus.SUSPENDED: frozenset({WalletStatus.ACTIVE, WalletStatus.CLOSED}),
    WalletStatus.CLOSED: frozenset(),
}


@attrs.frozen
class Wallet:
    """A customer's wallet; its money lives in the ledger account ``ledger_account_id``.

    ``version`` numbers the wallet's events (wallet.created is 1).
    """

    id: str
    tenant_id: str
    customer_id: str
    currency: str
    kind: WalletKind
    status: WalletStatus
    ledger_account_id: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int = 1

    def moved_to(self, status: WalletStatus, now: datetime) -> Wallet:
        if status not in _TRANSITIONS[self.status]:
            raise InvalidTransition(
                f"wallet {self.id} is {self.status.value} and cannot become {status.value}",
                wallet_id=self.id,
                status=self.status.value,
                requested=status.value,
            )
        return attrs.evolve(self, status=status, updated_at=now, version=self.version + 1)

    @property
    def accepts_debits(self) -> bool:
        return self.status is WalletStatus.ACTIVE

    @property
    def accepts_credits(self) -> bool:
        # A suspended wallet still receives money (refunds, incoming payments are not
        # bounced); it only cannot send any.
        return self.status in (WalletStatus.ACTIVE, WalletStatus.SUSPENDED)


@attrs.frozen
class LimitSet:
    """Limits in minor units of one currency; ``None`` means no limit of that kind."""

    balance_cap: int | None = None
    daily_in: int | None = None
    monthly_in: int | None = None
    daily_out: int | None = None
    monthly_out: int | None = None
    per_transaction: int | None = None

    def get(self, kind: LimitKind) -> int | None:
        value: int | None = getattr(self, kind.value)
        return value

    def overlaid(self, override: LimitSet) -> LimitSet:
        """These limits with every limit ``override`` sets replacing ours."""
        return LimitSet(
            **{
                k.value: override.get(k) if override.get(k) is not None else self.get(k)
                for k in LIMIT_KINDS
            }
        )

    def as_dict(self) -> dict[str, int | None]:
        return {k.value: self.get(k) for k in LIMIT_KINDS}


@attrs.frozen
class LimitOverride:
    """A customer's own limits in one currency, replacing the tier's where set."""

    tenant_id: str
    customer_id: str
    currency: str
    limits: LimitSet
    reason: str
    updated_by: str
    updated_at: datetime
    version: int


@attrs.frozen
class Usage:
    """What a customer moved in and out, in one currency, in the current day and month.

    ``day`` (``YYYY-MM-DD``) and ``month`` (``YYYY-MM``) are in the tenant's time zone. The
    row is locked by every movement of the customer in the currency, which makes the limit
    checks atomic with the posting.
    """

    tenant_id: str
    customer_id: str
    currency: str
    day: str
    day_in: int
    day_out: int
    month: str
    month_in: int
    month_out: int

    def rolled(self, day: str, month: str) -> Usage:
        """Counters for the period of ``day``/``month``. A period key only moves forward: if
        the clock reads an earlier period (skew between servers), we keep counting into the
        later one rather than forget what was used."""
        out = self
        if day > self.day:
            out = attrs.evolve(out, day=day, day_in=0, day_out=0)
        if month > self.month:
            out = attrs.evolve(out, month=month, month_in=0, month_out=0)
        return out

    def plus(self, incoming: int, outgoing: int) -> Usage:
        return attrs.evolve(
            self,
            day_in=self.day_in + incoming,
            day_out=self.day_out + outgoing,
            month_in=self.month_in + incoming,
            month_out=self.month_out + outgoing,
        )


@attrs.frozen
class Movement:
    """A money movement the wallet made through the ledger (the journal is the record of
    the money; this row says what it was for the wallet)."""

    id: str
    tenant_id: str
    reference: str
    kind: MovementKind
    journal_id: str
    amount: int
    currency: str
    from_wallet_id: str | None
    to_wallet_id: str | None
    counterparty_account_id: str | None
    description: str
    posted_at: datetime
