"""Model-based test of the ledger.

A small pure-Python model predicts the outcome of every command (success, or the set of
acceptable rejection codes) and the balances that follow. Hypothesis drives random command
sequences against the real ledger, on the in-memory storage and on a fresh SQLite file per
example, and checks after every step that:

* money is conserved per currency (debits posted == credits posted over all accounts),
* no account is past its balance bound,
* held amounts equal the pending holds of the model, and every balance equals the model's,
* a rejected command, an idempotent replay and an idempotency conflict change nothing but the
  audit log (balances, holds, outbox events and every other table are as before).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pydantic import BaseModel

from finfactory.adapters.sqlalchemy.migrate import all_metadata, migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import (
    DomainError,
    FinFactoryError,
    IdempotencyConflict,
    ValidationError,
)
from finfactory.kernel.money import Money, from_minor, to_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.model import (
    Account,
    AccountStatus,
    AccountType,
    BalanceBound,
    Direction,
    Hold,
    HoldStatus,
)
from finfactory.primitives.ledger.service import LedgerService
from finfactory.primitives.ledger.stores import default_store_factory
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds

CURRENCIES = ("PHP", "USD", "JPY")
TENANT = "tenant-model"
MAX_ACCOUNTS = 10
# Tables a rejected command, a replay or a conflict may still write to.
AUDIT_TABLES = frozenset({"ff_audit_log", "ff_audit_heads", "ff_idempotency"})

# Rejection codes (stable; products match on them).
UNBALANCED = "ledger.unbalanced_journal"
NOT_FOUND = "ledger.account_not_found"
NOT_ACTIVE = "ledger.account_not_active"
MISMATCH = "ledger.currency_mismatch"
NO_FUNDS = "ledger.insufficient_funds"
DUPLICATE_REF = "ledger.duplicate_reference"
DUPLICATE_CODE = "ledger.duplicate_account_code"
NOT_EMPTY = "ledger.account_not_empty"
CLOSED = "ledger.account_closed"
EXPIRY_IN_PAST = "ledger.hold_expiry_in_past"
HOLD_NOT_FOUND = "ledger.hold_not_found"
HOLD_NOT_PENDING = "ledger.hold_not_pending"
CAPTURE_EXCEEDS = "ledger.capture_exceeds_hold"
JOURNAL_NOT_FOUND = "ledger.journal_not_found"
ALREADY_REVERSED = "ledger.already_reversed"


# -- the model -------------------------------------------------------------------------------


@dataclass
class MAccount:
    id: str
    code: str
    currency: str
    type: AccountType
    bound: BalanceBound
    status: AccountStatus = AccountStatus.ACTIVE
    dp: int = 0  # debits posted
    cp: int = 0  # credits posted
    dh: int = 0  # debits held
    ch: int = 0  # credits held

    @property
    def posted(self) -> int:
        return self.dp - self.cp if self.type.debit_normal else self.cp - self.dp

    @property
    def held(self) -> int:
        return self.ch if self.type.debit_normal else self.dh

    def within_bound(self) -> bool:
        return bound_ok(self.bound, self.dp, self.cp, self.dh, self.ch)


def bound_ok(bound: BalanceBound, dp: int, cp: int, dh: int, ch: int) -> bool:
    if bound is BalanceBound.DEBITS_NOT_OVER_CREDITS:
        return dp + dh <= cp
    if bound is BalanceBound.CREDITS_NOT_OVER_DEBITS:
        return cp + ch <= dp
    return True


@dataclass
class MHold:
    id: str
    debit: str
    credit: str
    amount: int
    currency: str
    expires_at: datetime | None
    status: HoldStatus = HoldStatus.PENDING
    captured: int = 0


# account id, direction, minor units, currency
LegT = tuple[str, Direction, int, str]


@dataclass
class Model:
    accounts: dict[str, MAccount] = field(default_factory=dict)
    holds: dict[str, MHold] = field(default_factory=dict)
    journals: dict[str, list[LegT]] = field(default_factory=dict)
    journal_refs: set[str] = field(default_factory=set)
    hold_refs: set[str] = field(default_factory=set)
    reversed: set[str] = field(default_factory=set)

    def copy_accounts(self) -> dict[str, MAccount]:
        return {aid: dataclasses.replace(acc) for aid, acc in self.accounts.items()}


def post_problems(accounts: dict[str, MAccount], legs: Sequence[LegT]) -> set[str]:
    """Apply ``legs`` to ``accounts`` (in place); the rejection codes that apply, if any.

    When a journal has several problems, the ledger may report any one of them.
    """
    problems: set[str] = set()
    totals: dict[str, int] = defaultdict(int)
    for _aid, direction, amount, cur in legs:
        totals[cur] += amount if direction is Direction.DEBIT else -amount
    if any(totals.values()):
        problems.add(UNBALANCED)
    for aid, _direction, _amount, cur in legs:
        acc = accounts.get(aid)
        if acc is None:
            problems.add(NOT_FOUND)
            continue
        if acc.status is not AccountStatus.ACTIVE:
            problems.add(NOT_ACTIVE)
        if acc.currency != cur:
            problems.add(MISMATCH)
    if problems:
        return problems
    for aid, direction, amount, _cur in legs:
        acc = accounts[aid]
        if direction is Direction.DEBIT:
            acc.dp += amount
        else:
            acc.cp += amount
    if not all(accounts[aid].within_bound() for aid, *_ in legs):
        problems.add(NO_FUNDS)
    return problems


def opposite(legs: Iterable[LegT]) -> list[LegT]:
    return [(aid, d.opposite, amount, cur) for aid, d, amount, cur in legs]


# -- observations of the real ledger -----------------------------------------------------------


@attrs.frozen
class Snapshot:
    accounts: tuple[Account, ...]
    holds: tuple[Hold | None, ...]
    events: int
    rows: tuple[tuple[str, int], ...]  # every non-audit table
    views: tuple[c.AccountView, ...]


@dataclass(frozen=True)
class Failure:
    error: type[FinFactoryError]
    code: str
    message: str


@dataclass(frozen=True)
class Recorded:
    """A command sent with an idempotency key, and what it returned the first time."""

    label: str
    invoke: Callable[[str | None], BaseModel]
    key: str
    outcome: BaseModel | Failure


def attempt(
    invoke: Callable[[str | None], BaseModel], key: str | None
) -> BaseModel | FinFactoryError:
    """The result of a command, or the SDK error it raised."""
    try:
        return invoke(key)
    except FinFactoryError as err:
        return err


def sql_row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: int(
                conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
            for md in all_metadata()
            for table in md.sorted_tables
        }


class LedgerMachine(RuleBasedStateMachine):
    """Shared rules; subclasses choose the storage."""

    def __init__(self) -> None:
        super().__init__()
        self.storage = self.make_storage()
        self.clock = ManualClock()
        self.ledger = LedgerService(self.storage, default_policy(), self.clock, SequentialIds())
        self.ctx = RequestContext(
            tenant_id=TENANT, actor=Actor("model-runner", ActorKind.SERVICE, frozenset({"admin"}))
        )
        self.model = Model()
        self.recorded: list[Recorded] = []
        self.counter = 0
        self._snapshot: Snapshot | None = None

    # -- storage hooks --------------------------------------------------------------------
    def make_storage(self) -> Storage:
        raise NotImplementedError

    def row_counts(self) -> dict[str, int]:
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def snapshot(self) -> Snapshot:
        """The observable state; cached until the next command runs."""
        if self._snapshot is None:
            with self.storage.read() as tx:
                store = default_store_factory(tx)
                accounts = tuple(store.list_accounts(TENANT, "", 1000))
                holds = tuple(store.get_hold(TENANT, hid) for hid in sorted(self.model.holds))
                events = len(tx.kernel.read_events(0, 10**9))
            rows = tuple(
                sorted(
                    (name, n)
                    for name, n in self.row_counts().items()
                    if n and name not in AUDIT_TABLES
                )
            )
            views = tuple(self.ledger.list_accounts(self.ctx, limit=1000))
            self._snapshot = Snapshot(accounts, holds, events, rows, views)
        return self._snapshot

    def assert_unchanged(self, before: Snapshot, what: str) -> None:
        self._snapshot = None
        after = self.snapshot()
        assert after.accounts == before.accounts, f"{what} changed account state"
        assert after.holds == before.holds, f"{what} changed a hold"
        assert after.events == before.events, f"{what} wrote outbox events"
        assert after.rows == before.rows, f"{what} wrote rows: {before.rows} -> {after.rows}"

    def key(self, data: st.DataObject) -> str | None:
        return self.fresh("key") if data.draw(st.integers(0, 4), label="keyed") else None

    def execute(
        self,
        label: str,
        invoke: Callable[[str | None], BaseModel],
        key: str | None,
        expected: set[str],
    ) -> BaseModel | None:
        """Run a command the model has judged; ``expected`` holds acceptable rejection codes."""
        before = self.snapshot()
        outcome = attempt(invoke, key)
        self._snapshot = None
        if isinstance(outcome, BaseModel):
            assert not expected, f"{label}: succeeded, but the model expected one of {expected}"
            if key is not None:
                self.recorded.append(Recorded(label, invoke, key, outcome))
            return outcome
        assert isinstance(outcome, DomainError), f"{label}: raised {outcome!r}"
        assert expected, f"{label}: the model expected success, the ledger raised {outcome!r}"
        assert outcome.code in expected, f"{label}: raised {outcome.code}, expected {expected}"
        self.assert_unchanged(before, f"rejected {label}")
        if key is not None:
            failure = Failure(type(outcome), outcome.code, outcome.message)
            self.recorded.append(Recorded(label, invoke, key, failure))
        return None

    def pick_currency(self, data: st.DataObject) -> str:
        """A currency some account holds (the initial float accounts hold all three)."""
        held = sorted({a.currency for a in self.model.accounts.values()}) or list(CURRENCIES)
        return data.draw(st.sampled_from(held), label="currency")

    def pick_account(self, data: st.DataObject, currency: str) -> str:
        """Usually an account in ``currency``; sometimes any account, or an unknown id."""
        same = sorted(a.id for a in self.model.accounts.values() if a.currency == currency)
        roll = data.draw(st.integers(0, 19), label="account choice")
        if roll == 19:
            return "no-such-account"
        if same and roll < 17:
            return data.draw(st.sampled_from(same), label="account")
        return data.draw(st.sampled_from(sorted(self.model.accounts)), label="any account")

    def draw_legs(self, data: st.DataObject) -> list[LegT]:
        cur = self.pick_currency(data)
        amounts = st.integers(1, 5000)
        shape = data.draw(st.sampled_from(["pair", "split", "two pairs"]), label="shape")
        if shape == "pair":
            a = data.draw(amounts, label="amount")
            legs = [
                (self.pick_account(data, cur), Direction.DEBIT, a, cur),
                (self.pick_account(data, cur), Direction.CREDIT, a, cur),
            ]
        elif shape == "split":
            a, b = data.draw(amounts, label="a"), data.draw(amounts, label="b")
            one = data.draw(st.sampled_from(Direction), label="single side")
            legs = [
                (self.pick_account(data, cur), one, a + b, cur),
                (self.pick_account(data, cur), one.opposite, a, cur),
                (self.pick_account(data, cur), one.opposite, b, cur),
            ]
        else:
            cur2 = self.pick_currency(data)
            a, b = data.draw(amounts, label="a"), data.draw(amounts, label="b")
            legs = [
                (self.pick_account(data, cur), Direction.DEBIT, a, cur),
                (self.pick_account(data, cur), Direction.CREDIT, a, cur),
                (self.pick_account(data, cur2), Direction.CREDIT, b, cur2),
                (self.pick_account(data, cur2), Direction.DEBIT, b, cur2),
            ]
        if data.draw(st.integers(0, 9), label="unbalance") == 9:
            i = data.draw(st.integers(0, len(legs) - 1), label="leg to skew")
            aid, direction, amount, leg_cur = legs[i]
            legs[i] = (aid, direction, amount + 1, leg_cur)
        return legs

    def journal_reference(self, data: st.DataObject) -> str:
        if self.model.journal_refs and data.draw(st.integers(0, 14), label="reuse ref") == 14:
            return data.draw(st.sampled_from(sorted(self.model.journal_refs)), label="used ref")
        return self.fresh("jr")

    @staticmethod
    def to_command_legs(legs: Sequence[LegT]) -> list[c.Leg]:
        return [
            c.Leg(account_id=aid, direction=d, amount=from_minor(amount, cur))
            for aid, d, amount, cur in legs
        ]

    @staticmethod
    def view_legs(view: c.JournalView) -> list[LegT]:
        out = []
        for leg in view.legs:
            minor, cur = to_minor(leg.amount)
            out.append((leg.account_id, leg.direction, minor, cur))
        return out

    def record_journal(self, view: c.JournalView, legs: list[LegT]) -> None:
        assert self.view_legs(view) == legs
        self.model.journals[view.id] = legs
        self.model.journal_refs.add(view.reference)

    # -- accounts -------------------------------------------------------------------------
    @initialize()
    def open_float_accounts(self) -> None:
        """One unbounded asset account per currency, so every currency has a counterparty."""
        for cur in CURRENCIES:
            command = c.OpenAccount(code=f"float-{cur}", currency=cur, type="asset")
            view = self.ledger.open_account(self.ctx, command)
            self.model.accounts[view.id] = MAccount(
                view.id, command.code, cur, AccountType.ASSET, BalanceBound.NONE
            )
        self._snapshot = None

    @precondition(lambda self: len(self.model.accounts) < MAX_ACCOUNTS)
    @rule(
        data=st.data(),
        currency=st.sampled_from(CURRENCIES),
        kind=st.sampled_from(AccountType),
        bound=st.sampled_from(BalanceBound),
    )
    def open_account(
        self, data: st.DataObject, currency: str, kind: AccountType, bound: BalanceBound
    ) -> None:
        codes = sorted(a.code for a in self.model.accounts.values())
        if codes and data.draw(st.integers(0, 9), label="reuse code") == 9:
            code = data.draw(st.sampled_from(codes), label="used code")
        else:
            code = self.fresh("acct")
        command = c.OpenAccount(code=code, currency=currency, type=kind, balance_bound=bound)
        expected = {DUPLICATE_CODE} if code in codes else set()

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.open_account(self.ctx, command, idempotency_key=key)

        view = self.execute("open_account", invoke, self.key(data), expected)
        if view is None:
            return
        assert isinstance(view, c.AccountView)
        assert (view.code, view.currency, view.type, view.balance_bound, view.status) == (
            code,
            currency,
            kind,
            bound,
            AccountStatus.ACTIVE,
        )
        assert view.posted == view.held == view.available == from_minor(0, currency)
        self.model.accounts[view.id] = MAccount(view.id, code, currency, kind, bound)

    @precondition(lambda self: bool(self.model.accounts))
    @rule(data=st.data(), roll=st.integers(0, 19))
    def change_status(self, data: st.DataObject, roll: int) -> None:
        aid = data.draw(st.sampled_from(sorted(self.model.accounts)), label="account")
        acc = self.model.accounts[aid]
        # Frozen accounts are mostly thawed again; closing is rare (and mostly refused).
        if acc.status is AccountStatus.FROZEN:
            status = AccountStatus.FROZEN if roll >= 16 else AccountStatus.ACTIVE
        else:
            status = [AccountStatus.FROZEN, AccountStatus.ACTIVE, AccountStatus.CLOSED][
                0 if roll < 14 else 1 if roll < 17 else 2
            ]
        expected: set[str] = set()
        if acc.status is AccountStatus.CLOSED and status is not AccountStatus.CLOSED:
            expected.add(CLOSED)
        if status is AccountStatus.CLOSED and (acc.dp != acc.cp or acc.dh or acc.ch):
            expected.add(NOT_EMPTY)
        command = c.ChangeAccountStatus(account_id=aid, status=status, reason="model")

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.change_account_status(self.ctx, command, idempotency_key=key)

        view = self.execute(f"change_status to {status.value}", invoke, self.key(data), expected)
        if view is not None:
            assert isinstance(view, c.AccountView)
            assert view.status is status
            acc.status = status

    # -- journals -------------------------------------------------------------------------
    @precondition(lambda self: bool(self.model.accounts))
    @rule(data=st.data())
    def post_journal(self, data: st.DataObject) -> None:
        legs = self.draw_legs(data)
        ref = self.journal_reference(data)
        trial = self.model.copy_accounts()
        expected = {DUPLICATE_REF} if ref in self.model.journal_refs else set()
        expected |= post_problems(trial, legs)
        command = c.PostJournal(reference=ref, legs=self.to_command_legs(legs))

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.post_journal(self.ctx, command, idempotency_key=key)

        view = self.execute("post_journal", invoke, self.key(data), expected)
        if view is not None:
            assert isinstance(view, c.JournalView)
            assert view.reference == ref
            assert view.reverses_journal_id is None
            self.record_journal(view, legs)
            self.model.accounts = trial

    @precondition(lambda self: bool(self.model.accounts))
    @rule(data=st.data(), count=st.integers(1, 3))
    def post_batch(self, data: st.DataObject, count: int) -> None:
        batch = [(self.journal_reference(data), self.draw_legs(data)) for _ in range(count)]
        if count > 1 and data.draw(st.integers(0, 9), label="repeat ref in batch") == 0:
            batch[-1] = (batch[0][0], batch[-1][1])
        refs = [ref for ref, _legs in batch]
        expected: set[str] = set()
        if len(set(refs)) != len(refs) or self.model.journal_refs & set(refs):
            expected.add(DUPLICATE_REF)
        trial = self.model.copy_accounts()
        for _ref, legs in batch:
            problems = post_problems(trial, legs)
            if problems:  # the batch stops at its first bad journal
                expected |= problems
                break
        command = c.PostJournals(
            journals=[
                c.PostJournal(reference=ref, legs=self.to_command_legs(legs)) for ref, legs in batch
            ]
        )

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.post_journals(self.ctx, command, idempotency_key=key)

        result = self.execute(f"post_journals x{count}", invoke, self.key(data), expected)
        if result is not None:
            assert isinstance(result, c.BatchView)
            assert [j.reference for j in result.journals] == refs
            for view, (_ref, legs) in zip(result.journals, batch, strict=True):
                self.record_journal(view, legs)
            self.model.accounts = trial

    @precondition(lambda self: bool(self.model.journals))
    @rule(data=st.data())
    def reverse_journal(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 19), label="unknown journal") == 19:
            jid = "no-such-journal"
        else:
            jid = data.draw(st.sampled_from(sorted(self.model.journals)), label="journal")
        ref = self.journal_reference(data)
        expected: set[str] = set()
        trial = self.model.copy_accounts()
        original = self.model.journals.get(jid)
        if original is None:
            expected.add(JOURNAL_NOT_FOUND)
        elif jid in self.model.reversed:
            expected.add(ALREADY_REVERSED)
        else:
            if ref in self.model.journal_refs:
                expected.add(DUPLICATE_REF)
            expected |= post_problems(trial, opposite(original))
        command = c.ReverseJournal(journal_id=jid, reference=ref, reason="model")

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.reverse_journal(self.ctx, command, idempotency_key=key)

        view = self.execute("reverse_journal", invoke, self.key(data), expected)
        if view is not None:
            assert isinstance(view, c.JournalView)
            assert original is not None
            assert view.reverses_journal_id == jid
            self.record_journal(view, opposite(original))
            self.model.reversed.add(jid)
            self.model.accounts = trial

    # -- holds ----------------------------------------------------------------------------
    @precondition(lambda self: bool(self.model.accounts))
    @rule(
        data=st.data(), amount=st.integers(1, 4000), ttl=st.one_of(st.none(), st.integers(-2, 60))
    )
    def create_hold(self, data: st.DataObject, amount: int, ttl: int | None) -> None:
        cur = self.pick_currency(data)
        debit, credit = self.pick_account(data, cur), self.pick_account(data, cur)
        if debit == credit:  # an input error, refused before anything runs
            with pytest.raises(ValidationError) as refused:
                c.CreateHold(
                    reference="h",
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=from_minor(amount, cur),
                )
            assert refused.value.field == "credit_account_id"
            return
        if self.model.hold_refs and data.draw(st.integers(0, 14), label="reuse ref") == 14:
            ref = data.draw(st.sampled_from(sorted(self.model.hold_refs)), label="used ref")
        else:
            ref = self.fresh("hr")
        expires_at = None if ttl is None else self.clock.now() + timedelta(seconds=ttl)
        expected: set[str] = set()
        trial = self.model.copy_accounts()
        if ref in self.model.hold_refs:
            expected.add(DUPLICATE_REF)
        parties = [trial.get(debit), trial.get(credit)]
        for acc in parties:
            if acc is None:
                expected.add(NOT_FOUND)
            else:
                if acc.status is not AccountStatus.ACTIVE:
                    expected.add(NOT_ACTIVE)
                if acc.currency != cur:
                    expected.add(MISMATCH)
        if ttl is not None and ttl <= 0:
            expected.add(EXPIRY_IN_PAST)
        if not expected:
            trial[debit].dh += amount
            trial[credit].ch += amount
            if not (trial[debit].within_bound() and trial[credit].within_bound()):
                expected.add(NO_FUNDS)
        command = c.CreateHold(
            reference=ref,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=from_minor(amount, cur),
            expires_at=expires_at,
        )

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.create_hold(self.ctx, command, idempotency_key=key)

        view = self.execute("create_hold", invoke, self.key(data), expected)
        if view is not None:
            assert isinstance(view, c.HoldView)
            assert view.status is HoldStatus.PENDING
            assert view.amount == from_minor(amount, cur)
            assert view.expires_at == expires_at
            self.model.holds[view.id] = MHold(view.id, debit, credit, amount, cur, expires_at)
            self.model.hold_refs.add(ref)
            self.model.accounts = trial

    def pick_hold(self, data: st.DataObject) -> str:
        """Usually a pending hold; sometimes any hold, or an unknown id."""
        roll = data.draw(st.integers(0, 19), label="hold choice")
        if roll == 19:
            return "no-such-hold"
        pending = sorted(h.id for h in self.model.holds.values() if h.status is HoldStatus.PENDING)
        if pending and roll < 14:
            return data.draw(st.sampled_from(pending), label="pending hold")
        return data.draw(st.sampled_from(sorted(self.model.holds)), label="hold")

    def hold_problems(self, hold: MHold | None) -> set[str]:
        if hold is None:
            return {HOLD_NOT_FOUND}
        if hold.status is not HoldStatus.PENDING:
            return {HOLD_NOT_PENDING}
        if hold.expires_at is not None and hold.expires_at <= self.clock.now():
            return {HOLD_NOT_PENDING}
        return set()

    def release(self, accounts: dict[str, MAccount], hold: MHold) -> None:
        accounts[hold.debit].dh -= hold.amount
        accounts[hold.credit].ch -= hold.amount

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data(), how=st.sampled_from(["full", "part", "full", "part", "over", "currency"]))
    def capture_hold(self, data: st.DataObject, how: str) -> None:
        hid = self.pick_hold(data)
        hold = self.model.holds.get(hid)
        ref = self.journal_reference(data)
        requested: Money | None = None
        amount = 0 if hold is None else hold.amount
        if hold is not None and how == "part":
            amount = data.draw(st.integers(1, hold.amount), label="part")
            requested = from_minor(amount, hold.currency)
        elif hold is not None and how == "over":
            amount = hold.amount + data.draw(st.integers(1, 100), label="excess")
            requested = from_minor(amount, hold.currency)
        elif hold is not None and how == "currency":
            other = data.draw(st.sampled_from([x for x in CURRENCIES if x != hold.currency]))
            requested = from_minor(1, other)
        expected = self.hold_problems(hold)
        trial = self.model.copy_accounts()
        legs: list[LegT] = []
        if not expected and hold is not None:
            if how in ("over", "currency"):
                expected.add(MISMATCH if how == "currency" else CAPTURE_EXCEEDS)
            else:
                self.release(trial, hold)
                if ref in self.model.journal_refs:
                    expected.add(DUPLICATE_REF)
                legs = [
                    (hold.debit, Direction.DEBIT, amount, hold.currency),
                    (hold.credit, Direction.CREDIT, amount, hold.currency),
                ]
                expected |= post_problems(trial, legs)
        command = c.CaptureHold(hold_id=hid, reference=ref, amount=requested)

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.capture_hold(self.ctx, command, idempotency_key=key)

        view = self.execute(f"capture_hold ({how})", invoke, self.key(data), expected)
        if view is not None:
            assert isinstance(view, c.HoldView)
            assert hold is not None
            assert view.status is HoldStatus.CAPTURED
            assert view.captured == from_minor(amount, hold.currency)
            assert view.capture_journal_id is not None
            self.model.journals[view.capture_journal_id] = legs
            self.model.journal_refs.add(ref)
            hold.status, hold.captured = HoldStatus.CAPTURED, amount
            self.model.accounts = trial

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data())
    def void_hold(self, data: st.DataObject) -> None:
        hid = self.pick_hold(data)
        hold = self.model.holds.get(hid)
        expected = self.hold_problems(hold)
        trial = self.model.copy_accounts()
        if not expected and hold is not None:
            self.release(trial, hold)
        command = c.VoidHold(hold_id=hid, reason="model")

        def invoke(key: str | None) -> BaseModel:
            return self.ledger.void_hold(self.ctx, command, idempotency_key=key)

        view = self.execute("void_hold", invoke, self.key(data), expected)
        if view is not None:
            assert isinstance(view, c.HoldView)
            assert hold is not None
            assert view.status is HoldStatus.VOIDED
            hold.status = HoldStatus.VOIDED
            self.model.accounts = trial

    @rule(seconds=st.integers(0, 120))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @rule(limit=st.one_of(st.none(), st.integers(1, 3)))
    def expire_holds(self, limit: int | None) -> None:
        now = self.clock.now()
        due = sorted(
            (
                h
                for h in self.model.holds.values()
                if h.status is HoldStatus.PENDING
                and h.expires_at is not None
                and h.expires_at <= now
            ),
            key=lambda h: (h.expires_at, h.id),
        )[: 1000 if limit is None else limit]
        command = c.ExpireHolds() if limit is None else c.ExpireHolds(limit=limit)
        result = self.ledger.expire_holds(self.ctx, command)
        self._snapshot = None
        assert result.hold_ids == sorted(h.id for h in due)
        for hold in due:
            self.release(self.model.accounts, hold)
            hold.status = HoldStatus.EXPIRED

    # -- idempotency ----------------------------------------------------------------------
    @precondition(lambda self: bool(self.recorded))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        rec = data.draw(st.sampled_from(self.recorded), label="replayed")
        before = self.snapshot()
        outcome = attempt(rec.invoke, rec.key)
        if isinstance(rec.outcome, Failure):
            assert isinstance(outcome, FinFactoryError), f"replay of {rec.label}: {outcome!r}"
            assert type(outcome) is rec.outcome.error
            assert (outcome.code, outcome.message) == (rec.outcome.code, rec.outcome.message)
        else:
            assert outcome == rec.outcome, f"replay of {rec.label} returned {outcome!r}"
        self.assert_unchanged(before, f"replay of {rec.label}")

    @precondition(lambda self: bool(self.recorded))
    @rule(data=st.data(), kind=st.sampled_from(["post", "void", "status"]))
    def reuse_key(self, data: st.DataObject, kind: str) -> None:
        rec = data.draw(st.sampled_from(self.recorded), label="key owner")
        other = self.fresh("never-seen")  # makes this request unlike any sent before
        invoke: Callable[[str | None], BaseModel]
        if kind == "post":
            legs = [
                c.Leg(account_id=other, direction="debit", amount=from_minor(1, "PHP")),
                c.Leg(account_id=other, direction="credit", amount=from_minor(1, "PHP")),
            ]
            post = c.PostJournal(reference=other, legs=legs)

            def invoke(key: str | None) -> BaseModel:
                return self.ledger.post_journal(self.ctx, post, idempotency_key=key)
        elif kind == "void":
            void = c.VoidHold(hold_id=other)

            def invoke(key: str | None) -> BaseModel:
                return self.ledger.void_hold(self.ctx, void, idempotency_key=key)
        else:
            status = c.ChangeAccountStatus(account_id=other, status="frozen")

            def invoke(key: str | None) -> BaseModel:
                return self.ledger.change_account_status(self.ctx, status, idempotency_key=key)

        before = self.snapshot()
        outcome = attempt(invoke, rec.key)
        assert isinstance(outcome, IdempotencyConflict), f"key of {rec.label} reused: {outcome!r}"
        assert outcome.code == "idempotency_conflict"
        self.assert_unchanged(before, "idempotency conflict")

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def ledger_matches_model(self) -> None:
        snap = self.snapshot()
        model = self.model
        real = {acc.id: acc for acc in snap.accounts}
        assert set(real) == set(model.accounts)

        debits: dict[str, int] = defaultdict(int)
        credits: dict[str, int] = defaultdict(int)
        for acc in snap.accounts:
            debits[acc.currency] += acc.debits_posted
            credits[acc.currency] += acc.credits_posted
            assert bound_ok(
                acc.bound, acc.debits_posted, acc.credits_posted, acc.debits_held, acc.credits_held
            ), f"{acc.code} is past its bound {acc.bound}"
            m = model.accounts[acc.id]
            assert (acc.debits_posted, acc.credits_posted, acc.debits_held, acc.credits_held) == (
                m.dp,
                m.cp,
                m.dh,
                m.ch,
            ), f"{acc.code}: ledger {acc} != model {m}"
            assert (acc.status, acc.currency, acc.type, acc.bound) == (
                m.status,
                m.currency,
                m.type,
                m.bound,
            )
        assert debits == credits, f"money not conserved: debits {debits} credits {credits}"

        # Held amounts are exactly the pending holds, as the model tracks them.
        held_debit: dict[str, int] = defaultdict(int)
        held_credit: dict[str, int] = defaultdict(int)
        for hold in model.holds.values():
            if hold.status is HoldStatus.PENDING:
                held_debit[hold.debit] += hold.amount
                held_credit[hold.credit] += hold.amount
        for acc in snap.accounts:
            assert acc.debits_held == held_debit[acc.id], f"{acc.code} debit holds"
            assert acc.credits_held == held_credit[acc.id], f"{acc.code} credit holds"

        # What the public API shows, per currency, in minor units.
        net: dict[str, int] = defaultdict(int)
        for view in snap.views:
            m = model.accounts[view.id]
            posted, cur = to_minor(view.posted, allow_negative=True)
            held, _ = to_minor(view.held, allow_negative=True)
            available, _ = to_minor(view.available, allow_negative=True)
            assert cur == m.currency
            assert (posted, held, available) == (m.posted, m.held, m.posted - m.held), view
            net[cur] += posted if m.type.debit_normal else -posted
        assert all(v == 0 for v in net.values()), f"balances do not net to zero: {dict(net)}"

        for real_hold in snap.holds:
            assert real_hold is not None
            m_hold = model.holds[real_hold.id]
            assert (real_hold.status, real_hold.captured_amount, real_hold.amount) == (
                m_hold.status,
                m_hold.captured,
                m_hold.amount,
            )


class MemoryLedgerMachine(LedgerMachine):
    def make_storage(self) -> Storage:
        self.memory = MemoryStorage()
        return self.memory

    def row_counts(self) -> dict[str, int]:
        return self.memory.db.row_counts()


class SqliteLedgerMachine(LedgerMachine):
    def make_storage(self) -> Storage:
        self.directory = Path(tempfile.mkdtemp(prefix="ff-model-"))
        self.engine = create_engine(f"sqlite:///{self.directory / 'ledger.db'}")
        migrate(self.engine)
        return SqlStorage(self.engine)

    def row_counts(self) -> dict[str, int]:
        return sql_row_counts(self.engine)

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)


def _settings(examples: int, steps: int) -> Any:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_ledger_matches_model_in_memory() -> None:
    run_state_machine_as_test(MemoryLedgerMachine, settings=_settings(200, 50))


def test_ledger_matches_model_on_sqlite() -> None:
    run_state_machine_as_test(SqliteLedgerMachine, settings=_settings(80, 50))
