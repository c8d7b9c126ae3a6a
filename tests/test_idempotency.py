"""Idempotency keys: a retry gets the first outcome, never a second execution."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.audit import AuditRecord, Outcome, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.commands import request_fingerprint
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import (
    DomainError,
    FinFactoryError,
    IdempotencyConflict,
    MoneyError,
    ReplayedRejection,
    StorageError,
    ValidationError,
    error_class_for,
    error_from_dict,
)
from finfactory.kernel.model import Model, MoneyAmount
from finfactory.kernel.money import Money, from_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import BalanceBoundExceeded, HoldNotFound
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds
from tests.conftest import make_storage


def _ctx(tenant: str = "tenant-a") -> RequestContext:
    return RequestContext(
        tenant_id=tenant, actor=Actor("ops", ActorKind.USER, frozenset({"admin"}))
    )


def php(minor: int) -> Money:
    return from_minor(minor, "PHP")


def transfer(reference: str, debit: str, credit: str, minor: int) -> c.PostJournal:
    return c.PostJournal(
        reference=reference,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=php(minor)),
            c.Leg(account_id=credit, direction="credit", amount=php(minor)),
        ],
    )


def _accounts(ledger: LedgerService) -> tuple[str, str]:
    ctx = _ctx()
    cash = ledger.open_account(ctx, c.OpenAccount(code="cash", currency="PHP", type="asset")).id
    wallet = ledger.open_account(
        ctx,
        c.OpenAccount(
            code="wallet",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    ).id
    return cash, wallet


def _audit(storage: Storage) -> list[AuditRecord]:
    with storage.read() as uow:
        return list(uow.kernel.audit_records("tenant-a"))


def _event_count(storage: Storage) -> int:
    with storage.read() as uow:
        return len(uow.kernel.read_events(0, 1_000_000))


def _chain_ok(storage: Storage) -> bool:
    with storage.read() as uow:
        return verify_chain(
            uow.kernel.audit_records("tenant-a"), uow.kernel.audit_head("tenant-a")
        ).ok


def test_replay_returns_the_first_result_without_running_again(
    ledger: LedgerService, storage: Storage, clock: ManualClock
) -> None:
    ctx = _ctx()
    cash, wallet = _accounts(ledger)
    request = transfer("pay-1", cash, wallet, 1_500)
    first = ledger.post_journal(ctx, request, idempotency_key="pay-1-key")
    statement = ledger.statement(ctx, wallet)

    clock.advance(timedelta(hours=1))
    # even a request that could no longer run replays: the account is frozen now
    ledger.change_account_status(ctx, c.ChangeAccountStatus(account_id=wallet, status="frozen"))
    events, audit = _event_count(storage), _audit(storage)
    again = ledger.post_journal(ctx, request, idempotency_key="pay-1-key")

    assert again == first
    assert again.posted_at == first.posted_at
    assert _event_count(storage) == events
    assert ledger.statement(ctx, wallet) == statement
    assert ledger.balance(ctx, wallet).posted == php(1_500)
    new = _audit(storage)[len(audit) :]
    assert [(r.outcome, r.action) for r in new] == [(Outcome.REPLAYED, "ledger.post_journal")]
    assert _chain_ok(storage)


def test_replays_of_other_commands_return_their_first_result(
    ledger: LedgerService, storage: Storage
) -> None:
    ctx = _ctx()
    cash, wallet = _accounts(ledger)
    ledger.post_journal(ctx, transfer("fund", cash, wallet, 5_000))
    opening = c.OpenAccount(code="savings", currency="PHP", type="liability")
    opened = ledger.open_account(ctx, opening, idempotency_key="open-savings")
    assert ledger.open_account(ctx, opening, idempotency_key="open-savings") == opened
    assert len(ledger.list_accounts(ctx)) == 3

    hold_request = c.CreateHold(
        reference="h-1", debit_account_id=wallet, credit_account_id=cash, amount=php(700)
    )
    hold = ledger.create_hold(ctx, hold_request, idempotency_key="hold-1")
    captured = ledger.capture_hold(
        ctx, c.CaptureHold(hold_id=hold.id, reference="cap-1"), idempotency_key="cap-1"
    )
    events = _event_count(storage)
    # the first results come back, though the hold has moved on since
    assert ledger.create_hold(ctx, hold_request, idempotency_key="hold-1") == hold
    assert (
        ledger.capture_hold(
            ctx, c.CaptureHold(hold_id=hold.id, reference="cap-1"), idempotency_key="cap-1"
        )
        == captured
    )
    assert _event_count(storage) == events
    assert ledger.balance(ctx, wallet).posted == php(4_300)
    assert ledger.balance(ctx, wallet).held == php(0)


def test_a_domain_rejection_replays_as_the_same_rejection(
    ledger: LedgerService, storage: Storage
) -> None:
    ctx = _ctx()
    cash, wallet = _accounts(ledger)
    overdraft = transfer("spend-1", wallet, cash, 2_000)

    with pytest.raises(BalanceBoundExceeded) as first:
        ledger.post_journal(ctx, overdraft, idempotency_key="spend-1")
    ledger.post_journal(ctx, transfer("fund", cash, wallet, 10_000))  # now it would succeed
    events = _event_count(storage)

    with pytest.raises(BalanceBoundExceeded) as replayed:
        ledger.post_journal(ctx, overdraft, idempotency_key="spend-1")

    assert replayed.value.code == first.value.code == "ledger.insufficient_funds"
    assert replayed.value.message == first.value.message
    assert replayed.value.details == first.value.details
    assert replayed.value.to_dict() == first.value.to_dict()
    assert ledger.balance(ctx, wallet).posted == php(10_000)
    assert _event_count(storage) == events
    outcomes = [(r.outcome, r.action) for r in _audit(storage) if r.action == "ledger.post_journal"]
    assert outcomes == [
        (Outcome.REJECTED, "ledger.post_journal"),
        (Outcome.SUCCEEDED, "ledger.post_journal"),
        (Outcome.REPLAYED, "ledger.post_journal"),
    ]
    # a rejection on a missing entity replays the same way
    void = c.VoidHold(hold_id="no-such-hold")
    with pytest.raises(HoldNotFound):
        ledger.void_hold(ctx, void, idempotency_key="void-x")
    with pytest.raises(HoldNotFound) as again:
        ledger.void_hold(ctx, void, idempotency_key="void-x")
    assert again.value.code == "ledger.hold_not_found"


def test_malformed_input_under_a_key_is_not_stored(ledger: LedgerService, storage: Storage) -> None:
    ctx = _ctx()
    _accounts(ledger)
    audit = _audit(storage)

    with pytest.raises(MoneyError) as bad:
        ledger.open_account(
            ctx, c.OpenAccount(code="fx", currency="ABC", type="asset"), idempotency_key="open-fx"
        )
    assert bad.value.field == "currency"
    assert _audit(storage) == audit  # nothing was written, not even an audit record

    # the key is still free: a valid request (a different one) under it runs
    opened = ledger.open_account(
        ctx, c.OpenAccount(code="fx", currency="USD", type="asset"), idempotency_key="open-fx"
    )
    assert opened.currency == "USD"
    assert (
        ledger.open_account(
            ctx, c.OpenAccount(code="fx", currency="USD", type="asset"), idempotency_key="open-fx"
        )
        == opened
    )


@pytest.mark.parametrize("key", ["", "x" * 201, "line\nbreak", "tab\there"])
def test_malformed_keys_are_refused_before_anything_runs(
    ledger: LedgerService, storage: Storage, key: str
) -> None:
    ctx = _ctx()
    cash, wallet = _accounts(ledger)
    audit, events = _audit(storage), _event_count(storage)
    with pytest.raises(ValidationError) as err:
        ledger.post_journal(ctx, transfer("p", cash, wallet, 1), idempotency_key=key)
    assert err.value.field == "idempotency_key"
    assert _audit(storage) == audit
    assert _event_count(storage) == events
    assert ledger.balance(ctx, wallet).posted == php(0)


def test_a_key_accepts_200_printable_characters(ledger: LedgerService) -> None:
    cash, wallet = _accounts(ledger)
    key = "k" * 199 + "é"
    first = ledger.post_journal(_ctx(), transfer("p", cash, wallet, 1), idempotency_key=key)
    assert ledger.post_journal(_ctx(), transfer("p", cash, wallet, 1), idempotency_key=key) == first


def test_same_key_with_a_different_request_conflicts(
    ledger: LedgerService, storage: Storage
) -> None:
    ctx = _ctx()
    cash, wallet = _accounts(ledger)
    first = ledger.post_journal(ctx, transfer("pay", cash, wallet, 100), idempotency_key="k")
    events = _event_count(storage)

    with pytest.raises(IdempotencyConflict) as amount_changed:
        ledger.post_journal(ctx, transfer("pay", cash, wallet, 101), idempotency_key="k")
    assert amount_changed.value.code == "idempotency_conflict"
    with pytest.raises(IdempotencyConflict):
        ledger.post_journal(ctx, transfer("pay-2", cash, wallet, 100), idempotency_key="k")
    with pytest.raises(IdempotencyConflict):  # another command under the same key
        ledger.open_account(
            ctx, c.OpenAccount(code="k", currency="PHP", type="asset"), idempotency_key="k"
        )

    assert _event_count(storage) == events
    assert ledger.balance(ctx, wallet).posted == php(100)
    assert [r.outcome for r in _audit(storage)][-3:] == [Outcome.CONFLICT] * 3
    # the original request still replays
    assert (
        ledger.post_journal(ctx, transfer("pay", cash, wallet, 100), idempotency_key="k") == first
    )
    assert _chain_ok(storage)


def test_a_stored_rejection_also_conflicts_with_a_different_request(
    ledger: LedgerService,
) -> None:
    ctx = _ctx()
    cash, wallet = _accounts(ledger)
    with pytest.raises(BalanceBoundExceeded):
        ledger.post_journal(ctx, transfer("x", wallet, cash, 5), idempotency_key="r")
    with pytest.raises(IdempotencyConflict):
        ledger.post_journal(ctx, transfer("x", cash, wallet, 5), idempotency_key="r")
    assert ledger.balance(ctx, wallet).posted == php(0)


# -- retention ---------------------------------------------------------------------------
def test_purged_keys_run_afresh_and_the_reference_still_refuses_a_double_post(
    storage: Storage,
) -> None:
    from finfactory.kernel import purge_idempotency_keys
    from finfactory.kernel.authz import default_policy
    from finfactory.primitives.ledger.errors import DuplicateReference
    from finfactory.testing import SequentialIds

    clock = ManualClock()
    ledger = LedgerService(storage, default_policy(), clock, SequentialIds())
    debit, credit = _accounts(ledger)
    first = ledger.post_journal(_ctx(), transfer("pay-1", debit, credit, 100), idempotency_key="k1")
    clock.advance(timedelta(days=2))
    recent = ledger.post_journal(
        _ctx(), transfer("pay-2", debit, credit, 100), idempotency_key="k2"
    )
    # Kept for a day: k1 goes (in batches of one), k2 stays.
    assert purge_idempotency_keys(storage, clock, keep_for=timedelta(days=1), batch_size=1) == 1
    assert purge_idempotency_keys(storage, clock, keep_for=timedelta(days=1)) == 0
    replay = ledger.post_journal(
        _ctx(), transfer("pay-2", debit, credit, 100), idempotency_key="k2"
    )
    assert replay.id == recent.id
    # k1 is forgotten, so the retry runs again; the journal's reference keeps it from posting
    # the money twice, and that refusal is what the key now stores.
    with pytest.raises(DuplicateReference):
        ledger.post_journal(_ctx(), transfer("pay-1", debit, credit, 100), idempotency_key="k1")
    assert ledger.get_journal(_ctx(), first.id).reference == "pay-1"


@pytest.mark.parametrize(
    ("keep_for", "batch_size", "field"),
    [
        (timedelta(0), 10, "keep_for"),
        (timedelta(seconds=-1), 10, "keep_for"),
        (timedelta(days=1), 0, "batch_size"),
        (timedelta(days=1), True, "batch_size"),
    ],
)
def test_purge_refuses_a_bad_window_or_batch(
    storage: Storage, keep_for: timedelta, batch_size: int, field: str
) -> None:
    from finfactory.kernel import purge_idempotency_keys

    with pytest.raises(ValidationError) as err:
        purge_idempotency_keys(storage, ManualClock(), keep_for=keep_for, batch_size=batch_size)
    assert err.value.field == field


def test_a_key_purged_while_its_retry_reads_it_runs_the_retry_afresh(
    pg_clean: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry's claim sees the stored row, then the purge deletes it before the retry
    reads it: the retry runs again from the start (and the reference refuses the double
    post) instead of failing on the missing row."""
    import threading

    from finfactory.adapters.sqlalchemy import kernel_store
    from finfactory.adapters.sqlalchemy.driver import DriverSession
    from finfactory.adapters.sqlalchemy.storage import SqlStorage
    from finfactory.kernel import purge_idempotency_keys
    from finfactory.kernel.authz import default_policy
    from finfactory.primitives.ledger.errors import DuplicateReference
    from finfactory.testing import SequentialIds

    storage = SqlStorage(pg_clean)
    clock = ManualClock()
    ledger = LedgerService(storage, default_policy(), clock, SequentialIds())
    debit, credit = _accounts(ledger)
    request = transfer("pay-1", debit, credit, 100)
    ledger.post_journal(_ctx(), request, idempotency_key="k1")
    clock.advance(timedelta(days=2))

    real_query = DriverSession.query
    purged: list[int] = []

    def query_after_a_purge(self: DriverSession, sql: str, params: dict[str, Any]) -> Any:
        if sql == kernel_store._STORED and not purged:
            worker = threading.Thread(
                target=lambda: purged.append(
                    purge_idempotency_keys(storage, clock, keep_for=timedelta(days=1))
                )
            )
            worker.start()
            worker.join()
        return real_query(self, sql, params)

    monkeypatch.setattr(DriverSession, "query", query_after_a_purge)
    with pytest.raises(DuplicateReference):
        ledger.post_journal(_ctx(), request, idempotency_key="k1")
    assert purged == [1]


def test_a_rejection_stored_under_a_code_nobody_declares_replays_with_that_code() -> None:
    """A retired or renamed error, or one from a module the replaying process has not
    imported: the replay keeps the stored code (it came back as a bare FinFactoryError with
    the code "finfactory_error", which no caller matches on)."""
    stored = {"code": "acme.retired_rule", "message": "no longer allowed", "details": {"n": 1}}
    replayed = error_from_dict(stored)
    assert isinstance(replayed, ReplayedRejection)
    assert isinstance(replayed, DomainError)
    assert replayed.code == "acme.retired_rule"
    assert replayed.to_dict() == stored
    assert ReplayedRejection.code == DomainError.code == "domain_rejected"  # class untouched
    assert error_class_for("acme.retired_rule") is None
    assert error_class_for("finfactory_error") is FinFactoryError
    known = error_from_dict({"code": "ledger.insufficient_funds", "message": "m", "details": {}})
    assert type(known) is BalanceBoundExceeded


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_stored_result_this_release_cannot_read_is_a_storage_error(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A result stored by a release whose result model differed (here: made unreadable in
    SQL) is the server's problem, not the caller's input: StorageError, not ValidationError."""
    storage = make_storage(backend, request)
    assert isinstance(storage, SqlStorage)
    ledger = LedgerService(storage, default_policy(), ManualClock(), SequentialIds())
    ctx = _ctx()
    command = c.OpenAccount(code="cash", currency="PHP", type="asset")
    ledger.open_account(ctx, command, idempotency_key="open-cash")
    with storage.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ff_idempotency SET response = '{\"id\": 7}' WHERE key = 'open-cash'")
        )
    with pytest.raises(StorageError) as failed:
        ledger.open_account(ctx, command, idempotency_key="open-cash")
    assert not isinstance(failed.value, ValidationError)
    assert failed.value.details["command"] == "ledger.open_account"


class _PayoutV1(Model):
    reference: str
    amount: MoneyAmount


class _PayoutV2(Model):  # the next release: an optional field added
    reference: str
    amount: MoneyAmount
    memo: str | None = None
    tags: list[str] = []


def test_a_retry_across_a_release_that_added_an_optional_field_is_the_same_request() -> None:
    first = _PayoutV1(reference="p-1", amount=php(100))
    assert request_fingerprint("payouts.send", first) == request_fingerprint(
        "payouts.send", _PayoutV2(reference="p-1", amount=php(100))
    )
    spelled_out = _PayoutV2(reference="p-1", amount=php(100), memo=None, tags=[])
    assert request_fingerprint("payouts.send", first) == request_fingerprint(
        "payouts.send", spelled_out
    )
    different = _PayoutV2(reference="p-1", amount=php(100), memo="rent")
    assert request_fingerprint("payouts.send", first) != request_fingerprint(
        "payouts.send", different
    )
    assert request_fingerprint("payouts.send", first) != request_fingerprint(
        "payouts.cancel", first
    )


class _OutOfStock(DomainError):
    code = "shop.out_of_stock"


@pytest.mark.parametrize("detail", [Decimal("1.5"), float("nan"), object(), {"when": timedelta(1)}])
def test_a_rejection_whose_details_json_cannot_hold_fails_where_it_is_raised(
    detail: object,
) -> None:
    """It failed only under an idempotency key, when the rejection was being stored."""
    with pytest.raises(TypeError, match="JSON-safe"):
        _OutOfStock("sold out", left=detail)
    assert _OutOfStock("sold out", left="1.5", sku="A-1").to_dict()["details"] == {
        "left": "1.5",
        "sku": "A-1",
    }
