"""Events the ledger publishes. Amounts are money JSON: string amount plus currency."""

from __future__ import annotations

from datetime import date, datetime

from finfactory.events.registry import EventPayload, declare_event

PRIMITIVE = "ledger"


class MoneyJson(EventPayload):
    amount: str
    currency: str


class LegView(EventPayload):
    account_id: str
    account_code: str
    direction: str
    amount: MoneyJson


class BalanceView(EventPayload):
    account_id: str
    account_code: str
    posted: MoneyJson
    held: MoneyJson
    available: MoneyJson


@declare_event(
    "ledger.account.opened",
    primitive=PRIMITIVE,
    aggregate_type="ledger_account",
    description="A ledger account was opened",
)
class AccountOpened(EventPayload):
    account_id: str
    code: str
    currency: str
    type: str
    balance_bound: str


@declare_event(
    "ledger.account.status_changed",
    primitive=PRIMITIVE,
    aggregate_type="ledger_account",
    description="A ledger account was frozen, unfrozen or closed",
)
class AccountStatusChanged(EventPayload):
    account_id: str
    code: str
    old_status: str
    new_status: str
    reason: str


@declare_event(
    "journal.posted",
    primitive=PRIMITIVE,
    aggregate_type="journal",
    description="A balanced journal was posted, with the resulting balances of its accounts",
)
class JournalPosted(EventPayload):
    journal_id: str
    reference: str
    effective_date: date
    posted_at: datetime
    description: str
    reverses_journal_id: str | None
    legs: list[LegView]
    balances: list[BalanceView]


@declare_event(
    "balance.updated",
    primitive=PRIMITIVE,
    aggregate_type="ledger_account",
    description="An account's posted, held or available balance changed",
)
class BalanceUpdated(EventPayload):
    account_id: str
    account_code: str
    posted: MoneyJson
    held: MoneyJson
    available: MoneyJson
    cause_type: str
    cause_id: str


@declare_event(
    "hold.created",
    primitive=PRIMITIVE,
    aggregate_type="hold",
    description="Funds were reserved by a two-phase hold",
)
class HoldCreated(EventPayload):
    hold_id: str
    reference: str
    debit_account_id: str
    credit_account_id: str
    amount: MoneyJson
    expires_at: datetime | None


@declare_event(
    "hold.released",
    primitive=PRIMITIVE,
    aggregate_type="hold",
    description="A hold ended: captured (fully or partly), voided or expired",
)
class HoldReleased(EventPayload):
    hold_id: str
    reason: str
    note: str
    amount: MoneyJson
    captured: MoneyJson
    released: MoneyJson
    capture_journal_id: str | None


@declare_event(
    "transaction.reversed",
    primitive=PRIMITIVE,
    aggregate_type="journal",
    description="A posted journal was reversed by a new journal that negates it",
)
class TransactionReversed(EventPayload):
    journal_id: str
    reversal_journal_id: str
    reference: str
    reason: str
