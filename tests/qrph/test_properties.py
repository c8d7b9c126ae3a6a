"""Model-based test of QR Ph payments.

Hypothesis interleaves QR generation, payments from the switch and on-us, held-back
(late, out-of-order) and duplicate notifications, refusals by the settlement and the clock
moving on. A small model predicts each payment's outcome; after every step:

* each dynamic QR code is confirmed at most once,
* the settlement credited exactly the confirmed payments (count and total),
* every received payment ended confirmed or failed, with one received event and one
  outcome event each,
* a repeated notification returned the first result and changed nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.errors import DomainError
from finfactory.kernel.money import Money, from_minor
from finfactory.kernel.ports import Storage
from finfactory.primitives.qrph import (
    FailureReason,
    Initiation,
    PaymentStatus,
    PaymentView,
    PayQr,
    QrView,
)
from finfactory.testing import MemoryStorage
from tests.conftest import truncate_all
from tests.qrph.conftest import QrEnv, actor_ctx, dynamic_qr, make_env, static_qr

MERCHANTS = ("merchant-1", "merchant-2")
MAX_MINOR = 5_000_000  # QrPhSettings.max_amount's default, 50,000.00


class Refused(DomainError):
    code = "test_qrph.refused"


def php_minor(minor: int) -> Money:
    return from_minor(minor, "PHP")


class QrMachine(RuleBasedStateMachine):
    qrs = Bundle("qrs")
    references = Bundle("references")

    def make_storage(self) -> Storage:
        raise NotImplementedError

    @initialize()
    def start(self) -> None:
        self.env: QrEnv = make_env(self.make_storage())
        self.paid_dynamic: set[str] = set()  # the model: dynamic QR codes confirmed
        self.results: dict[str, PaymentView] = {}  # first result of each network reference
        self.held: list[tuple[str, QrView, int]] = []
        self.refusing = False
        self.on_us = 0

    def now(self) -> datetime:
        return self.env.clock.now()

    # -- QR codes ---------------------------------------------------------------------------
    @rule(
        target=qrs,
        merchant=st.sampled_from(MERCHANTS),
        minor=st.integers(1, 20_000),
        ttl=st.integers(1, 600),
    )
    def generate_dynamic(self, merchant: str, minor: int, ttl: int) -> QrView:
        return self.env.service.generate_dynamic_qr(
            self.env.ctx, dynamic_qr(php_minor(minor), merchant, expires_in_seconds=ttl)
        )

    @rule(target=qrs, merchant=st.sampled_from(MERCHANTS))
    def generate_static(self, merchant: str) -> QrView:
        return self.env.service.generate_static_qr(self.env.ctx, static_qr(merchant))

    # -- payments ---------------------------------------------------------------------------
    def _amount(self, qr: QrView, choice: int, other: int) -> int:
        if qr.amount is not None and choice < 3:
            return int(qr.amount.amount * 100)
        return other

    def _expect(self, qr: QrView, minor: int) -> tuple[PaymentStatus, FailureReason | None]:
        if qr.initiation is Initiation.DYNAMIC:
            assert qr.expires_at is not None
            assert qr.amount is not None
            if qr.id in self.paid_dynamic:
                return PaymentStatus.FAILED, FailureReason.ALREADY_PAID
            if self.now() >= qr.expires_at:
                return PaymentStatus.FAILED, FailureReason.EXPIRED
            if minor != int(qr.amount.amount * 100):
                return PaymentStatus.FAILED, FailureReason.AMOUNT_MISMATCH
        elif minor > MAX_MINOR:
            return PaymentStatus.FAILED, FailureReason.AMOUNT_MISMATCH
        if self.refusing:
            return PaymentStatus.FAILED, FailureReason.REJECTED
        return PaymentStatus.CONFIRMED, None

    def _check(self, qr: QrView, minor: int, view: PaymentView) -> str:
        assert (view.status, view.failure_reason) == self._expect(qr, minor)
        if view.status is PaymentStatus.CONFIRMED and qr.initiation is Initiation.DYNAMIC:
            self.paid_dynamic.add(qr.id)
        assert view.network_reference not in self.results
        self.results[view.network_reference] = view
        return view.network_reference

    @rule(
        target=references,
        qr=qrs,
        choice=st.integers(0, 4),
        other=st.integers(1, MAX_MINOR + 100),
    )
    def switch_pays(self, qr: QrView, choice: int, other: int) -> str:
        minor = self._amount(qr, choice, other)
        return self._check(qr, minor, self.env.switch.pay(qr.payload, php_minor(minor)))

    @rule(target=references, qr=qrs, other=st.integers(1, MAX_MINOR + 100))
    def wallet_pays(self, qr: QrView, other: int) -> str:
        self.on_us += 1
        given = None if qr.amount is not None else php_minor(other)
        command = PayQr(payload=qr.payload, payer_wallet_id=f"payer-{self.on_us}", amount=given)
        view = self.env.service.pay_qr(self.env.ctx, command)
        return self._check(qr, other if given else int(view.amount.amount * 100), view)

    @rule(qr=qrs, choice=st.integers(0, 4), other=st.integers(1, 20_000))
    def switch_holds_back(self, qr: QrView, choice: int, other: int) -> None:
        minor = self._amount(qr, choice, other)
        reference = self.env.switch.send_later(qr.payload, php_minor(minor))
        self.held.append((reference, qr, minor))

    @precondition(lambda self: bool(self.held))
    @rule(target=references, pick=st.integers(0, 1000))
    def switch_delivers_late(self, pick: int) -> str:
        reference, qr, minor = self.held.pop(pick % len(self.held))
        return self._check(qr, minor, self.env.switch.deliver(reference))

    @rule(reference=references)
    def switch_repeats(self, reference: str) -> None:
        if reference.startswith("onus-"):
            return  # on-us payments have no switch notification to repeat
        before = self._snapshot()
        assert self.env.switch.redeliver(reference) == self.results[reference]
        assert self._snapshot() == before

    # -- the world --------------------------------------------------------------------------
    @rule(seconds=st.integers(0, 400))
    def time_passes(self, seconds: int) -> None:
        self.env.clock.advance(timedelta(seconds=seconds))

    @rule(refuse=st.booleans())
    def settlement_refuses(self, refuse: bool) -> None:
        self.refusing = refuse
        self.env.settlement.fail_with(Refused("merchant cannot be credited") if refuse else None)

    # -- invariants -------------------------------------------------------------------------
    def _snapshot(self) -> tuple[Any, ...]:
        payments = self.env.service.list_payments(actor_ctx("auditor"), limit=1000).payments
        return (payments, self.env.event_types(), len(self.env.settlement.credits))

    @invariant()
    def outcomes_add_up(self) -> None:
        if not hasattr(self, "env"):
            return
        payments, events, _ = self._snapshot()
        assert all(p.status is not PaymentStatus.RECEIVED for p in payments)
        confirmed = [p for p in payments if p.status is PaymentStatus.CONFIRMED]
        dynamic = self._dynamic_qr_ids()
        per_dynamic = Counter(p.qr_id for p in confirmed if p.qr_id in dynamic)
        assert all(n == 1 for n in per_dynamic.values())
        credits = self.env.settlement.credits
        assert len(credits) == len(confirmed)
        credited = self.env.settlement.total().get("PHP", php_minor(0))
        assert credited == sum((p.amount for p in confirmed), php_minor(0))
        assert {c.reference for c in credits} == {f"qrph:{p.id}" for p in confirmed}
        counts = Counter(events)
        assert counts["qr.payment.received"] == len(payments)
        assert counts["qr.payment.confirmed"] == len(confirmed)
        assert counts["qr.payment.failed"] == len(payments) - len(confirmed)
        assert {p.network_reference for p in payments} == set(self.results)

    def _dynamic_qr_ids(self) -> set[str]:
        with self.env.storage.read() as uow:
            events = uow.kernel.read_events(0, 10_000, "shop-a")
        return {
            e.payload["qr_id"]
            for e in events
            if e.event_type == "qr.generated" and e.payload["initiation"] == "dynamic"
        }


class MemoryQrMachine(QrMachine):
    def make_storage(self) -> Storage:
        return MemoryStorage()


class SqliteQrMachine(QrMachine):
    def make_storage(self) -> Storage:
        self.directory = Path(tempfile.mkdtemp(prefix="ff-qrph-"))
        self.engine = create_engine(f"sqlite:///{self.directory / 'qrph.db'}")
        migrate(self.engine)
        return SqlStorage(self.engine)

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.engine.dispose()
            shutil.rmtree(self.directory, ignore_errors=True)


class PostgresQrMachine(QrMachine):
    engine: ClassVar[sa.Engine]

    def make_storage(self) -> Storage:
        truncate_all(self.engine)
        return SqlStorage(self.engine)


def _settings(examples: int, steps: int) -> Any:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_payments_match_model_in_memory() -> None:
    run_state_machine_as_test(MemoryQrMachine, settings=_settings(150, 40))


def test_payments_match_model_on_sqlite() -> None:
    run_state_machine_as_test(SqliteQrMachine, settings=_settings(30, 30))


def test_payments_match_model_on_postgres(pg_engine: sa.Engine) -> None:
    PostgresQrMachine.engine = pg_engine
    run_state_machine_as_test(PostgresQrMachine, settings=_settings(15, 30))
