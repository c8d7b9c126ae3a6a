"""The ledger's public API. Every command: validated, authorized, idempotent, audited, and
written with its outbox events in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import attrs
from pydantic import BaseModel

from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.config import load_settings
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import DomainError, ValidationError
from finfactory.kernel.money import Money, from_minor, to_minor
from finfactory.kernel.money import currency as check_currency
from finfactory.kernel.paging import page_limit, sequence_cursor
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives.ledger import commands as cmd
from finfactory.primitives.ledger import events as ev
from finfactory.primitives.ledger.errors import (
    AccountClosed,
    AccountNotEmpty,
    AccountNotFound,
    AlreadyReversed,
    BatchTooLarge,
    CaptureExceedsHold,
    CurrencyMismatch,
    CurrencyNotAllowed,
    DuplicateAccountCode,
    DuplicateReference,
    HoldExpiryInPast,
    HoldNotFound,
    HoldNotPending,
    JournalNotFound,
)
from finfactory.primitives.ledger.model import (
    Account,
    AccountStatus,
    Direction,
    Hold,
    HoldStatus,
    Journal,
)
from finfactory.primitives.ledger.ports import LedgerStore
from finfactory.primitives.ledger.posting import (
    JournalSpec,
    LegSpec,
    apply_journal,
    emit_balance,
    emit_journal_balances,
    expired,
    money,
)
from finfactory.primitives.ledger.settings import LedgerSettings
from finfactory.primitives.ledger.stores import default_store_factory
from finfactory.primitives.ledger.views import account_view, hold_view, journal_view

R = TypeVar("R", bound=BaseModel)
StoreFactory = Callable[[UnitOfWork], LedgerStore]


def _spec(action: str, permission: str, resource: str, result: type[R]) -> CommandSpec[R]:
    return CommandSpec(f"ledger.{action}", f"ledger.{permission}", resource, result)


OPEN = _spec("open_account", "account.open", "ledger_account", cmd.AccountView)
STATUS = _spec("change_account_status", "account.manage", "ledger_account", cmd.AccountView)
POST = _spec("post_journal", "journal.post", "journal", cmd.JournalView)
BATCH = CommandSpec(
    "ledger.post_journals", "ledger.journal.post", "journal", cmd.BatchView, streaming=True
)
# Journals of a batch are written in chunks of this size, so the database works on one chunk
# while the next is computed (the batch still commits or fails as a whole).
BATCH_CHUNK = 25
HOLD = _spec("create_hold", "hold.create", "hold", cmd.HoldView)
CAPTURE = _spec("capture_hold", "hold.capture", "hold", cmd.HoldView)
VOID = _spec("void_hold", "hold.void", "hold", cmd.HoldView)
EXPIRE = _spec("expire_holds", "hold.expire", "hold", cmd.ExpiredHolds)
REVERSE = _spec("reverse_journal", "journal.reverse", "journal", cmd.JournalView)


def _legs(legs: list[cmd.Leg], prefix: str = "") -> tuple[LegSpec, ...]:
    out = []
    for i, leg in enumerate(legs):
        minor, cur = to_minor(leg.amount, field=f"{prefix}legs.{i}.amount", allow_zero=False)
        out.append(LegSpec(leg.account_id, leg.direction, minor, cur))
    return tuple(out)


def _journal_spec(c: cmd.PostJournal, prefix: str = "") -> JournalSpec:
    return JournalSpec(
        c.reference, _legs(c.legs, prefix), c.effective_date, c.description, dict(c.metadata)
    )


def _lookup(value: object, field: str) -> None:
    """An id or code a query looks up: malformed input is refused the same way on every
    store (PostgreSQL would otherwise fail on a NUL character, memory return not-found)."""
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
        raise ValidationError(f"{field} must be 1-200 printable characters", field=field)


@attrs.define
class LedgerService:
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    store_factory: StoreFactory = default_store_factory
    _runner: CommandRunner = attrs.field(init=False)
    _reads: ReadGuard = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._runner = CommandRunner(self.storage, self.policy, self.clock, self.ids, "ledger")
        self._reads = ReadGuard(self.storage, self.policy, self.clock, self.ids, "ledger.read")

    # -- accounts -------------------------------------------------------------------------
    def open_account(
        self,
        ctx: RequestContext,
        command: cmd.OpenAccount,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.AccountView:
        def handle(scope: CommandScope) -> cmd.AccountView:
            store = self.store_factory(scope.uow)
            allowed = load_settings(scope.uow, ctx.tenant_id, LedgerSettings).allowed_currencies
            if allowed and command.currency not in allowed:
                raise CurrencyNotAllowed(
                    f"tenant does not allow {command.currency} accounts", field="currency"
                )
            if store.account_id_for_code(ctx.tenant_id, command.code) is not None:
                raise DuplicateAccountCode(f"account code {command.code} exists", field="code")
            acc = Account(
                id=scope.ids.new_id(),
                tenant_id=ctx.tenant_id,
                code=command.code,
                currency=command.currency,
                type=command.type,
                bound=command.balance_bound,
                status=AccountStatus.ACTIVE,
                metadata=dict(command.metadata),
                created_at=scope.now,
            )
            scope.resource_id = acc.id
            store.add_account(acc)
            store.flush()
            scope.summary = {
                "after": {
                    "code": acc.code,
                    "currency": acc.currency,
                    "type": acc.type.value,
                    "bound": acc.bound.value,
                }
            }
            scope.emit(
                ev.AccountOpened,
                dict(
                    account_id=acc.id,
                    code=acc.code,
                    currency=acc.currency,
                    type=acc.type.value,
                    balance_bound=acc.bound.value,
                ),
                acc.id,
                acc.version,
            )
            return account_view(acc)

        check_currency(command.currency)
        return self._runner.run(
            ctx, OPEN, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def change_account_status(
        self,
        ctx: RequestContext,
        command: cmd.ChangeAccountStatus,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.AccountView:
        def handle(scope: CommandScope) -> cmd.AccountView:
            store = self.store_factory(scope.uow)
            acc = self._lock_one(store, ctx, command.account_id)
            old = acc.status
            if old is AccountStatus.CLOSED and command.status is not AccountStatus.CLOSED:
                raise AccountClosed(f"account {acc.code} is closed for good", account_id=acc.id)
            if command.status is AccountStatus.CLOSED and (
                acc.debits_posted != acc.credits_posted or acc.debits_held or acc.credits_held
            ):
                raise AccountNotEmpty(
                    f"account {acc.code} has a balance or pending holds", account_id=acc.id
                )
            if old is command.status:
                return account_view(acc)
            acc = acc.with_status(command.status).bump()
            store.save_accounts([acc])
            store.flush()
            scope.summary = {"before": {"status": old.value}, "after": {"status": acc.status.value}}
            scope.emit(
                ev.AccountStatusChanged,
                dict(
                    account_id=acc.id,
                    code=acc.code,
                    old_status=old.value,
                    new_status=acc.status.value,
                    reason=command.reason,
                ),
                acc.id,
                acc.version,
            )
            return account_view(acc)

        return self._runner.run(
            ctx,
            STATUS,
            command,
            handle,
            idempotency_key=idempotency_key,
            resource_id=command.account_id,
            uow=uow,
        )

    # -- journals -------------------------------------------------------------------------
    def post_journal(
        self,
        ctx: RequestContext,
        command: cmd.PostJournal,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.JournalView:
        spec = _journal_spec(command)

        def handle(scope: CommandScope) -> cmd.JournalView:
            journals = self._post(scope, [spec])
            scope.events_complete()
            return journal_view(journals[0])

        return self._runner.run(
            ctx, POST, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def post_journals(
        self,
        ctx: RequestContext,
        command: cmd.PostJournals,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.BatchView:
        """Post many journals atomically: all of them, or (on any rejection) none."""
        specs = [_journal_spec(j, f"journals.{i}.") for i, j in enumerate(command.journals)]

        def handle(scope: CommandScope) -> cmd.BatchView:
            limit = load_settings(scope.uow, ctx.tenant_id, LedgerSettings).max_batch_size
            if len(specs) > limit:
                raise BatchTooLarge(
                    f"batch of {len(specs)} exceeds the tenant limit {limit}", field="journals"
                )
            journals = self._post(scope, specs, batch=True)
            scope.events_complete()
            return cmd.BatchView.model_construct(journals=[journal_view(j) for j in journals])

        return self._runner.run(
            ctx, BATCH, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def _post(
        self,
        scope: CommandScope,
        specs: list[JournalSpec],
        *,
        batch: bool = False,
        check_locked: Callable[[], None] | None = None,
    ) -> list[Journal]:
        """Post ``specs``; in a batch, a rejection names the journal (``journals.3.legs.1``).
        ``check_locked`` runs once the accounts are locked, with the reference checks."""
        store = self.store_factory(scope.uow)
        refs = [s.reference for s in specs]

        def where(index: int, field: str) -> str:
            return f"journals.{index}.{field}" if batch else field

        seen: set[str] = set()
        for index, ref in enumerate(refs):
            if ref in seen:
                raise DuplicateReference(
                    f"a batch repeats journal reference {ref}", field=where(index, "reference")
                )
            seen.add(ref)
        ids = {leg.account_id for s in specs for leg in s.legs}
        accounts = store.lock_accounts(scope.ctx.tenant_id, ids)
        # Only now: on PostgreSQL a concurrent command with the same reference (or reversing
        # the same journal) that held these locks has committed by now, and these checks see
        # it. Checked before the locks, the loser would fail the balance check instead.
        if check_locked is not None:
            check_locked()
        taken = store.existing_references(scope.ctx.tenant_id, refs)
        if taken:
            first = next(i for i, ref in enumerate(refs) if ref in taken)
            raise DuplicateReference(
                f"journal reference {refs[first]} is already used", field=where(first, "reference")
            )
        journals: list[Journal] = []
        for start in range(0, len(specs), BATCH_CHUNK):
            before = dict(accounts)
            for index, spec in enumerate(specs[start : start + BATCH_CHUNK], start):
                try:
                    journal = apply_journal(scope, accounts, spec)
                except DomainError as err:
                    if batch:
                        field = err.details.get("field")
                        err.details["field"] = where(index, field or "legs")
                    raise
                store.add_journal(journal)
                journals.append(journal)
            if start + BATCH_CHUNK >= len(specs):
                # The balances' events (and version bumps) go with the last chunk's save.
                emit_journal_balances(scope, accounts, journals)
            changed = [acc for aid, acc in accounts.items() if acc is not before[aid]]
            store.save_accounts(changed)
            store.flush(more=start + BATCH_CHUNK < len(specs))
        scope.resource_id = journals[0].id if len(journals) == 1 else None
        scope.summary = {
            "journals": [
                {"id": j.id, "reference": j.reference, "legs": len(j.entries)}
                for j in journals[:20]
            ],
            "count": len(journals),
        }
        return journals

    def reverse_journal(
        self,
        ctx: RequestContext,
        command: cmd.ReverseJournal,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.JournalView:
        def handle(scope: CommandScope) -> cmd.JournalView:
            store = self.store_factory(scope.uow)
            original = store.get_journal(ctx.tenant_id, command.journal_id)
            if original is None:
                raise JournalNotFound(f"journal {command.journal_id} not found", field="journal_id")

            def not_reversed_yet() -> None:
                if store.reversal_of(ctx.tenant_id, original.id) is not None:
                    raise AlreadyReversed(
                        f"journal {original.id} is already reversed", journal_id=original.id
                    )

            spec = JournalSpec(
                command.reference,
                tuple(
                    LegSpec(e.account_id, e.direction.opposite, e.amount, e.currency)
                    for e in original.entries
                ),
                command.effective_date,
                command.reason or f"reversal of {original.reference}",
                {},
                original.id,
            )
            reversal = self._post(scope, [spec], check_locked=not_reversed_yet)[0]
            scope.resource_id = original.id
            scope.emit(
                ev.TransactionReversed,
                dict(
                    journal_id=original.id,
                    reversal_journal_id=reversal.id,
                    reference=reversal.reference,
                    reason=command.reason,
                ),
                original.id,
                2,
            )
            return journal_view(reversal)

        return self._runner.run(
            ctx,
            REVERSE,
            command,
            handle,
            idempotency_key=idempotency_key,
            resource_id=command.journal_id,
            uow=uow,
        )

    # -- holds ----------------------------------------------------------------------------
    def create_hold(
        self,
        ctx: RequestContext,
        command: cmd.CreateHold,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.HoldView:
        amount, currency = to_minor(command.amount, allow_zero=False)

        def handle(scope: CommandScope) -> cmd.HoldView:
            store = self.store_factory(scope.uow)
            ids = {command.debit_account_id, command.credit_account_id}
            accounts = store.lock_accounts(ctx.tenant_id, ids)
            # After the locks, as for journals: a concurrent hold with this reference on these
            # accounts has committed by now.
            if store.hold_reference_taken(ctx.tenant_id, command.reference):
                raise DuplicateReference(
                    f"hold reference {command.reference} is already used", field="reference"
                )
            debit = self._require(accounts, command.debit_account_id, "debit_account_id")
            credit = self._require(accounts, command.credit_account_id, "credit_account_id")
            for acc in (debit, credit):
                acc.require_active()
                acc.require_currency(currency)
            expires_at = command.expires_at
            if expires_at is not None and expires_at <= scope.now:
                raise HoldExpiryInPast("expires_at must be later than now", field="expires_at")
            ttl = load_settings(scope.uow, ctx.tenant_id, LedgerSettings).default_hold_ttl_seconds
            if expires_at is None and ttl is not None:
                expires_at = scope.now + timedelta(seconds=ttl)
            hold = Hold(
                id=scope.ids.new_id(),
                tenant_id=ctx.tenant_id,
                reference=command.reference,
                debit_account_id=debit.id,
                credit_account_id=credit.id,
                amount=amount,
                currency=currency,
                status=HoldStatus.PENDING,
                captured_amount=0,
                expires_at=expires_at,
                created_at=scope.now,
                released_at=None,
                capture_journal_id=None,
                metadata=dict(command.metadata),
            )
            scope.resource_id = hold.id
            before = dict(accounts)
            self._move_held(accounts, hold, +1)
            for acc in accounts.values():
                acc.check_bound()
            scope.emit(
                ev.HoldCreated,
                dict(
                    hold_id=hold.id,
                    reference=hold.reference,
                    debit_account_id=debit.id,
                    credit_account_id=credit.id,
                    amount=money(amount, currency),
                    expires_at=None if hold.expires_at is None else hold.expires_at.isoformat(),
                ),
                hold.id,
                hold.version,
            )
            self._emit_balances(scope, accounts, before, "hold", hold.id)
            store.add_hold(hold)
            store.save_accounts(list(accounts.values()))
            store.flush()
            scope.summary = {"after": {"amount": amount, "currency": currency}}
            return hold_view(hold)

        return self._runner.run(
            ctx, HOLD, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def capture_hold(
        self,
        ctx: RequestContext,
        command: cmd.CaptureHold,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.HoldView:
        """Post the held amount (or part of it) and release the rest of the hold."""
        requested = None if command.amount is None else to_minor(command.amount, allow_zero=False)

        def handle(scope: CommandScope) -> cmd.HoldView:
            store, hold, accounts = self._open_hold(scope, command.hold_id)
            amount = hold.amount if requested is None else requested[0]
            if requested is not None and requested[1] != hold.currency:
                raise CurrencyMismatch(
                    f"hold is in {hold.currency}, not {requested[1]}", field="amount"
                )
            if amount > hold.amount:
                raise CaptureExceedsHold(
                    f"capture of {from_minor(amount, hold.currency).amount} exceeds the hold of"
                    f" {from_minor(hold.amount, hold.currency).amount} {hold.currency}",
                    field="amount",
                )
            self._move_held(accounts, hold, -1)
            spec = JournalSpec(
                command.reference,
                (
                    LegSpec(hold.debit_account_id, Direction.DEBIT, amount, hold.currency),
                    LegSpec(hold.credit_account_id, Direction.CREDIT, amount, hold.currency),
                ),
                command.effective_date,
                command.description or f"capture of {hold.reference}",
                {"hold_id": hold.id},
            )
            if store.existing_references(ctx.tenant_id, [command.reference]):
                raise DuplicateReference(
                    f"journal reference {command.reference} is already used", field="reference"
                )
            journal = apply_journal(scope, accounts, spec)
            emit_journal_balances(scope, accounts, [journal])
            store.add_journal(journal)
            hold = attrs.evolve(
                hold,
                status=HoldStatus.CAPTURED,
                captured_amount=amount,
                released_at=scope.now,
                capture_journal_id=journal.id,
                version=hold.version + 1,
            )
            return self._finish_hold(scope, store, accounts, hold, spec.description)

        return self._runner.run(
            ctx,
            CAPTURE,
            command,
            handle,
            idempotency_key=idempotency_key,
            resource_id=command.hold_id,
            uow=uow,
        )

    def void_hold(
        self,
        ctx: RequestContext,
        command: cmd.VoidHold,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.HoldView:
        def handle(scope: CommandScope) -> cmd.HoldView:
            store, hold, accounts = self._open_hold(scope, command.hold_id)
            before = dict(accounts)
            self._move_held(accounts, hold, -1)
            self._emit_balances(scope, accounts, before, "hold", hold.id)
            hold = attrs.evolve(
                hold, status=HoldStatus.VOIDED, released_at=scope.now, version=hold.version + 1
            )
            return self._finish_hold(scope, store, accounts, hold, command.reason)

        return self._runner.run(
            ctx,
            VOID,
            command,
            handle,
            idempotency_key=idempotency_key,
            resource_id=command.hold_id,
            uow=uow,
        )

    def expire_holds(
        self,
        ctx: RequestContext,
        command: cmd.ExpireHolds | None = None,
        *,
        uow: UnitOfWork | None = None,
    ) -> cmd.ExpiredHolds:
        """Release every pending hold whose expiry has passed on the clock."""
        command = command or cmd.ExpireHolds()

        def handle(scope: CommandScope) -> cmd.ExpiredHolds:
            store = self.store_factory(scope.uow)
            due = store.expired_hold_ids(ctx.tenant_id, scope.now, command.limit)
            # Lock order as everywhere else: holds (ascending id), then all their accounts
            # at once (ascending id). Holds sharing an account see each other's release.
            holds = [store.lock_hold(ctx.tenant_id, hold_id) for hold_id in sorted(due)]
            pending = [h for h in holds if h is not None and h.status is HoldStatus.PENDING]
            accounts = store.lock_accounts(
                ctx.tenant_id,
                {h.debit_account_id for h in pending} | {h.credit_account_id for h in pending},
            )
            done: list[str] = []
            for hold in pending:
                touched = {
                    aid: accounts[aid] for aid in (hold.debit_account_id, hold.credit_account_id)
                }
                before = dict(touched)
                self._move_held(touched, hold, -1)
                self._emit_balances(scope, touched, before, "hold", hold.id)
                accounts.update(touched)
                hold = attrs.evolve(
                    hold, status=HoldStatus.EXPIRED, released_at=scope.now, version=hold.version + 1
                )
                self._emit_release(scope, hold, "expired by the clock")
                store.save_hold(hold)
                done.append(hold.id)
            store.save_accounts([accounts[aid] for aid in sorted(accounts)])
            store.flush()
            scope.summary = {"expired": len(done)}
            return cmd.ExpiredHolds.model_construct(hold_ids=done)

        return self._runner.run(ctx, EXPIRE, command, handle, uow=uow)

    def _open_hold(
        self, scope: CommandScope, hold_id: str
    ) -> tuple[LedgerStore, Hold, dict[str, Account]]:
        store = self.store_factory(scope.uow)
        hold = store.lock_hold(scope.ctx.tenant_id, hold_id)
        if hold is None:
            raise HoldNotFound(f"hold {hold_id} not found", field="hold_id")
        if hold.status is not HoldStatus.PENDING:
            raise HoldNotPending(f"hold {hold_id} is {hold.status.value}", hold_id=hold_id)
        if expired(hold.expires_at, scope.now):
            raise HoldNotPending(f"hold {hold_id} has expired", hold_id=hold_id)
        accounts = store.lock_accounts(
            scope.ctx.tenant_id, {hold.debit_account_id, hold.credit_account_id}
        )
        return store, hold, accounts

    def _finish_hold(
        self,
        scope: CommandScope,
        store: LedgerStore,
        accounts: dict[str, Account],
        hold: Hold,
        note: str,
    ) -> cmd.HoldView:
        self._emit_release(scope, hold, note)
        store.save_hold(hold)
        store.save_accounts(list(accounts.values()))
        store.flush()
        scope.summary = {
            "after": {"status": hold.status.value, "captured": hold.captured_amount},
            "note": note,
        }
        return hold_view(hold)

    @staticmethod
    def _emit_release(scope: CommandScope, hold: Hold, note: str = "") -> None:
        scope.emit(
            ev.HoldReleased,
            dict(
                hold_id=hold.id,
                reason=hold.status.value,
                note=note,
                amount=money(hold.amount, hold.currency),
                captured=money(hold.captured_amount, hold.currency),
                released=money(hold.amount - hold.captured_amount, hold.currency),
                capture_journal_id=hold.capture_journal_id,
            ),
            hold.id,
            hold.version,
        )

    @staticmethod
    def _move_held(accounts: dict[str, Account], hold: Hold, sign: int) -> None:
        accounts[hold.debit_account_id] = accounts[hold.debit_account_id].hold(
            Direction.DEBIT, sign * hold.amount
        )
        accounts[hold.credit_account_id] = accounts[hold.credit_account_id].hold(
            Direction.CREDIT, sign * hold.amount
        )

    @staticmethod
    def _emit_balances(
        scope: CommandScope,
        accounts: dict[str, Account],
        before: dict[str, Account],
        cause: str,
        cause_id: str,
    ) -> None:
        """balance.updated for each account whose posted, held or available balance moved."""
        for aid in sorted(accounts):
            acc, old = accounts[aid], before[aid]
            if (acc.posted, acc.held) != (old.posted, old.held):
                accounts[aid] = emit_balance(scope, acc, cause, cause_id)

    @staticmethod
    def _require(accounts: dict[str, Account], account_id: str, field: str) -> Account:
        acc = accounts.get(account_id)
        if acc is None:
            raise AccountNotFound(f"account {account_id} not found", field=field)
        return acc

    def _lock_one(self, store: LedgerStore, ctx: RequestContext, account_id: str) -> Account:
        return self._require(
            store.lock_accounts(ctx.tenant_id, {account_id}), account_id, "account_id"
        )

    # -- queries --------------------------------------------------------------------------
    def get_account(
        self, ctx: RequestContext, account_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.AccountView:
        _lookup(account_id, "account_id")
        with self._reads.view(ctx, uow) as tx:
            acc = self.store_factory(tx).get_account(ctx.tenant_id, account_id)
        if acc is None:
            raise AccountNotFound(f"account {account_id} not found", field="account_id")
        return account_view(acc)

    def find_account(
        self, ctx: RequestContext, code: str, *, uow: UnitOfWork | None = None
    ) -> cmd.AccountView:
        _lookup(code, "code")
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            aid = store.account_id_for_code(ctx.tenant_id, code)
            acc = None if aid is None else store.get_account(ctx.tenant_id, aid)
        if acc is None:
            raise AccountNotFound(f"no account with code {code}", field="code")
        return account_view(acc)

    def list_accounts(
        self,
        ctx: RequestContext,
        *,
        after_code: str = "",
        limit: int = 100,
        uow: UnitOfWork | None = None,
    ) -> list[cmd.AccountView]:
        if after_code:
            _lookup(after_code, "after_code")
        limit = page_limit(limit, 1000)
        with self._reads.view(ctx, uow) as tx:
            accs = self.store_factory(tx).list_accounts(ctx.tenant_id, after_code, limit)
        return [account_view(a) for a in accs]

    def balance(
        self, ctx: RequestContext, account_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.BalanceView:
        view = self.get_account(ctx, account_id, uow=uow)
        return cmd.BalanceView.model_construct(
            account_id=view.id, posted=view.posted, held=view.held, available=view.available
        )

    def posted_balance_as_of(
        self,
        ctx: RequestContext,
        account_id: str,
        at: datetime,
        *,
        uow: UnitOfWork | None = None,
    ) -> Money:
        """The posted balance as it stood at ``at`` (by posting time)."""
        if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
            raise ValidationError("at must be a timezone-aware datetime", field="at")
        try:
            at = at.astimezone(UTC)
        except OverflowError:
            raise ValidationError("at is out of range", field="at") from None
        _lookup(account_id, "account_id")
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            acc = store.get_account(ctx.tenant_id, account_id)
            if acc is None:
                raise AccountNotFound(f"account {account_id} not found", field="account_id")
            return from_minor(store.posted_as_of(ctx.tenant_id, account_id, at), acc.currency)

    def statement(
        self,
        ctx: RequestContext,
        account_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        uow: UnitOfWork | None = None,
    ) -> cmd.Statement:
        """Entries of an account in posting order; pass ``next_after`` back for the next page."""
        _lookup(account_id, "account_id")
        sequence_cursor(after, "after")
        limit = page_limit(limit, 1000)
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            acc = store.get_account(ctx.tenant_id, account_id)
            if acc is None:
                raise AccountNotFound(f"account {account_id} not found", field="account_id")
            rows = store.entries(ctx.tenant_id, account_id, after, limit + 1)
        lines = [
            cmd.StatementLine.model_construct(
                sequence=e.account_sequence,
                journal_id=e.journal_id,
                direction=e.direction,
                amount=from_minor(e.amount, e.currency),
                balance_after=from_minor(e.balance_after, e.currency),
                posted_at=e.posted_at,
            )
            for e in rows[:limit]
        ]
        more = len(rows) > limit
        return cmd.Statement.model_construct(
            account_id=account_id, lines=lines, next_after=lines[-1].sequence if more else None
        )

    def get_journal(
        self, ctx: RequestContext, journal_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.JournalView:
        _lookup(journal_id, "journal_id")
        with self._reads.view(ctx, uow) as tx:
            journal = self.store_factory(tx).get_journal(ctx.tenant_id, journal_id)
        if journal is None:
            raise JournalNotFound(f"journal {journal_id} not found", field="journal_id")
        return journal_view(journal)

    def get_hold(
        self, ctx: RequestContext, hold_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.HoldView:
        _lookup(hold_id, "hold_id")
        with self._reads.view(ctx, uow) as tx:
            hold = self.store_factory(tx).get_hold(ctx.tenant_id, hold_id)
        if hold is None:
            raise HoldNotFound(f"hold {hold_id} not found", field="hold_id")
        return hold_view(hold)
