"""Entities -> API results."""

from __future__ import annotations

from typing import Any

from finfactory.kernel.money import Money, from_minor
from finfactory.primitives.wallet import commands as cmd
from finfactory.primitives.wallet.model import LIMIT_KINDS, LimitSet, Movement, Usage, Wallet


def wallet_view(wallet: Wallet, posted: Money, available: Money) -> cmd.WalletView:
    return cmd.WalletView.model_construct(
        id=wallet.id,
        customer_id=wallet.customer_id,
        currency=wallet.currency,
        kind=wallet.kind,
        status=wallet.status,
        ledger_account_id=wallet.ledger_account_id,
        metadata=dict(wallet.metadata),
        created_at=wallet.created_at,
        updated_at=wallet.updated_at,
        posted=posted,
        available=available,
    )


def movement_view(m: Movement) -> cmd.MovementView:
    return cmd.MovementView.model_construct(
        id=m.id,
        journal_id=m.journal_id,
        reference=m.reference,
        kind=m.kind,
        amount=from_minor(m.amount, m.currency),
        from_wallet_id=m.from_wallet_id,
        to_wallet_id=m.to_wallet_id,
        counterparty_account_id=m.counterparty_account_id,
        description=m.description,
        posted_at=m.posted_at,
    )


def limits_model(limits: LimitSet, currency: str) -> cmd.Limits:
    values: dict[str, Any] = {}
    for kind in LIMIT_KINDS:
        minor = limits.get(kind)
        values[kind.value] = None if minor is None else from_minor(minor, currency)
    return cmd.Limits.model_construct(None, **values)


def usage_view(usage: Usage) -> cmd.UsageView:
    cur = usage.currency
    return cmd.UsageView.model_construct(
        day=usage.day,
        daily_in=from_minor(usage.day_in, cur),
        daily_out=from_minor(usage.day_out, cur),
        month=usage.month,
        monthly_in=from_minor(usage.month_in, cur),
        monthly_out=from_minor(usage.month_out, cur),
    )
