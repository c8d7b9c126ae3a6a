"""Adapter contract suites, public so downstream teams can run them on their own adapters.

Subclass :class:`StorageContract` in a pytest module and implement :meth:`make_storage`
(and :attr:`store_factory` if you bring your own ledger store); pytest collects the
``test_`` methods. FinFactory runs the same suites on its in-memory, SQLite and PostgreSQL
adapters, and every adapter must produce the same results, event for event.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from moneyed import Money

from finfactory.kernel.audit import AuditDraft, Outcome, seal, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import DomainError, IdempotencyConflict
from finfactory.kernel.ports import ConfigVersion, Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService, StoreFactory
from finfactory.primitives.ledger.stores import default_store_factory
from finfactory.testing.clock import ManualClock, SequentialIds


def _ctx(tenant: str = "contract") -> RequestContext:
    actor = Actor("contract-runner", ActorKind.SERVICE, frozenset({"admin"}))
    return RequestContext(tenant, actor, trace_id="0af7651916cd43dd8448eb211c80319c")


def ledger_transcript(storage: Storage, store_factory: StoreFactory) -> list[Any]:
    """Run a fixed ledger scenario and return everything observable, in order.

    Two adapters are equivalent when their transcripts are equal.
    """
    clock = ManualClock()
    ledger = LedgerService(storage, default_policy(), clock, SequentialIds(), store_factory)
    ctx = _ctx()
    out: list[Any] = []

    def record(value: Any) -> None:
        out.append(value.model_dump(mode="json") if hasattr(value, "model_dump") else value)

    def attempt(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except DomainError as err:
            record({"error": err.code})
            return None
        record(result)
        return result

    php = "PHP"
    cash = attempt(ledger.open_account, ctx, c.OpenAccount(code="cash", currency=php, type="asset"))
    bound = "debits_must_not_exceed_credits"
    alice = attempt(
        ledger.open_account,
        ctx,
        c.OpenAccount(code="alice", currency=php, type="liability", balance_bound=bound),
    )
    bob = attempt(
        ledger.open_account,
        ctx,
        c.OpenAccount(code="bob", currency=php, type="liability", balance_bound=bound),
    )
    attempt(ledger.open_account, ctx, c.OpenAccount(code="alice", currency=php, type="liability"))

    def leg(account: Any, direction: str, amount: str) -> c.Leg:
        return c.Leg(account_id=account.id, direction=direction, amount=Money(amount, php))

    first = attempt(
        ledger.post_journal,
        ctx,
        c.PostJournal(
            reference="in-1", legs=[leg(cash, "debit", "100.00"), leg(alice, "credit", "100.00")]
        ),
        idempotency_key="k-in-1",
    )
    attempt(
        ledger.post_journal,
        ctx,
        c.PostJournal(
            reference="in-1", legs=[leg(cash, "debit", "100.00"), leg(alice, "credit", "100.00")]
        ),
        idempotency_key="k-in-1",
    )
    attempt(
        ledger.post_journal,
        ctx,
        c.PostJournal(
            reference="over", legs=[leg(alice, "debit", "500.00"), leg(bob, "credit", "500.00")]
        ),
        idempotency_key="k-over",
    )
    attempt(
        ledger.post_journal,
        ctx,
        c.PostJournal(
            reference="over", legs=[leg(alice, "debit", "500.00"), leg(bob, "credit", "500.00")]
        ),
        idempotency_key="k-over",
    )
    attempt(
        ledger.post_journals,
        ctx,
        c.PostJournals(
            journals=[
                c.PostJournal(
                    reference="b-1",
                    legs=[leg(alice, "debit", "10.00"), leg(bob, "credit", "10.00")],
                ),
                c.PostJournal(
                    reference="b-2", legs=[leg(bob, "debit", "5.00"), leg(alice, "credit", "5.00")]
                ),
            ]
        ),
    )
    hold = attempt(
        ledger.create_hold,
        ctx,
        c.CreateHold(
            reference="h-1",
            debit_account_id=alice.id,
            credit_account_id=bob.id,
            amount=Money("30.00", php),
        ),
    )
    attempt(
        ledger.capture_hold,
        ctx,
        c.CaptureHold(hold_id=hold.id, reference="cap-1", amount=Money("12.50", php)),
    )
    attempt(ledger.capture_hold, ctx, c.CaptureHold(hold_id=hold.id, reference="cap-2"))
    expiring = attempt(
        ledger.create_hold,
        ctx,
        c.CreateHold(
            reference="h-2",
            debit_account_id=alice.id,
            credit_account_id=bob.id,
            amount=Money("1.00", php),
            expires_at=clock.now() + timedelta(minutes=5),
        ),
    )
    voided = attempt(
        ledger.create_hold,
        ctx,
        c.CreateHold(
            reference="h-3",
            debit_account_id=bob.id,
            credit_account_id=alice.id,
            amount=Money("2.00", php),
        ),
    )
    attempt(ledger.void_hold, ctx, c.VoidHold(hold_id=voided.id))
    clock.advance(timedelta(minutes=10))
    attempt(ledger.expire_holds, ctx)
    attempt(ledger.get_hold, ctx, expiring.id)
    attempt(ledger.reverse_journal, ctx, c.ReverseJournal(journal_id=first.id, reference="rev-1"))
    attempt(ledger.reverse_journal, ctx, c.ReverseJournal(journal_id=first.id, reference="rev-2"))
    for account in (cash, alice, bob):
        attempt(ledger.get_account, ctx, account.id)
        attempt(ledger.statement, ctx, account.id, limit=3)
    with storage.read() as tx:
        events = tx.kernel.read_events(0, 10_000)
        record(
            [
                (
                    e.position,
                    e.event_type,
                    e.aggregate_type,
                    e.aggregate_id,
                    e.aggregate_sequence,
                    e.payload,
                    e.trace_id,
                )
                for e in events
            ]
        )
        records = list(tx.kernel.audit_records(ctx.tenant_id))
        record([(r.sequence, r.action, r.outcome.value, r.hash) for r in records])
        record(verify_chain(records, tx.kernel.audit_head(ctx.tenant_id)).ok)
    return out


def _draft(record_id: str, tenant: str, summary: dict[str, Any] | None = None) -> AuditDraft:
    return AuditDraft(
        id=record_id,
        tenant_id=tenant,
        occurred_at=ManualClock().now(),
        actor_id="x",
        actor_kind="user",
        action="act",
        resource_type="r",
        resource_id=None,
        outcome=Outcome.SUCCEEDED,
        reason="",
        trace_id="1" * 32,
        summary=summary or {},
    )


class _Probe(Exception):
    """Carries a finding out of a transaction that must roll back."""

    def __init__(self, found: bool) -> None:
        super().__init__()
        self.found = found


class StorageContract:
    """The behaviour every storage adapter must share. Override :meth:`make_storage`."""

    store_factory: ClassVar[StoreFactory] = staticmethod(default_store_factory)

    def make_storage(self) -> Storage:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- kernel store ---------------------------------------------------------------------
    def test_idempotency_claim_complete_and_replay(self) -> None:
        storage = self.make_storage()
        now = ManualClock().now()
        with storage.transaction() as tx:
            assert tx.kernel.claim_idempotency("t", "k", "cmd", "h1", now) is None
            tx.kernel.complete_idempotency("t", "k", True, '{"ok": 1}')
        with storage.transaction() as tx:
            stored = tx.kernel.claim_idempotency("t", "k", "cmd", "h1", now)
            assert stored is not None
            assert (stored.command, stored.request_hash, stored.succeeded) == ("cmd", "h1", True)
            assert stored.response == {"ok": 1}
            assert tx.kernel.claim_idempotency("other", "k", "cmd", "h1", now) is None

    def test_idempotency_claim_rolled_back_is_free_again(self) -> None:
        storage = self.make_storage()
        now = ManualClock().now()
        try:
            with storage.transaction() as tx:
                assert tx.kernel.claim_idempotency("t", "k", "cmd", "h", now) is None
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        with storage.transaction() as tx:
            assert tx.kernel.claim_idempotency("t", "k", "cmd", "h", now) is None

    def test_idempotency_purge_takes_old_outcomes_oldest_first(self) -> None:
        storage = self.make_storage()
        start = ManualClock().now()
        cutoff = start + timedelta(minutes=1)
        with storage.transaction() as tx:
            for n in range(5):
                at = start + timedelta(seconds=5 - n)  # claimed newest first
                assert tx.kernel.claim_idempotency("t", f"old-{n}", "cmd", "h", at) is None
                tx.kernel.complete_idempotency("t", f"old-{n}", True, "{}")
            assert tx.kernel.claim_idempotency("u", "new", "cmd", "h", cutoff) is None
            tx.kernel.complete_idempotency("u", "new", True, "{}")
        with storage.transaction() as tx:
            # A key claimed by a transaction still running has no outcome yet: it stays.
            assert tx.kernel.claim_idempotency("t", "busy", "cmd", "h", start) is None
            assert tx.kernel.purge_idempotency(cutoff, 2) == 2
            tx.kernel.complete_idempotency("t", "busy", True, "{}")

        def stored(tenant: str, key: str) -> bool:
            try:
                with storage.transaction() as tx:
                    found = tx.kernel.claim_idempotency(tenant, key, "cmd", "h", start) is not None
                    raise _Probe(found)
            except _Probe as probe:
                return probe.found

        assert [stored("t", f"old-{n}") for n in range(5)] == [True, True, True, False, False]
        with storage.transaction() as tx:
            assert tx.kernel.purge_idempotency(cutoff, 10) == 4  # old-0..2 and busy
            assert tx.kernel.purge_idempotency(cutoff, 10) == 0
        assert not stored("t", "old-0")
        assert stored("u", "new")  # claimed at the cutoff itself: not older than it

    def test_audit_chain_appends_and_verifies_per_tenant(self) -> None:
        storage = self.make_storage()
        with storage.transaction() as tx:
            for n, tenant in enumerate(["a", "b", "a", "a"]):
                summary = {"n": n, "nested": {"z": 1, "a": [1, 2]}}
                tx.kernel.append_audit(_draft(f"id-{n}", tenant, summary), seal)
        with storage.read() as tx:
            records = list(tx.kernel.audit_records("a"))
            assert [r.sequence for r in records] == [1, 2, 3]
            assert records[1].prev_hash == records[0].hash
            assert records[2].summary == {"n": 3, "nested": {"z": 1, "a": [1, 2]}}
            assert verify_chain(records, tx.kernel.audit_head("a")).ok
            assert tx.kernel.audit_head("b") == (1, next(iter(tx.kernel.audit_records("b"))).hash)
            assert tx.kernel.audit_head("nobody") is None

    def test_audit_records_page_by_sequence(self) -> None:
        storage = self.make_storage()
        with storage.transaction() as tx:
            for n in range(5):
                tx.kernel.append_audit(_draft(f"a-{n}", "paged"), seal)
            tx.kernel.append_audit(_draft("b-0", "other"), seal)
        with storage.read() as tx:
            kernel = tx.kernel
            assert [r.sequence for r in kernel.audit_records("paged", after_sequence=2)] == [
                3,
                4,
                5,
            ]
            page = kernel.audit_records("paged", after_sequence=1, limit=2)
            assert [r.sequence for r in page] == [2, 3]
            assert list(kernel.audit_records("paged", after_sequence=5)) == []
            assert [r.id for r in kernel.audit_records("other", limit=10)] == ["b-0"]

    def test_outbox_positions_follow_commit_order_and_page(self) -> None:
        storage = self.make_storage()
        ledger = LedgerService(
            storage, default_policy(), ManualClock(), SequentialIds(), type(self).store_factory
        )
        for n, tenant in enumerate(("t1", "t2", "t1")):
            ledger.open_account(
                _ctx(tenant), c.OpenAccount(code=f"acc-{n}", currency="PHP", type="asset")
            )
        with storage.read() as tx:
            everything = tx.kernel.read_events(0, 100)
            positions = [e.position or 0 for e in everything]
            assert positions == sorted(positions)
            assert len(set(positions)) == 3
            assert positions[0] > 0
            first_page = tx.kernel.read_events(0, 2)
            assert [e.id for e in first_page] == [e.id for e in everything[:2]]
            rest = tx.kernel.read_events(first_page[-1].position or 0, 10)
            assert [e.id for e in rest] == [e.id for e in everything[2:]]
            only_t1 = tx.kernel.read_events(0, 100, tenant_id="t1")
            assert [e.tenant_id for e in only_t1] == ["t1", "t1"]

    def test_audit_records_and_events_wait_for_the_end_of_the_transaction(self) -> None:
        """What a unit of work reads back of its own audit records and events is the same
        on every adapter: nothing until its transaction ends, then everything."""
        storage = self.make_storage()
        ledger = LedgerService(
            storage, default_policy(), ManualClock(), SequentialIds(), type(self).store_factory
        )
        with storage.transaction() as tx:
            ledger.open_account(
                _ctx(), c.OpenAccount(code="waits", currency="PHP", type="asset"), uow=tx
            )
            assert list(tx.kernel.audit_records("contract")) == []
            assert tx.kernel.read_events(0, 10) == []
        with storage.read() as tx:
            assert [r.action for r in tx.kernel.audit_records("contract")] == [
                "ledger.open_account"
            ]
            assert [e.event_type for e in tx.kernel.read_events(0, 10)] == ["ledger.account.opened"]

    def test_config_versions(self) -> None:
        storage = self.make_storage()
        now = ManualClock().now()
        with storage.transaction() as tx:
            assert tx.kernel.config_latest("t", "s") is None
            for version in (1, 2):
                tx.kernel.config_append(
                    "t", ConfigVersion("s", version, {"v": version}, "me", now, "why")
                )
        with storage.read() as tx:
            latest = tx.kernel.config_latest("t", "s")
            assert latest is not None
            assert latest.version == 2
            assert latest.values == {"v": 2}
            assert [v.version for v in tx.kernel.config_history("t", "s")] == [1, 2]
            assert tx.kernel.config_latest("other", "s") is None

    # -- ledger, end to end ------------------------------------------------------------------
    def test_ledger_transcript_matches_reference(self) -> None:
        from finfactory.adapters.memory import MemoryStorage

        expected = ledger_transcript(MemoryStorage(), default_store_factory)
        actual = ledger_transcript(self.make_storage(), type(self).store_factory)
        assert len(actual) == len(expected)
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert got == want, f"transcript differs at step {index}"

    def test_conflicting_idempotency_key_is_refused(self) -> None:
        storage = self.make_storage()
        ledger = LedgerService(
            storage, default_policy(), ManualClock(), SequentialIds(), type(self).store_factory
        )
        ctx = _ctx()
        ledger.open_account(
            ctx, c.OpenAccount(code="a", currency="PHP", type="asset"), idempotency_key="same"
        )
        try:
            ledger.open_account(
                ctx, c.OpenAccount(code="b", currency="PHP", type="asset"), idempotency_key="same"
            )
        except IdempotencyConflict:
            pass
        else:  # pragma: no cover - the failure this test exists to catch
            raise AssertionError("a reused idempotency key with another request was accepted")
