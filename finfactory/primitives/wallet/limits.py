"""Pure limit arithmetic: the calendar the counters use, limits in minor units, and the
checks a movement must pass for each customer it touches."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import attrs

from finfactory.kernel.money import minor_to_json, to_minor
from finfactory.primitives.wallet.commands import Limits
from finfactory.primitives.wallet.errors import LimitExceeded
from finfactory.primitives.wallet.model import LIMIT_KINDS, LimitKind, LimitSet, Usage


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_keys(now: datetime, timezone: str) -> tuple[str, str]:
    """The day (``YYYY-MM-DD``) and month (``YYYY-MM``) ``now`` falls in, in ``timezone``."""
    local = now.astimezone(_zone(timezone))
    return local.date().isoformat(), f"{local.year:04d}-{local.month:02d}"


def limit_set(limits: Limits | None) -> LimitSet:
    """API limits -> minor units (the currency was checked when ``limits`` was built)."""
    if limits is None:
        return LimitSet()
    values: dict[str, int | None] = {}
    for kind in LIMIT_KINDS:
        money = getattr(limits, kind.value)
        values[kind.value] = None if money is None else to_minor(money, field=kind.value)[0]
    return LimitSet(**values)


def limits_json(limits: LimitSet, currency: str) -> dict[str, dict[str, str] | None]:
    """Money JSON per limit kind (None where unset): what events and views carry."""
    out: dict[str, dict[str, str] | None] = {}
    for kind in LIMIT_KINDS:
        minor = limits.get(kind)
        out[kind.value] = None if minor is None else minor_to_json(minor, currency)
    return out


@attrs.frozen
class Party:
    """One customer's side of a movement.

    ``incoming``/``outgoing`` are what the movement adds to the customer's counters (both
    zero for a transfer between two wallets of the same customer); ``balance`` is the
    customer's posted balance over all their wallets in the currency.
    """

    side: str
    currency: str
    limits: LimitSet
    usage: Usage
    balance: int
    incoming: int
    outgoing: int


def _refuse(party: Party, kind: LimitKind, limit: int, used: int, attempted: int) -> None:
    cur = party.currency
    raise LimitExceeded(
        f"the {party.side}'s {kind.value} limit of {minor_to_json(limit, cur)['amount']} {cur}"
        f" would be exceeded ({minor_to_json(used, cur)['amount']} used,"
        f" {minor_to_json(attempted, cur)['amount']} attempted)",
        limit=kind.value,
        side=party.side,
        limit_amount=minor_to_json(limit, cur),
        used=minor_to_json(used, cur),
        attempted=minor_to_json(attempted, cur),
    )


def check_party(party: Party, amount: int) -> None:
    """Raise LimitExceeded for the first limit ``amount`` would break for ``party``."""
    limits, usage = party.limits, party.usage
    per_tx = limits.per_transaction
    if per_tx is not None and amount > per_tx:
        _refuse(party, LimitKind.PER_TRANSACTION, per_tx, 0, amount)
    checks: list[tuple[LimitKind, int, int]] = []
    if party.outgoing:
        checks += [
            (LimitKind.DAILY_OUT, usage.day_out, party.outgoing),
            (LimitKind.MONTHLY_OUT, usage.month_out, party.outgoing),
        ]
    if party.incoming:
        checks += [
            (LimitKind.DAILY_IN, usage.day_in, party.incoming),
            (LimitKind.MONTHLY_IN, usage.month_in, party.incoming),
            (LimitKind.BALANCE_CAP, party.balance, party.incoming),
        ]
    for kind, used, attempted in checks:
        limit = limits.get(kind)
        if limit is not None and used + attempted > limit:
            _refuse(party, kind, limit, used, attempted)


def withheld(refusal: LimitExceeded, field: str) -> LimitExceeded:
    """``refusal`` as the payer may see it when the receiver is another customer: which of
    the receiver's limits, and how much of it they used (or their balance, for the cap), is
    the receiver's own business; a payer could otherwise read it by probing."""
    return LimitExceeded(
        "the receiving wallet cannot accept this amount",
        side=refusal.details["side"],
        attempted=refusal.details["attempted"],
        field=field,
    )
