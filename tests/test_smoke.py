from __future__ import annotations

from moneyed import Money

from finfactory.kernel.context import RequestContext
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService


def test_post_and_read_back(ledger: LedgerService, ctx: RequestContext) -> None:
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset"))
    wallet = ledger.open_account(
        ctx,
        c.OpenAccount(
            code="w",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    )
    ledger.post_journal(
        ctx,
        c.PostJournal(
            reference="r1",
            legs=[
                c.Leg(account_id=cash.id, direction="debit", amount=Money("10.00", "PHP")),
                c.Leg(account_id=wallet.id, direction="credit", amount=Money("10.00", "PHP")),
            ],
        ),
    )
    assert ledger.balance(ctx, wallet.id).available == Money("10.00", "PHP")
    assert ledger.balance(ctx, cash.id).posted == Money("10.00", "PHP")
