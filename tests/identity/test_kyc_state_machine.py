"""Property test of the KYC state machine.

Hypothesis drives random sequences of commands (create customers, start attempts at either
tier, provider callbacks of every kind for the latest or an older session, duplicates, clock
moves, the expiry scheduler, manual risk flags) against the real service, on memory and on a
fresh SQLite file. After every step it reads the new outbox events and checks that:

* every ``kyc.*`` event is a legal edge of the state machine (started -> verified | rejected |
  expired, verified -> expired), with the right kind of expiry for where it came from;
* events are the state changes: each case's stored status is exactly what its events say;
* each customer's events are numbered 1, 2, 3... with no gap;
* a customer has at most one open attempt and at most one current verification, and
  ``verified_tier`` is that verification's tier while its validity lasts, else None;
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
    TRANSITIONS,
    FlagRisk,
    IdentityService,
    KycStatus,
    RejectionKind,
    StartKyc,
)
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds
from finfactory.testing.kyc import FakeKycProvider, FakeVerdict, fixed_keyring
from tests.identity.conftest import ctx, customer_command, other_document

LEVELS = {"basic": 1, "full": 2}  # the default tiers' ranks
VERDICTS = st.sampled_from(
    [
        FakeVerdict.approve(),
        FakeVerdict.approve(),
        FakeVerdict.approve(document_expires_on=date(2026, 2, 1)),
        FakeVerdict.reject(),
        FakeVerdict.reject(final=True),
        FakeVerdict.review(),
        FakeVerdict.pending(),
        FakeVerdict.timeout(),
        FakeVerdict.watchlist(),
    ]
)
CLOCK_STEPS = st.sampled_from(
    [timedelta(minutes=5), timedelta(hours=23), timedelta(days=2), timedelta(days=400)]
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

    def _document(self, expires_in_days: int) -> Any:
        self.documents += 1
        expires = self.clock.now().date() + timedelta(days=expires_in_days)
        return other_document(f"D{self.documents}", expires)

    # A few customers, so that each one lives through many steps of its lifecycle.
    @precondition(lambda self: len(self.customers) < 3)
    @rule(expires_in_days=st.sampled_from([30, 3000]))
    def create_customer(self, expires_in_days: int) -> None:
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
        if any(
            k.status is KycStatus.STARTED and (k.in_review or k.session_expires_at > now)
            for k in cases
        ):
            return "identity.kyc_in_progress"
        if any(
            k.status is KycStatus.VERIFIED
            and k.superseded_by is None
            and (k.valid_until is None or k.valid_until > now)
            and LEVELS[k.tier] >= LEVELS[tier]
            for k in cases
        ):
            return "identity.already_verified"
        return None

    @precondition(lambda self: self.customers)
    @rule(data=st.data(), tier=st.sampled_from(["basic", "full"]), new_document=st.booleans())
    def start(self, data: st.DataObject, tier: str, new_document: bool) -> None:
        customer = data.draw(st.sampled_from(self.customers))
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

    @precondition(lambda self: self.provider.sessions)
    @rule(
        data=st.data(),
        verdict=VERDICTS,
        latest=st.sampled_from([True, True, True, False]),
        repeat=st.booleans(),
    )
    def callback(
        self, data: st.DataObject, verdict: FakeVerdict, latest: bool, repeat: bool
    ) -> None:
        if latest:
            session = self.provider.sessions[-1]
        else:
            session = data.draw(st.sampled_from(self.provider.sessions))
        callback = self.provider.callback(reference=session.reference, verdict=verdict)
        first = self.identity.handle_provider_callback(ctx(), callback)
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
            if not envelope.event_type.startswith("kyc."):
                continue
            kyc_id, to = envelope.payload["kyc_id"], KycStatus(envelope.payload["status"])
            before = self.status.get(kyc_id)
            if envelope.event_type == "kyc.started":
                assert before is None
                assert to is KycStatus.STARTED
            else:
                assert before is not None
                assert to in TRANSITIONS[before], (before, to)
            if envelope.event_type == "kyc.expired":
                expected = "session" if before is KycStatus.STARTED else "validity"
                assert envelope.payload["expiry"] == expected
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
            current = [
                k for k in cases if k.status is KycStatus.VERIFIED and k.superseded_by is None
            ]
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
