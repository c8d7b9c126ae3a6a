"""Concurrent identity commands on PostgreSQL: a callback delivered several times at once is
applied once; one identity document cannot end up with two customers; the scheduler and a
callback racing on one attempt leave one legal outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.authz import default_policy
from finfactory.kernel.errors import FinFactoryError
from finfactory.primitives.identity import (
    CallbackEffect,
    DuplicateDocument,
    IdentityService,
    KycStatus,
    StartKyc,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.kyc import FakeKycProvider, FakeVerdict, fixed_keyring
from tests.identity.conftest import ctx, customer_command, event_types, new_customer

pytestmark = pytest.mark.postgres
THREADS = 6
JOIN_TIMEOUT = 60.0  # only to detect a hang; never asserted as a duration


def _run_together(work: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except FinFactoryError as err:
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive(), "a thread hung"
    return results


@pytest.fixture
def pg_identity(pg_clean: sa.Engine) -> tuple[IdentityService, FakeKycProvider, SqlStorage]:
    storage = SqlStorage(pg_clean)
    provider = FakeKycProvider()
    service = IdentityService(
        storage, default_policy(), ManualClock(), SequentialIds(), fixed_keyring(1), provider
    )
    return service, provider, storage


def test_concurrent_duplicate_callbacks_apply_once(
    pg_identity: tuple[IdentityService, FakeKycProvider, SqlStorage],
) -> None:
    identity, provider, storage = pg_identity
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    callback = provider.callback(customer.id)
    results = _run_together(lambda _: identity.handle_provider_callback(ctx(), callback))
    effects = sorted(str(getattr(r, "effect", r)) for r in results)
    assert effects == ["applied"] + ["duplicate"] * (THREADS - 1)
    assert event_types(storage).count("kyc.verified") == 1


def test_one_document_one_customer_under_concurrency(
    pg_identity: tuple[IdentityService, FakeKycProvider, SqlStorage],
) -> None:
    identity, _, storage = pg_identity
    results = _run_together(lambda _: identity.create_customer(ctx(), customer_command()))
    refused = [r for r in results if isinstance(r, DuplicateDocument)]
    assert len(refused) == THREADS - 1
    assert event_types(storage).count("customer.created") == 1


def test_scheduler_and_late_approval_race(
    pg_identity: tuple[IdentityService, FakeKycProvider, SqlStorage],
) -> None:
    identity, provider, storage = pg_identity
    assert isinstance(identity.clock, ManualClock)
    customer = new_customer(identity)
    provider.script(FakeVerdict.approve(), customer_id=customer.id)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    identity.clock.advance(timedelta(days=2))
    callback = provider.callback(customer.id)

    def work(i: int) -> object:
        if i % 2:
            return identity.expire_due(ctx())
        return identity.handle_provider_callback(ctx(), callback)

    results = _run_together(work)
    assert not [r for r in results if isinstance(r, FinFactoryError)]
    effects = {r.effect for r in results if hasattr(r, "effect")}
    assert effects <= {CallbackEffect.IGNORED, CallbackEffect.DUPLICATE}
    assert event_types(storage).count("kyc.expired") == 1
    assert identity.list_kyc(ctx(), customer.id)[0].status is KycStatus.EXPIRED
