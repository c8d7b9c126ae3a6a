"""Pure posting logic: balanced legs -> new account states, entries and events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import attrs

from finfactory.kernel.commands import CommandScope
from finfactory.kernel.money import minor_to_json
from finfactory.primitives.ledger import events as ev
from finfactory.primitives.ledger.errors import AccountNotFound, UnbalancedJournal
from finfactory.primitives.ledger.model import Account, Direction, Entry, Journal


@attrs.frozen
class LegSpec:
    account_id: str
    direction: Direction
    amount: int
    currency: str


@attrs.frozen
class JournalSpec:
    reference: str
    legs: tuple[LegSpec, ...]
    effective_date: date | None
    description: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)
    reverses_journal_id: str | None = None


def money(minor: int, currency: str) -> dict[str, str]:
    return minor_to_json(minor, currency)


def balance_view(acc: Account) -> dict[str, Any]:
    posted, held, currency = acc.posted, acc.held, acc.currency
    return dict(
        account_id=acc.id,
        account_code=acc.code,
        posted=money(posted, currency),
        held=money(held, currency),
        available=money(posted - held, currency),
    )


def check_balanced(legs: Sequence[LegSpec]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        totals[leg.currency] += leg.amount if leg.direction is Direction.DEBIT else -leg.amount
    unbalanced = {cur: diff for cur, diff in totals.items() if diff != 0}
    if unbalanced:
        raise UnbalancedJournal(
            "debits and credits differ in " + ", ".join(sorted(unbalanced)),
            difference={cur: minor_to_json(diff, cur) for cur, diff in sorted(unbalanced.items())},
        )


def emit_balance(
    scope: CommandScope,
    acc: Account,
    cause_type: str,
    cause_id: str,
) -> Account:
    """Bump the account's version and emit balance.updated at that sequence."""
    acc = acc.bump()
    payload = balance_view(acc)
    payload["cause_type"] = cause_type
    payload["cause_id"] = cause_id
    scope.emit(ev.BalanceUpdated, payload, acc.id, acc.version)
    return acc


def posting_time(now: datetime, accounts: Sequence[Account]) -> datetime:
    """When a journal on ``accounts`` is posted: the clock's reading, unless an account's
    newest entry is stamped later (a concurrent command that read the clock after this one
    but took the account's lock first, or an app server whose clock is behind). Each
    account's entries are then stamped in the order they were posted, which balances as of
    a past instant rely on. Never before an account was opened, either: its balance as of
    an earlier instant is zero."""
    latest = max((a.last_posted_at or a.created_at for a in accounts), default=now)
    return max(now, latest)


def apply_journal(scope: CommandScope, accounts: dict[str, Account], spec: JournalSpec) -> Journal:
    """Post ``spec`` onto ``accounts`` (updated in place) and emit its journal.posted.

    The accounts' balance.updated events are the caller's to emit once the command has posted
    all its journals (:func:`emit_journal_balances`). Raises a DomainError before anything is
    emitted if the journal is unbalanced, names an unknown, inactive or wrong-currency
    account, or breaches a balance bound.
    """
    check_balanced(spec.legs)
    legs_accounts = []
    for index, leg in enumerate(spec.legs):
        found = accounts.get(leg.account_id)
        if found is None:
            raise AccountNotFound(f"account {leg.account_id} not found", field=f"legs.{index}")
        found.require_active()
        found.require_currency(leg.currency)
        legs_accounts.append(found)
    posted_at = posting_time(scope.now, legs_accounts)
    journal_id = scope.ids.new_id()
    entries: list[Entry] = []
    touched: dict[str, Account] = {}
    for index, leg in enumerate(spec.legs):
        acc = touched.get(leg.account_id) or accounts[leg.account_id]
        acc = acc.post(leg.direction, leg.amount, posted_at)
        touched[acc.id] = acc
        entries.append(
            Entry(
                journal_id=journal_id,
                leg=index,
                tenant_id=scope.ctx.tenant_id,
                account_id=acc.id,
                direction=leg.direction,
                amount=leg.amount,
                currency=leg.currency,
                account_sequence=acc.entry_count,
                balance_after=acc.posted,
                posted_at=posted_at,
            )
        )
    for acc in touched.values():
        acc.check_bound()
    journal = Journal(
        id=journal_id,
        tenant_id=scope.ctx.tenant_id,
        reference=spec.reference,
        effective_date=spec.effective_date or posted_at.date(),
        description=spec.description,
        metadata=spec.metadata,
        posted_at=posted_at,
        reverses_journal_id=spec.reverses_journal_id,
        entries=tuple(entries),
    )
    codes = {acc.id: acc.code for acc in touched.values()}
    views = {acc.id: balance_view(acc) for acc in touched.values()}
    scope.emit(
        ev.JournalPosted,
        dict(
            journal_id=journal.id,
            reference=journal.reference,
            effective_date=journal.effective_date.isoformat(),
            posted_at=journal.posted_at.isoformat(),
            description=journal.description,
            reverses_journal_id=spec.reverses_journal_id,
            legs=[
                dict(
                    account_id=e.account_id,
                    account_code=codes[e.account_id],
                    direction=e.direction.value,
                    amount=money(e.amount, e.currency),
                )
                for e in entries
            ],
            balances=list(views.values()),
        ),
        journal.id,
        1,
    )
    accounts.update(touched)
    return journal


def emit_journal_balances(
    scope: CommandScope, accounts: dict[str, Account], journals: Sequence[Journal]
) -> None:
    """One balance.updated per account the journals touched, with its balance after all of
    them and the last of them as its cause.

    A command's journals commit together, so a balance between two of them is never visible
    to anyone; each journal.posted still carries the balances right after its journal.
    Accounts come in the order the journals first touch them.
    """
    causes: dict[str, str] = {}
    for journal in journals:
        for entry in journal.entries:
            causes[entry.account_id] = journal.id
    for account_id, journal_id in causes.items():
        accounts[account_id] = emit_balance(scope, accounts[account_id], "journal", journal_id)


def expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
