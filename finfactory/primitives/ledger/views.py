"""Entities -> API results."""

from __future__ import annotations

from finfactory.kernel.money import from_minor
from finfactory.primitives.ledger import commands as cmd
from finfactory.primitives.ledger.model import Account, Hold, Journal


def account_view(acc: Account) -> cmd.AccountView:
    return cmd.AccountView.model_construct(
        id=acc.id,
        code=acc.code,
        currency=acc.currency,
        type=acc.type,
        balance_bound=acc.bound,
        status=acc.status,
        metadata=dict(acc.metadata),
        posted=from_minor(acc.posted, acc.currency),
        held=from_minor(acc.held, acc.currency),
        available=from_minor(acc.available, acc.currency),
    )


def journal_view(j: Journal) -> cmd.JournalView:
    return cmd.JournalView.model_construct(
        id=j.id,
        reference=j.reference,
        effective_date=j.effective_date,
        posted_at=j.posted_at,
        description=j.description,
        reverses_journal_id=j.reverses_journal_id,
        metadata=dict(j.metadata),
        legs=[
            cmd.LegView.model_construct(
                account_id=e.account_id,
                direction=e.direction,
                amount=from_minor(e.amount, e.currency),
            )
            for e in j.entries
        ],
    )


def hold_view(h: Hold) -> cmd.HoldView:
    return cmd.HoldView.model_construct(
        id=h.id,
        reference=h.reference,
        debit_account_id=h.debit_account_id,
        credit_account_id=h.credit_account_id,
        amount=from_minor(h.amount, h.currency),
        captured=from_minor(h.captured_amount, h.currency),
        status=h.status,
        expires_at=h.expires_at,
        capture_journal_id=h.capture_journal_id,
    )
