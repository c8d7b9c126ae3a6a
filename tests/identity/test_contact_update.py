"""Updating a customer's contact details: re-encrypted, found by the new keyed hashes (and no
longer by the old ones), audited without personal data, idempotent, tenant-isolated."""

from __future__ import annotations

from typing import Any

import pytest

from finfactory.kernel.errors import IdempotencyConflict
from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    CustomerNotFound,
    IdentityService,
    InvalidIdentityInput,
    RotateKeys,
    UpdateContact,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.kyc import fixed_keyring
from tests.identity.conftest import (
    OTHER,
    PII,
    PII_STRINGS,
    audit,
    ctx,
    event_types,
    new_customer,
    raw_rows,
    state,
)

NEW_EMAIL = "m.villanueva.santos@example.com"
NEW_PHONE = "+63 918 777 0199"


def test_contact_details_change_and_lookups_follow(
    identity: IdentityService, storage: Storage
) -> None:
    customer = new_customer(identity)
    view = identity.update_contact(
        ctx(), UpdateContact(customer_id=customer.id, email=NEW_EMAIL.upper(), phone=NEW_PHONE)
    )
    assert (view.email, view.phone) == (NEW_EMAIL, "+639187770199")
    assert (view.given_name, view.id_document) == (customer.given_name, customer.id_document)
    assert identity.find_customers_by_contact(ctx(), email=PII["email"]) == []
    assert identity.find_customers_by_contact(ctx(), phone=PII["phone"]) == []
    assert [c.id for c in identity.find_customers_by_contact(ctx(), email=NEW_EMAIL)] == [
        customer.id
    ]
    assert [c.id for c in identity.find_customers_by_contact(ctx(), phone=NEW_PHONE)] == [
        customer.id
    ]
    # Only an e-mail given: the phone stays.
    again = identity.update_contact(
        ctx(), UpdateContact(customer_id=customer.id, email="third@example.com")
    )
    assert (again.email, again.phone) == ("third@example.com", "+639187770199")


def test_contact_details_can_be_removed(identity: IdentityService) -> None:
    customer = new_customer(identity)
    view = identity.update_contact(ctx(), UpdateContact(customer_id=customer.id, remove_phone=True))
    assert view.phone is None
    assert view.email == PII["email"]
    assert identity.find_customers_by_contact(ctx(), phone=PII["phone"]) == []


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"email": NEW_EMAIL, "remove_email": True},
        {"phone": "12ab"},
        {"email": "not-an-email"},
    ],
)
def test_an_update_must_say_something_valid(values: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentityInput) as err:
        UpdateContact(customer_id="c-1", **values)
    assert err.value.code == "identity.invalid_input"


def test_the_update_is_encrypted_audited_and_publishes_nothing(
    identity: IdentityService, storage: Storage
) -> None:
    customer = new_customer(identity)
    published = event_types(storage)
    identity.update_contact(
        ctx(), UpdateContact(customer_id=customer.id, email=NEW_EMAIL, phone=NEW_PHONE)
    )
    # The seed defines no event for a contact change; the audit log records it.
    assert event_types(storage) == published
    record = next(r for r in reversed(audit(storage)) if r.action == "identity.update_contact")
    assert record.resource_id == customer.id
    assert record.summary == {"changed": ["email", "phone"], "removed": [], "key_version": 1}
    secrets = [*PII_STRINGS, "villanueva.santos", "9187770199"]
    texts = [f"{r.summary} {r.reason}" for r in audit(storage)] + raw_rows(storage)
    for text in texts:
        for secret in secrets:
            assert secret.lower() not in text.lower()


def test_update_is_idempotent_and_tenant_isolated(
    identity: IdentityService, storage: Storage
) -> None:
    customer = new_customer(identity)
    command = UpdateContact(customer_id=customer.id, email=NEW_EMAIL)
    first = identity.update_contact(ctx(), command, idempotency_key="u-1")
    assert identity.update_contact(ctx(), command, idempotency_key="u-1") == first
    with pytest.raises(IdempotencyConflict):
        identity.update_contact(
            ctx(),
            UpdateContact(customer_id=customer.id, email="x@example.com"),
            idempotency_key="u-1",
        )
    before = state(storage)
    with pytest.raises(CustomerNotFound):
        identity.update_contact(ctx(OTHER), UpdateContact(customer_id=customer.id, phone=NEW_PHONE))
    assert state(storage) == before


def test_an_update_writes_under_the_current_key(
    storage: Storage, clock: ManualClock, ids: SequentialIds
) -> None:
    from finfactory.kernel.authz import default_policy
    from finfactory.testing.kyc import FakeKycProvider

    old = IdentityService(
        storage, default_policy(), clock, ids, fixed_keyring(1), FakeKycProvider()
    )
    customer = new_customer(old)
    both = IdentityService(
        storage, default_policy(), clock, ids, fixed_keyring(1, 2), FakeKycProvider()
    )
    both.update_contact(ctx(), UpdateContact(customer_id=customer.id, email=NEW_EMAIL))
    # Every field of the row moved to key 2, so rotation has nothing left to do for it.
    assert both.rotate_keys(ctx(), RotateKeys()).rotated == 0
    new_only = IdentityService(
        storage, default_policy(), clock, ids, fixed_keyring(2), FakeKycProvider()
    )
    assert new_only.get_customer(ctx(), customer.id).given_name == PII["given_name"]
