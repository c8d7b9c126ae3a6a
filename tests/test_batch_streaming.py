"""A large batch is written in chunks, yet stays all-or-nothing."""

from __future__ import annotations

import pytest
from moneyed import Money

from finfactory.events import OutboxReader
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import DomainError
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import BATCH_CHUNK, LedgerService


def _journal(n: int, debit: str, credit: str, amount: str = "1.00") -> c.PostJournal:
    return c.PostJournal(
        reference=f"b-{n}",
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=Money(amount, "PHP")),
            c.Leg(account_id=credit, direction="credit", amount=Money(amount, "PHP")),
        ],
    )


def test_rejection_after_written_chunks_leaves_nothing(
    ledger: LedgerService, storage: Storage, ctx: RequestContext
) -> None:
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
    size = 2 * BATCH_CHUNK + 5
    journals = [_journal(n, cash.id, wallet.id) for n in range(size)]
    # The last journal overdraws the wallet: found only after two chunks were written.
    journals[-1] = _journal(size - 1, wallet.id, cash.id, "1000.00")
    events_before = len(list(OutboxReader(storage).drain()))
    with pytest.raises(DomainError) as rejected:
        ledger.post_journals(ctx, c.PostJournals(journals=journals), idempotency_key="big")
    assert rejected.value.code == "ledger.insufficient_funds"
    assert ledger.balance(ctx, wallet.id).posted == Money("0.00", "PHP")
    assert ledger.statement(ctx, cash.id).lines == []
    assert len(list(OutboxReader(storage).drain())) == events_before
    # The rejection itself is remembered under the key and replays.
    with pytest.raises(DomainError) as replayed:
        ledger.post_journals(ctx, c.PostJournals(journals=journals), idempotency_key="big")
    assert replayed.value.code == "ledger.insufficient_funds"

    ok = [_journal(1000 + n, cash.id, wallet.id) for n in range(size)]
    result = ledger.post_journals(ctx, c.PostJournals(journals=ok))
    assert len(result.journals) == size
    assert ledger.balance(ctx, wallet.id).posted == Money(f"{size}.00", "PHP")
    events = list(OutboxReader(storage).drain())
    # A journal.posted per journal, then one balance.updated per account with its balance
    # after the whole batch, caused by the batch's last journal.
    new = events[events_before:]
    assert [e.event_type for e in new] == ["journal.posted"] * size + ["balance.updated"] * 2
    balances = {e.payload["account_id"]: e.payload for e in new[size:]}
    assert balances[wallet.id]["posted"] == {"amount": f"{size}.00", "currency": "PHP"}
    assert {b["cause_id"] for b in balances.values()} == {result.journals[-1].id}
    positions = [e.position or 0 for e in events]
    assert positions == sorted(positions)
