"""Property test of the KYC state machine.

Hypothesis drives random sequences of commands (create customers, start attempts at either
tier, some answered at once, upgrades from basic to full, provider callbacks of every kind for
the latest or an older session, with or without a delivery id, duplicates, clock moves, the
expiry scheduler, manual risk flags) against the real service, on memory and on a fresh SQLite
file. After every step it reads the new outbox events and checks that:

* every ``kyc.*`` event is a legal edge of the state machine (started -> verified | rejected |
  expired, verified -> expired; the edges are written out here, not taken from the code),
  with the right kind of expiry for where it came from, and a "superseded" expiry exactly
  when the next event is the verification that replaces it;
* events are the state changes: each case's stored status is exactly what its events say;
* each customer's events are numbered 1, 2, 3... with no gap;
* a customer has at most one open attempt and at most one verified attempt, and
  ``verified_tier`` is that verification's tier while its validity lasts, else None;
* an open attempt's deadline is its session timeout, or, once the provider started a manual
  review, the later of that and the review timeout counted from the review's start;
* a customer is blocked exactly when one of its attempts was rejected for good;
* ``start_kyc`` refuses exactly when the customer's attempts say it must (blocked, an attempt
  still open, or a current verification at the same or a higher tier).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.authz import default_policy
from finfactory.kernel.errors import DomainError
from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    FlagRisk,
    IdentityService,
    KycStatus,
    KycView,
    ProviderOutcome,
    RejectionKind,
    StartKyc,
)
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds
from finfactory.testing.kyc import FakeKycProvider, FakeVerdict, fixed_keyring
from tests.identity.conftest import ctx, customer_command, other_document

LEVELS = {"basic": 1, "full": 2}  # the default tiers' ranks
SESSION_TIMEOUT = timedelta(minutes=1440)  # the default tiers' timeouts
REVIEW_TIMEOUT = timedelta(days=14)
# The KYC state machine as the issue states it (kept apart from the code's own table, so a
# wrong edge added there is caught here).
EDGES = {
    KycStatus.STARTED: {KycStatus.VERIFIED, KycStatus.REJECTED, KycStatus.EXPIRED},
    KycStatus.VERIFIED: {KycStatus.EXPIRED},
    KycStatus.REJECTED: set(),
    KycStatus.EXPIRED: set(),
}
VERDICTS = st.sampled_from(
    [
        FakeVerdict.approve(),
        FakeVerdict.approve(),
        FakeVerdict.approve(document_expires_on=date(2026, 2, 1)),
        FakeVerdict.reject(),
        FakeVerdict.reject(final=True),
        FakeVerdict.review(),
        FakeVerdict.watchlist(ProviderOutcome.REVIEW),
        FakeVerdict.pending(),
        FakeVerdict.timeout(),
        FakeVerdict.watchlist(),
    ]
)
CLOCK_STEPS = st.sampled_from(
    [
        timedelta(minutes=5),
        timedelta(hours=23),
        timedelta(days=2),
        timedelta(days=15),
        timedelta(days=400),
    ]
)


class KycMachine(RuleBasedStateMachine):
    def make_storage(self) -> Storage:
        raise NotImplementedError

    @initialize()
    def setup(self) -> None:
        self.storage = self.make_storage()
        self.clock = ManualClock()
        self.provider = FakeKycProvider()
        self.identity = IdentityService(
            self.storage,
            default_policy(),
            self.clock,
            SequentialIds(),
            fixed_keyring(1),
            self.provider,
        )
        self.customers: list[str] = []
        self.documents = 0
        self.position = 0
        self.status: dict[str, KycStatus] = {}  # what the events say, per KYC case
        self.sequence: dict[str, int] = {}  # last event number, per customer
        self.superseded: dict[str, str] = {}  # customer -> case whose replacement is next
        self.review_started: dict[str, Any] = {}  # KYC case -> when its review began
        # Two customers from the start (one whose document runs out soon), so that runs
        # spend their steps on lifecycles rather than on setting up.
        self._create(3000)
        self._create(30)

    def _document(self, expires_in_days: int) -> Any:
        self.documents += 1
        expires = self.clock.now().date() + timedelta(days=expires_in_days)
        return other_document(f"D{self.documents}", expires)

    # A few customers, so that each one lives through many steps of its lifecycle.
    @precondition(lambda self: len(self.customers) < 3)
    @rule(expires_in_days=st.sampled_from([30, 3000]))
    def create_customer(self, expires_in_days: int) -> None:
        self._create(expires_in_days)

    def _create(self, expires_in_days: int) -> None:
        view = self.identity.create_customer(
            ctx(), customer_command(id_document=self._document(expires_in_days))
        )
        self.customers.append(view.id)

    def _expected_refusal(self, customer: str, tier: str) -> str | None:
        """The refusal ``start_kyc`` must give, predicted from the customer's attempts."""
        now = self.clock.now()
        cases = self.identity.list_kyc(ctx(), customer)
        if any(k.rejection is RejectionKind.FINAL for k in cases):
            return "identity.kyc_rejected_final"
        if any(k.status is KycStatus.STARTED and self._deadline(k) > now for k in cases):
            return "identity.kyc_in_progress"
        if any(
            k.status is KycStatus.VERIFIED
            and (k.valid_until is None or k.valid_until > now)
            and LEVELS[k.tier] >= LEVELS[tier]
            for k in cases
        ):
            return "identity.already_verified"
        return None

    def _deadline(self, case: KycView) -> Any:
        """When an open attempt must expire, from the rules (not from the stored value)."""
        deadline = case.started_at + SESSION_TIMEOUT
        review = self.review_started.get(case.id)
        return deadline if review is None else max(deadline, review + REVIEW_TIMEOUT)

    @precondition(lambda self: self.customers)
    @rule(
        data=st.data(),
        tier=st.sampled_from(["basic", "full"]),
        new_document=st.booleans(),
        answer=st.one_of(st.none(), VERDICTS),
    )
    def start(
        self, data: st.DataObject, tier: str, new_document: bool, answer: FakeVerdict | None
    ) -> None:
        """Start an attempt; with ``answer``, the provider answers it at once."""
        self._start(data.draw(st.sampled_from(self.customers)), tier, new_document, answer)

    @rule(data=st.data())
    def upgrade(self, data: st.DataObject) -> None:
        """A customer holding basic goes for full, and the provider approves."""
        holding = [c for c in self.customers if self.identity.verified_tier(ctx(), c) == "basic"]
        if holding:
            customer = data.draw(st.sampled_from(holding))
            self._start(customer, "full", True, FakeVerdict.approve())

    def _start(
        self, customer: str, tier: str, new_document: bool, answer: FakeVerdict | None
    ) -> None:
        document = self._document(3000) if new_document else None
        expected = self._expected_refusal(customer, tier)
        refused: str | None = None
        try:
            self.identity.start_kyc(
                ctx(), StartKyc(customer_id=customer, tier=tier, id_document=document)
            )
        except DomainError as err:
            refused = err.code
        if expected is not None:
            assert refused == expected
        elif refused is not None:
            # An expired document is the only refusal the attempts alone do not predict.
            assert refused == "identity.document_expired"
            assert not new_document
        if refused is None and answer is not None:
            self._answer(self.provider.sessions[-1].reference, answer, repeat=False)

    @precondition(lambda self: self.provider.sessions)
    @rule(
        data=st.data(),
        verdict=VERDICTS,
        latest=st.sampled_from([True, True, True, False]),
        repeat=st.booleans(),
        delivery=st.sampled_from([None, None, "d1", "d2"]),
    )
    def callback(
        self,
        data: st.DataObject,
        verdict: FakeVerdict,
        latest: bool,
        repeat: bool,
        delivery: str | None,
    ) -> None:
        """A provider callback; ``delivery`` is the provider's delivery id, if it sends one
        (two deliveries of equal content are then two callbacks)."""
        if latest:
            session = self.provider.sessions[-1]
        else:
            session = data.draw(st.sampled_from(self.provider.sessions))
        self._answer(session.reference, verdict, repeat, delivery)

    def _answer(
        self, reference: str, verdict: FakeVerdict, repeat: bool, delivery: str | None = None
    ) -> None:
        callback = self.provider.callback(
            reference=reference, verdict=verdict, callback_id=delivery
        )
        first = self.identity.handle_provider_callback(ctx(), callback)
        if first.kyc.in_review and first.kyc.status is KycStatus.STARTED:
            self.review_started.setdefault(first.kyc.id, self.clock.now())
        if repeat:
            again = self.identity.handle_provider_callback(ctx(), callback)
            assert again.effect == "duplicate"
            assert again.kyc == first.kyc

    @rule(step=CLOCK_STEPS)
    def advance(self, step: timedelta) -> None:
        self.clock.advance(step)

    @rule()
    def expire_due(self) -> None:
        self.identity.expire_due(ctx())
        # Nothing open is left past its deadline (a review's included).
        now = self.clock.now()
        for customer in self.customers:
            for case in self.identity.list_kyc(ctx(), customer):
                assert case.status is not KycStatus.STARTED or self._deadline(case) > now

    @precondition(lambda self: self.customers)
    @rule(data=st.data())
    def flag(self, data: st.DataObject) -> None:
        customer = data.draw(st.sampled_from(self.customers))
        self.identity.flag_risk(ctx(), FlagRisk(customer_id=customer, reason="manual_review"))

    @invariant()
    def events_are_legal_transitions(self) -> None:
        if not hasattr(self, "storage"):
            return
        with self.storage.read() as tx:
            new = tx.kernel.read_events(self.position, 10_000, tenant_id="tenant-a")
        for envelope in new:
            self.position = envelope.position or self.position
            customer = envelope.aggregate_id
            assert envelope.aggregate_sequence == self.sequence.get(customer, 0) + 1
            self.sequence[customer] = envelope.aggregate_sequence
            replaced = self.superseded.pop(customer, None)
            if replaced is not None:
                assert envelope.event_type == "kyc.verified"
                assert envelope.payload["supersedes_kyc_id"] == replaced
            if not envelope.event_type.startswith("kyc."):
                continue
            kyc_id, to = envelope.payload["kyc_id"], KycStatus(envelope.payload["status"])
            before = self.status.get(kyc_id)
            if envelope.event_type == "kyc.started":
                assert before is None
                assert to is KycStatus.STARTED
            else:
                assert before is not None
                assert to in EDGES[before], (before, to)
            if envelope.event_type == "kyc.expired":
                expiry = envelope.payload["expiry"]
                if before is KycStatus.STARTED:
                    assert expiry == "session"
                else:
                    assert expiry in ("validity", "superseded")
                if expiry == "superseded":
                    self.superseded[customer] = kyc_id
            if envelope.event_type == "kyc.verified":
                replaces = envelope.payload["supersedes_kyc_id"]
                assert replaces is None or replaced == replaces
            self.status[kyc_id] = to
            detail = envelope.payload.get("expiry") or envelope.payload.get("rejection") or ""
            event(f"{envelope.event_type} {detail}".strip())

    @invariant()
    def stored_state_matches_the_events(self) -> None:
        if not hasattr(self, "storage"):
            return
        now = self.clock.now()
        seen: set[str] = set()
        for customer in self.customers:
            cases = self.identity.list_kyc(ctx(), customer)
            seen.update(k.id for k in cases)
            for case in cases:
                assert case.status is self.status[case.id]
            assert sum(k.status is KycStatus.STARTED for k in cases) <= 1
            for case in cases:
                if case.status is KycStatus.STARTED:
                    assert case.in_review == (case.id in self.review_started)
                    assert case.session_expires_at == self._deadline(case)
            current = [k for k in cases if k.status is KycStatus.VERIFIED]
            assert len(current) <= 1
            holding = [k for k in current if k.valid_until is None or k.valid_until > now]
            expected = holding[0].tier if holding else None
            assert self.identity.verified_tier(ctx(), customer) == expected
            view = self.identity.get_customer(ctx(), customer)
            final = any(k.rejection is RejectionKind.FINAL for k in cases)
            assert view.kyc_blocked == final
            assert view.verified_tier == expected
        assert seen == set(self.status)


class MemoryKycMachine(KycMachine):
    def make_storage(self) -> Storage:
        return MemoryStorage()


class SqliteKycMachine(KycMachine):
    def make_storage(self) -> Storage:
        self.directory = Path(tempfile.mkdtemp(prefix="ff-kyc-"))
        self.engine = create_engine(f"sqlite:///{self.directory / 'kyc.db'}")
        migrate(self.engine)
        return SqlStorage(self.engine)

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.engine.dispose()
            shutil.rmtree(self.directory, ignore_errors=True)


def _settings(examples: int, steps: int) -> Any:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_kyc_state_machine_in_memory() -> None:
    run_state_machine_as_test(MemoryKycMachine, settings=_settings(150, 40))


def test_kyc_state_machine_on_sqlite() -> None:
    run_state_machine_as_test(SqliteKycMachine, settings=_settings(25, 30))
