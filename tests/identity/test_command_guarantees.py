"""What every identity command guarantees: validated (``identity.invalid_input``, nothing
written), authorized (a denial is audited and writes nothing else), idempotent under a key,
and tenant-isolated. Also the read API the wallet primitive relies on: ``verified_tier``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from finfactory.kernel.audit import Outcome
from finfactory.kernel.errors import IdempotencyConflict, NotFound, PermissionDenied
from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    CreateCustomer,
    CustomerNotFound,
    DuplicateDocument,
    ExpireDue,
    FlagRisk,
    IdentityService,
    InvalidIdentityInput,
    KycNotFound,
    RotateKeys,
    StartKyc,
    UnknownProviderReference,
    UpdateContact,
)
from finfactory.testing import ManualClock
from finfactory.testing.kyc import FakeKycProvider
from tests.identity.conftest import (
    OTHER,
    PII,
    audit,
    ctx,
    customer_command,
    event_types,
    new_customer,
    other_document,
    state,
)

NOBODY = frozenset({"ledger.operator"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("given_name", "   "),
        ("family_name", "x" * 201),
        ("email", "not-an-email"),
        ("phone", "12ab"),
        ("birth_date", "1990-02-30"),
        ("document_refs", ["ok"] * 21),
        ("unexpected", 1),
    ],
)
def test_malformed_input_is_refused_with_an_identity_code(field: str, value: Any) -> None:
    data: dict[str, Any] = {"given_name": "A", "family_name": "B", "birth_date": "1990-01-01"}
    data[field] = value
    with pytest.raises(InvalidIdentityInput) as err:
        CreateCustomer(**data)
    assert err.value.code == "identity.invalid_input"
    assert err.value.field.startswith(field)


def test_nested_and_other_commands_use_the_identity_code() -> None:
    with pytest.raises(InvalidIdentityInput) as err:
        other_document("no/slashes")
    assert err.value.field == "number"
    with pytest.raises(InvalidIdentityInput) as nested:
        CreateCustomer.parse(
            {
                "given_name": "A",
                "family_name": "B",
                "birth_date": "1990-01-01",
                "id_document": {"type": "passport", "number": "X1", "issuing_country": "ph"},
            }
        )
    assert nested.value.field == "id_document.issuing_country"
    for build in (
        lambda: StartKyc(customer_id="c", tier="Not A Tier"),
        lambda: ExpireDue(limit=0),
        lambda: FlagRisk(customer_id="c", reason="because"),
        lambda: RotateKeys(limit="10"),
    ):
        with pytest.raises(InvalidIdentityInput):
            build()


def test_a_malformed_lookup_names_the_field_that_is_wrong(identity: IdentityService) -> None:
    with pytest.raises(InvalidIdentityInput) as phone:
        identity.find_customers_by_contact(ctx(), email=PII["email"], phone="12ab")
    assert phone.value.field == "phone"
    with pytest.raises(InvalidIdentityInput) as email:
        identity.find_customers_by_contact(ctx(), email="nope", phone=PII["phone"])
    assert email.value.field == "email"


def test_birth_date_in_the_future_writes_nothing(
    identity: IdentityService, storage: Storage, clock: ManualClock
) -> None:
    before = state(storage)
    tomorrow = clock.now().date() + timedelta(days=1)
    with pytest.raises(InvalidIdentityInput) as err:
        identity.create_customer(ctx(), customer_command(birth_date=tomorrow))
    assert err.value.field == "birth_date"
    assert state(storage) == before
    assert audit(storage) == []


def test_duplicate_document_within_a_tenant_is_refused(
    identity: IdentityService, storage: Storage
) -> None:
    first = new_customer(identity)
    before = state(storage)
    # The same document written differently (case, separators) is the same document.
    same = other_document("xk 774-1029", kind="passport")
    with pytest.raises(DuplicateDocument) as err:
        new_customer(identity, given_name="Someone", id_document=same)
    assert err.value.code == "identity.duplicate_document"
    assert PII["document_number"] not in err.value.message
    assert state(storage) == before
    assert audit(storage)[-1].outcome is Outcome.REJECTED
    # Nor can another customer take it over at KYC time.
    second = new_customer(identity, given_name="Other", id_document=other_document("Q1"))
    with pytest.raises(DuplicateDocument):
        identity.start_kyc(ctx(), StartKyc(customer_id=second.id, tier="basic", id_document=same))
    assert identity.find_customer_by_document(ctx(), "passport", "PH", "XK7741029").id == first.id
    # Another tenant's customer may hold the same document.
    new_customer(identity, ctx(OTHER))


COMMANDS = {
    "create_customer": lambda svc, cid: svc.create_customer(ctx(roles=NOBODY), customer_command()),
    "start_kyc": lambda svc, cid: svc.start_kyc(
        ctx(roles=NOBODY), StartKyc(customer_id=cid, tier="basic")
    ),
    "handle_provider_callback": None,  # built in the test (needs the provider)
    "expire_due": lambda svc, cid: svc.expire_due(ctx(roles=NOBODY)),
    "flag_risk": lambda svc, cid: svc.flag_risk(
        ctx(roles=NOBODY), FlagRisk(customer_id=cid, reason="other")
    ),
    "rotate_keys": lambda svc, cid: svc.rotate_keys(ctx(roles=NOBODY)),
    "update_contact": lambda svc, cid: svc.update_contact(
        ctx(roles=NOBODY), UpdateContact(customer_id=cid, email="new@example.com")
    ),
    "get_customer": lambda svc, cid: svc.get_customer(ctx(roles=NOBODY), cid),
    "verified_tier": lambda svc, cid: svc.verified_tier(ctx(roles=NOBODY), cid),
}
PERMISSIONS = {
    "create_customer": "identity.customer.create",
    "start_kyc": "identity.kyc.start",
    "handle_provider_callback": "identity.kyc.callback",
    "expire_due": "identity.kyc.expire",
    "flag_risk": "identity.risk.flag",
    "rotate_keys": "identity.pii.rotate",
    "update_contact": "identity.customer.update",
    "get_customer": "identity.read",
    "verified_tier": "identity.read",
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_denied_commands_are_audited_and_write_nothing(
    name: str, identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    before = state(storage)
    call = COMMANDS[name]
    with pytest.raises(PermissionDenied) as err:
        if call is None:
            identity.handle_provider_callback(ctx(roles=NOBODY), provider.callback(customer.id))
        else:
            call(identity, customer.id)
    assert err.value.details["permission"] == PERMISSIONS[name]
    assert state(storage) == before
    last = audit(storage)[-1]
    assert (last.outcome, last.actor_id) == (Outcome.DENIED, "ops-1")


def test_idempotent_replay_and_conflict(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    first = identity.create_customer(ctx(), customer_command(), idempotency_key="c-1")
    replay = identity.create_customer(ctx(), customer_command(), idempotency_key="c-1")
    assert replay == first
    assert event_types(storage) == ["customer.created"]
    with pytest.raises(IdempotencyConflict):
        identity.create_customer(
            ctx(), customer_command(given_name="Different"), idempotency_key="c-1"
        )

    kyc = identity.start_kyc(
        ctx(), StartKyc(customer_id=first.id, tier="basic"), idempotency_key="k-1"
    )
    assert (
        identity.start_kyc(
            ctx(), StartKyc(customer_id=first.id, tier="basic"), idempotency_key="k-1"
        )
        == kyc
    )
    assert len(provider.sessions) == 1  # the provider was called once
    callback = provider.callback(first.id)
    done = identity.handle_provider_callback(ctx(), callback, idempotency_key="cb-1")
    assert identity.handle_provider_callback(ctx(), callback, idempotency_key="cb-1") == done
    with pytest.raises(IdempotencyConflict):
        identity.start_kyc(
            ctx(), StartKyc(customer_id=first.id, tier="full"), idempotency_key="k-1"
        )
    assert event_types(storage) == ["customer.created", "kyc.started", "kyc.verified"]
    outcomes = [r.outcome for r in audit(storage) if r.action != "identity.pii.read"]
    assert outcomes.count(Outcome.REPLAYED) == 3
    assert outcomes.count(Outcome.CONFLICT) == 2

    # A rejection replays as the same rejection.
    with pytest.raises(CustomerNotFound):
        identity.start_kyc(ctx(), StartKyc(customer_id="nope", tier="basic"), idempotency_key="k-2")
    with pytest.raises(CustomerNotFound):
        identity.start_kyc(ctx(), StartKyc(customer_id="nope", tier="basic"), idempotency_key="k-2")


def test_tenants_are_isolated(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    kyc = identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    callback = provider.callback(customer.id)
    identity.handle_provider_callback(ctx(), callback)
    intruder = ctx(OTHER)
    before = state(storage)
    attempts: list[Callable[[], object]] = [
        lambda: identity.get_customer(intruder, customer.id),
        lambda: identity.get_kyc(intruder, kyc.id),
        lambda: identity.list_kyc(intruder, customer.id),
        lambda: identity.list_risk_flags(intruder, customer.id),
        lambda: identity.find_customer_by_document(intruder, "passport", "PH", "XK7741029"),
        lambda: identity.start_kyc(intruder, StartKyc(customer_id=customer.id, tier="full")),
        lambda: identity.flag_risk(intruder, FlagRisk(customer_id=customer.id, reason="other")),
        lambda: identity.handle_provider_callback(
            intruder, callback.model_copy(update={"callback_id": "x"})
        ),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound) as err:
            attempt()
        assert isinstance(err.value, CustomerNotFound | KycNotFound | UnknownProviderReference)
    assert identity.find_customers_by_contact(intruder, email=PII["email"]) == []
    assert identity.verified_tier(intruder, customer.id) is None
    assert identity.expire_due(intruder).kyc_ids == []
    assert identity.rotate_keys(intruder).rotated == 0
    assert event_types(storage, OTHER) == []
    assert state(storage) == before  # only audit records were added
    assert identity.verified_tier(ctx(), customer.id) == "basic"


def test_verified_tier_for_the_wallet(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    identity.handle_provider_callback(ctx(), provider.callback(customer.id))
    wallet = ctx(roles=frozenset({"wallet.service"}), actor="wallet")
    assert identity.verified_tier(wallet, customer.id) == "basic"
    assert identity.verified_tier(wallet, "unknown-customer") is None
    # Inside the caller's transaction (how the wallet reads it while posting).
    with storage.transaction() as uow:
        assert identity.verified_tier(wallet, customer.id, uow=uow) == "basic"
    with pytest.raises(PermissionDenied):
        identity.verified_tier(ctx(roles=frozenset({"qrph.operator"})), customer.id)


def test_a_masked_customer_view_for_service_callers(identity: IdentityService) -> None:
    customer = new_customer(identity)
    view = identity.get_customer(ctx(roles=frozenset({"wallet.service"})), customer.id)
    assert view.pii == "masked"
    assert view.birth_date is None
    assert view.given_name == "M***"
