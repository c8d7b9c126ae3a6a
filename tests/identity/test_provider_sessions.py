"""The provider session of ``start_kyc`` and the transaction around it.

The session is opened inside the command's transaction (after every check, so a refusal
never reaches the vendor). If the transaction then loses a race and the command runner runs
the handler again, the session opened the first time is reused; if the command fails for
good, the session is cancelled at the provider (when the adapter can cancel)."""

from __future__ import annotations

import pytest

from finfactory.kernel.authz import default_policy
from finfactory.kernel.errors import IntegrityViolation
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.primitives.identity import (
    IdentityService,
    IdentityStore,
    KycCase,
    KycInProgress,
    KycStatus,
    StartKyc,
)
from finfactory.primitives.identity.stores import default_store_factory
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.kyc import FakeKycProvider, fixed_keyring
from tests.identity.conftest import ctx, event_types, new_customer


class FailingCaseWrites:
    """An identity store whose ``add_case`` fails the first ``times`` calls, as a write
    that loses a race to a concurrent transaction does."""

    def __init__(self, times: int) -> None:
        self.left = times

    def factory(self, uow: UnitOfWork) -> IdentityStore:
        store = default_store_factory(uow)
        outer = self

        class Store:
            def __getattr__(self, name: str) -> object:
                return getattr(store, name)

            def add_case(self, case: KycCase) -> None:
                if outer.left > 0:
                    outer.left -= 1
                    raise IntegrityViolation("simulated lost race")
                store.add_case(case)

        return Store()  # type: ignore[return-value]


def _service(
    storage: Storage, clock: ManualClock, ids: SequentialIds, failing: FailingCaseWrites
) -> tuple[IdentityService, FakeKycProvider]:
    provider = FakeKycProvider()
    service = IdentityService(
        storage,
        default_policy(),
        clock,
        ids,
        fixed_keyring(1),
        provider,
        store_factory=failing.factory,
    )
    return service, provider


def test_a_retried_transaction_reuses_the_session_it_opened(
    storage: Storage, clock: ManualClock, ids: SequentialIds
) -> None:
    identity, provider = _service(storage, clock, ids, FailingCaseWrites(times=1))
    customer = new_customer(identity)
    kyc = identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    assert kyc.status is KycStatus.STARTED
    # One vendor session for one call, and it is the one the stored attempt points to.
    assert len(provider.sessions) == 1
    assert provider.sessions[0].request.kyc_id == kyc.id
    assert provider.cancelled == []
    result = identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    assert result.kyc.id == kyc.id


def test_a_command_that_fails_for_good_cancels_its_session(
    storage: Storage, clock: ManualClock, ids: SequentialIds
) -> None:
    identity, provider = _service(storage, clock, ids, FailingCaseWrites(times=10))
    customer = new_customer(identity)
    before = event_types(storage)
    with pytest.raises(IntegrityViolation):
        identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    assert len(provider.sessions) == 1
    assert provider.cancelled == [provider.sessions[0].reference]
    assert event_types(storage) == before
    assert identity.list_kyc(ctx(), customer.id) == []


def test_a_refusal_never_reaches_the_provider(
    identity: IdentityService, provider: FakeKycProvider
) -> None:
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    with pytest.raises(KycInProgress):
        identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="full"))
    assert len(provider.sessions) == 1
    assert provider.cancelled == []


def test_a_failure_inside_the_callers_transaction_cancels_the_session(
    storage: Storage, clock: ManualClock, ids: SequentialIds
) -> None:
    identity, provider = _service(storage, clock, ids, FailingCaseWrites(times=1))
    customer = new_customer(identity)
    with storage.transaction() as uow:
        # In a caller's transaction the runner does not retry: the failure is the caller's.
        with pytest.raises(IntegrityViolation):
            identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"), uow=uow)
    assert provider.cancelled == [provider.sessions[0].reference]
