"""Personal data at rest: encrypted, bound to its row and field, never in events, audit
records or idempotency records; readable in clear only with ``identity.pii.read``; keys rotate
without losing access or lookups."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from datetime import date

import attrs
import pytest
import sqlalchemy as sa

from finfactory.adapters.memory import MemoryStorage
from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.audit import Outcome, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.canonical import canonical_json, sha256_hex
from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    FlagRisk,
    IdentityService,
    InvalidKeyring,
    PiiIntegrityError,
    PiiKeyring,
    RotateKeys,
    StartKyc,
    UnknownKeyVersion,
    UpdateContact,
    generate_key,
)
from finfactory.primitives.identity.memory_store import CUSTOMERS
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.kyc import FakeKycProvider, FakeVerdict, fixed_keyring
from tests.identity.conftest import (
    PII,
    PII_STRINGS,
    audit,
    ctx,
    customer_command,
    events,
    new_customer,
    other_document,
    raw_rows,
)

READER = frozenset({"auditor"})  # identity.read, not identity.pii.read


def _full_flow(identity: IdentityService, provider: FakeKycProvider) -> str:
    customer = identity.create_customer(ctx(), customer_command(), idempotency_key="on-1").id
    replay = identity.create_customer(ctx(), customer_command(), idempotency_key="on-1")
    assert replay.id == customer
    provider.script(FakeVerdict.watchlist(), customer_id=customer)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer, tier="basic"), idempotency_key="s1")
    identity.handle_provider_callback(ctx(), provider.callback(customer))
    identity.flag_risk(ctx(), FlagRisk(customer_id=customer, reason="fraud_report"))
    identity.get_customer(ctx(), customer)
    identity.find_customer_by_document(ctx(), "passport", "PH", PII["document_number"])
    identity.find_customers_by_contact(ctx(), email=PII["email"], phone=PII["phone"])
    return customer


def test_no_plaintext_anywhere_in_the_database(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    _full_flow(identity, provider)
    rows = raw_rows(storage)
    assert any(r.startswith("identity_customers") for r in rows)
    for row in rows:
        for secret in PII_STRINGS:
            assert secret.lower() not in row.lower(), f"{secret!r} stored in clear: {row[:80]}"


def test_events_and_audit_records_carry_no_personal_data(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    _full_flow(identity, provider)
    published = events(storage)
    assert {e.event_type for e in published} >= {
        "customer.created",
        "kyc.started",
        "kyc.rejected",
        "risk.flagged",
    }
    records = audit(storage)
    texts = [str(e.payload) for e in published]
    texts += [f"{r.summary} {r.reason} {r.resource_id}" for r in records]
    for text in texts:
        for secret in PII_STRINGS:
            assert secret.lower() not in text.lower()
    with storage.read() as tx:
        head = tx.kernel.audit_head("tenant-a")
    assert verify_chain(records, head).ok  # the PII disclosure records join the chain too


def test_views_mask_personal_data_without_the_pii_permission(
    identity: IdentityService, storage: Storage
) -> None:
    customer = new_customer(identity)
    masked = identity.get_customer(ctx(roles=READER), customer.id)
    assert masked.pii == "masked"
    assert (masked.given_name, masked.family_name) == ("M***", "V***")
    assert masked.email == "m***@example.ph"
    assert masked.phone == "*********0142"
    assert masked.birth_date is None
    assert masked.document_refs == []
    assert masked.id_document is not None
    assert masked.id_document.number == "*****1029"
    assert masked.id_document.expires_on is None
    dumped = masked.model_dump_json()
    for secret in PII_STRINGS:
        assert secret not in dumped

    clear = identity.get_customer(ctx(), customer.id)
    assert clear.pii == "clear"
    assert (clear.given_name, clear.birth_date) == (PII["given_name"], PII["birth_date"])
    assert clear.phone == "+639175550142"  # normalised
    assert clear.document_refs == [PII["document_ref"]]


def test_clear_reads_are_audited(identity: IdentityService, storage: Storage) -> None:
    customer = new_customer(identity)

    def disclosures() -> list[str | None]:
        return [r.resource_id for r in audit(storage) if r.action == "identity.pii.read"]

    seen = disclosures()
    assert seen == [customer.id]  # create_customer returned it in clear
    identity.get_customer(ctx(roles=READER), customer.id)
    assert disclosures() == seen
    identity.get_customer(ctx(actor="ops-2"), customer.id)
    records = [r for r in audit(storage) if r.action == "identity.pii.read"]
    assert [r.actor_id for r in records] == ["ops-1", "ops-2"]
    assert records[-1].outcome is Outcome.SUCCEEDED


# -- tampering -------------------------------------------------------------------------------


def _edit_sealed(
    storage: Storage, customer_id: str, edit: Callable[[dict[str, str]], None]
) -> None:
    """Change a customer's stored ciphertexts behind the service's back."""
    if isinstance(storage, MemoryStorage):
        table = storage.db.table(CUSTOMERS)
        customer = table[customer_id]
        fields = dict(customer.pii.fields)
        edit(fields)
        table[customer_id] = attrs.evolve(customer, pii=attrs.evolve(customer.pii, fields=fields))
        return
    assert isinstance(storage, SqlStorage)
    from finfactory.primitives.identity.tables import customers

    names = ["given_name", "family_name", "birth_date", "email", "phone", "id_document"]
    with storage.engine.begin() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.id == customer_id)).one()
        fields = {n: row._mapping[f"pii_{n}"] for n in names}
        edit(fields)
        conn.execute(
            sa.update(customers)
            .where(customers.c.id == customer_id)
            .values(**{f"pii_{n}": v for n, v in fields.items()})
        )


def _sealed(storage: Storage, customer_id: str) -> dict[str, str]:
    found: dict[str, str] = {}
    _edit_sealed(storage, customer_id, found.update)
    return found


def test_a_tampered_ciphertext_does_not_open(identity: IdentityService, storage: Storage) -> None:
    customer = new_customer(identity)

    def flip(fields: dict[str, str]) -> None:
        token = fields["family_name"]
        last = token[-2]
        fields["family_name"] = token[:-2] + ("A" if last != "A" else "B") + token[-1]

    _edit_sealed(storage, customer.id, flip)
    with pytest.raises(PiiIntegrityError) as err:
        identity.get_customer(ctx(), customer.id)
    assert err.value.code == "identity.pii_integrity"
    # Masked views need the data too: a tampered row is never shown at all.
    with pytest.raises(PiiIntegrityError):
        identity.get_customer(ctx(roles=READER), customer.id)


def test_ciphertexts_cannot_be_swapped_between_customers_or_fields(
    identity: IdentityService, storage: Storage
) -> None:
    alice = new_customer(identity)
    bob = new_customer(identity, given_name="Bernardo", id_document=other_document("B77"))
    alice_sealed, bob_sealed = _sealed(storage, alice.id), _sealed(storage, bob.id)

    def take_bobs_name(fields: dict[str, str]) -> None:
        fields["given_name"] = bob_sealed["given_name"]

    _edit_sealed(storage, alice.id, take_bobs_name)
    with pytest.raises(PiiIntegrityError):
        identity.get_customer(ctx(), alice.id)
    assert identity.get_customer(ctx(), bob.id).given_name == "Bernardo"

    def restore_then_swap_fields(fields: dict[str, str]) -> None:
        fields.update(alice_sealed)
        fields["given_name"], fields["family_name"] = (
            alice_sealed["family_name"],
            alice_sealed["given_name"],
        )

    _edit_sealed(storage, alice.id, restore_then_swap_fields)
    with pytest.raises(PiiIntegrityError):
        identity.get_customer(ctx(), alice.id)
    _edit_sealed(storage, alice.id, lambda fields: fields.update(alice_sealed))
    assert identity.get_customer(ctx(), alice.id).given_name == PII["given_name"]


# -- keys ------------------------------------------------------------------------------------


def _service(
    storage: Storage, clock: ManualClock, ids: SequentialIds, keyring: PiiKeyring
) -> IdentityService:
    return IdentityService(storage, default_policy(), clock, ids, keyring, FakeKycProvider())


def _key_versions(storage: Storage) -> list[int]:
    rows = [r for r in raw_rows(storage) if r.startswith("identity_customers:")]
    return sorted(int(r.split("ffpii1:")[1].split(":")[0]) for r in rows)


def test_key_rotation(storage: Storage, clock: ManualClock, ids: SequentialIds) -> None:
    old = _service(storage, clock, ids, fixed_keyring(1))
    first = new_customer(old).id
    second = new_customer(old, given_name="Bernardo", id_document=other_document("B77")).id
    assert _key_versions(storage) == [1, 1]

    both = _service(storage, clock, ids, fixed_keyring(1, 2))
    third = new_customer(both, given_name="Corazon", id_document=other_document("C88")).id
    assert _key_versions(storage) == [1, 1, 2]  # new writes use the newest key
    assert both.get_customer(ctx(), first).given_name == PII["given_name"]  # old rows readable

    step = both.rotate_keys(ctx(), RotateKeys(limit=1))
    assert (step.key_version, step.rotated, step.remaining) == (2, 1, 1)
    rest = both.rotate_keys(ctx())
    assert (rest.rotated, rest.remaining) == (1, 0)
    assert _key_versions(storage) == [2, 2, 2]
    assert both.rotate_keys(ctx()).rotated == 0

    new_only = _service(storage, clock, ids, fixed_keyring(2))
    names = {new_only.get_customer(ctx(), c).given_name for c in (first, second, third)}
    assert names == {PII["given_name"], "Bernardo", "Corazon"}
    # Lookups use the separate hash key: unaffected by rotation.
    found = new_only.find_customer_by_document(ctx(), "passport", "PH", "xk-774-1029")
    assert found.id == first
    assert [c.id for c in new_only.find_customers_by_contact(ctx(), email=PII["email"])] == [
        first,
        second,
        third,
    ]
    retired = _service(storage, clock, ids, fixed_keyring(1))
    with pytest.raises(UnknownKeyVersion):
        retired.get_customer(ctx(), first)


def test_rotation_is_per_tenant(storage: Storage, clock: ManualClock, ids: SequentialIds) -> None:
    old = _service(storage, clock, ids, fixed_keyring(1))
    new_customer(old)
    new_customer(old, ctx("tenant-b"))
    both = _service(storage, clock, ids, fixed_keyring(1, 2))
    assert both.rotate_keys(ctx()).rotated == 1
    assert _key_versions(storage) == [1, 2]
    assert both.rotate_keys(ctx("tenant-b")).rotated == 1


def test_keyring_never_shows_its_keys() -> None:
    key1, key2, hash_key = generate_key(), generate_key(), generate_key()
    keyring = PiiKeyring({1: key1, 2: key2}, hash_key=hash_key)
    assert keyring.current_version == 2
    assert keyring.versions == (1, 2)
    text = repr(keyring) + str(keyring)
    for key in (key1, key2, hash_key):
        assert key.hex() not in text
        assert repr(key) not in text
    with pytest.raises(TypeError):
        pickle.dumps(keyring)
    with pytest.raises(TypeError):
        copy.copy(keyring)
    assert PiiKeyring({1: key1, 2: key2}, hash_key=hash_key, current_version=1).current_version == 1


@pytest.mark.parametrize(
    ("keys", "hash_key", "current"),
    [
        ({}, b"h" * 32, None),
        ({1: b"short"}, b"h" * 32, None),
        ({0: b"k" * 32}, b"h" * 32, None),
        ({1: b"k" * 32}, b"h" * 16, None),
        ({1: b"k" * 32}, b"k" * 32, None),
        ({1: b"k" * 32}, b"h" * 32, 2),
    ],
)
def test_keyring_refuses_bad_key_material(
    keys: dict[int, bytes], hash_key: bytes, current: int | None
) -> None:
    with pytest.raises(InvalidKeyring):
        PiiKeyring(keys, hash_key=hash_key, current_version=current)


def test_a_value_sealed_for_one_context_does_not_open_in_another() -> None:
    keyring = fixed_keyring(1)
    token = keyring.encrypt(b"secret", b"tenant-a|c1|given_name")
    assert keyring.decrypt(token, b"tenant-a|c1|given_name") == b"secret"
    for wrong in (b"tenant-b|c1|given_name", b"tenant-a|c2|given_name", b"tenant-a|c1|email"):
        with pytest.raises(PiiIntegrityError):
            keyring.decrypt(token, wrong)
    for broken in ("", "ffpii1:1:", "ffpii1:x:abc", token[:-4], "ffpii1:1:" + "A" * 40):
        with pytest.raises(PiiIntegrityError):
            keyring.decrypt(broken, b"tenant-a|c1|given_name")
    assert token != keyring.encrypt(b"secret", b"tenant-a|c1|given_name")  # fresh nonce


def test_personal_data_stays_out_of_reprs(identity: IdentityService) -> None:
    command = customer_command()
    view = identity.create_customer(ctx(), command)
    assert view.pii == "clear"
    identity.start_kyc(ctx(), StartKyc(customer_id=view.id, tier="basic"))
    assert isinstance(identity.provider, FakeKycProvider)
    session = identity.provider.session_for(view.id)  # what the provider was given
    texts = [repr(command), str(command), repr(view), repr(view.id_document), repr(session)]
    texts += [repr(session.request.applicant.document), str(session.request.applicant.document)]
    update = UpdateContact(customer_id=view.id, email=PII["email"], phone=PII["phone"])
    texts += [repr(update), str(update)]
    for text in texts:
        for secret in PII_STRINGS:
            assert secret not in text


def test_callback_dedup_keys_are_keyed_hashes(
    identity: IdentityService, provider: FakeKycProvider, storage: Storage
) -> None:
    """A callback's content includes the document's expiry date: a plain hash of it in the
    dedup table could be reversed by trying every date."""
    customer = new_customer(identity)
    identity.start_kyc(ctx(), StartKyc(customer_id=customer.id, tier="basic"))
    callback = provider.callback(
        customer.id, verdict=FakeVerdict.approve(document_expires_on=date(2031, 6, 30))
    )
    identity.handle_provider_callback(ctx(), callback)
    content = callback.model_dump(mode="json", exclude={"reference", "callback_id"})
    plain = sha256_hex("content\n" + canonical_json(content))
    stored = [r for r in raw_rows(storage) if r.startswith("identity_provider_callbacks")]
    assert len(stored) == 1
    assert plain not in stored[0]
    # Still a dedup key: the same content again is a duplicate.
    assert identity.handle_provider_callback(ctx(), callback).effect == "duplicate"
