"""Fixtures for the identity tests: the service on every backend, with the fake provider and
a fixed keyring, plus helpers that read what was stored (rows, events, audit records)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from finfactory.adapters.memory import MemoryStorage
from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.audit import AuditRecord
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.ports import Storage
from finfactory.primitives.identity import (
    CreateCustomer,
    CustomerView,
    IdDocument,
    IdentityService,
    PiiKeyring,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.kyc import FakeKycProvider, fixed_keyring

TENANT = "tenant-a"
OTHER = "tenant-b"

# Distinctive values, so finding one of them in stored bytes cannot be a coincidence.
PII: dict[str, Any] = {
    "given_name": "Maricelle",
    "family_name": "Villanueva-Santos",
    "birth_date": date(1987, 11, 23),
    "email": "maricelle.villanueva@example.ph",
    "phone": "+63 917 555 0142",
    "document_number": "XK7741029",
    "document_ref": "s3://kyc-docs/maricelle-passport-front.jpg",
}
PII_STRINGS = [
    "Maricelle",
    "Villanueva",
    "1987-11-23",
    "maricelle.villanueva",
    "9175550142",
    "XK7741029",
    "maricelle-passport",
]


def ctx(
    tenant: str = TENANT,
    roles: frozenset[str] = frozenset({"identity.operator"}),
    actor: str = "ops-1",
) -> RequestContext:
    return RequestContext(tenant_id=tenant, actor=Actor(actor, ActorKind.USER, roles))


def customer_command(**overrides: Any) -> CreateCustomer:
    values: dict[str, Any] = {
        "given_name": PII["given_name"],
        "family_name": PII["family_name"],
        "birth_date": PII["birth_date"],
        "email": PII["email"],
        "phone": PII["phone"],
        "id_document": IdDocument(
            type="passport",
            number=PII["document_number"],
            issuing_country="PH",
            expires_on=date(2031, 6, 30),
        ),
        "document_refs": [PII["document_ref"]],
    }
    values.update(overrides)
    return CreateCustomer(**values)


def new_customer(
    identity: IdentityService, context: RequestContext | None = None, **overrides: Any
) -> CustomerView:
    return identity.create_customer(context or ctx(), customer_command(**overrides))


def other_document(
    number: str, expires_on: date | None = date(2031, 1, 1), kind: str = "national_id"
) -> IdDocument:
    return IdDocument(type=kind, number=number, issuing_country="PH", expires_on=expires_on)


@pytest.fixture
def provider() -> FakeKycProvider:
    return FakeKycProvider()


@pytest.fixture
def keyring() -> PiiKeyring:
    return fixed_keyring(1)


@pytest.fixture
def identity(
    storage: Storage,
    clock: ManualClock,
    ids: SequentialIds,
    keyring: PiiKeyring,
    provider: FakeKycProvider,
) -> IdentityService:
    return IdentityService(storage, default_policy(), clock, ids, keyring, provider)


def events(storage: Storage, tenant: str = TENANT) -> list[EventEnvelope]:
    with storage.read() as tx:
        return tx.kernel.read_events(0, 10_000, tenant_id=tenant)


def event_types(storage: Storage, tenant: str = TENANT) -> list[str]:
    return [e.event_type for e in events(storage, tenant)]


def audit(storage: Storage, tenant: str = TENANT) -> list[AuditRecord]:
    with storage.read() as tx:
        return list(tx.kernel.audit_records(tenant))


def raw_rows(storage: Storage) -> list[str]:
    """Every stored row of every table, as text: what someone reading the database sees."""
    if isinstance(storage, MemoryStorage):
        return [
            f"{name}: {key!r} {value!r}"
            for name, table in storage.db.tables.items()
            for key, value in table.items()
        ]
    assert isinstance(storage, SqlStorage)
    out = []
    with storage.engine.connect() as conn:
        # Every table the database has, whoever declared it.
        database = sa.MetaData()
        database.reflect(conn)
        for table in database.sorted_tables:
            for row in conn.execute(sa.select(table)):
                out.append(f"{table.name}: {tuple(row)!r}")
    return out


def state(storage: Storage) -> list[str]:
    """Every row except the audit log (a refused command may add audit records only)."""
    return sorted(
        r for r in raw_rows(storage) if not r.startswith(("ff_audit_log", "ff_audit_heads"))
    )
