"""QR Ph fixtures: a service per storage backend with a recording settlement, and helpers."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.audit import AuditRecord
from finfactory.kernel.authz import default_policy
from finfactory.kernel.config import TenantConfigService
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.money import Money
from finfactory.kernel.ports import Storage
from finfactory.primitives.qrph import (
    GenerateDynamicQr,
    GenerateStaticQr,
    QrPaymentService,
    QrPhSettings,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.qrph import FakeQrSwitch, RecordingMerchantSettlement

TENANT = "shop-a"
ACQUIRER = "FFACPHM2XXX"


def actor_ctx(*roles: str, tenant: str = TENANT, actor: str = "ops-1") -> RequestContext:
    return RequestContext(tenant_id=tenant, actor=Actor(actor, ActorKind.USER, frozenset(roles)))


def php(amount: str) -> Money:
    return Money(amount, "PHP")


def configure(storage: Storage, clock: ManualClock, tenant: str = TENANT, **changes: Any) -> None:
    config = TenantConfigService(storage, default_policy(), clock, SequentialIds(namespace=9))
    values = {"acquirer_id": ACQUIRER, **changes}
    config.update(actor_ctx("config.admin", tenant=tenant), QrPhSettings, values, reason="setup")


def static_qr(wallet: str = "merchant-1", **kw: Any) -> GenerateStaticQr:
    fields: dict[str, Any] = {
        "merchant_wallet_id": wallet,
        "merchant_name": "Sari-Sari Store",
        "merchant_city": "Makati",
        "mcc": "5411",
        **kw,
    }
    return GenerateStaticQr(**fields)


def dynamic_qr(
    amount: str | Money = "250.00", wallet: str = "merchant-1", **kw: Any
) -> GenerateDynamicQr:
    fields: dict[str, Any] = {
        "merchant_wallet_id": wallet,
        "merchant_name": "Sari-Sari Store",
        "merchant_city": "Makati",
        "amount": php(amount) if isinstance(amount, str) else amount,
        **kw,
    }
    return GenerateDynamicQr(**fields)


@attrs.define
class QrEnv:
    storage: Storage
    clock: ManualClock
    settlement: RecordingMerchantSettlement
    service: QrPaymentService
    ctx: RequestContext
    switch: FakeQrSwitch

    def events(self, tenant: str = TENANT) -> list[tuple[str, dict[str, Any]]]:
        with self.storage.read() as uow:
            found = uow.kernel.read_events(0, 10_000, tenant)
        return [(e.event_type, e.payload) for e in found if e.source == "qrph"]

    def event_types(self, tenant: str = TENANT) -> list[str]:
        return [name for name, _ in self.events(tenant)]

    def audit(self, tenant: str = TENANT) -> list[AuditRecord]:
        with self.storage.read() as uow:
            return [r for r in uow.kernel.audit_records(tenant) if r.action.startswith("qrph.")]

    def payment_count(self, tenant: str = TENANT) -> int:
        return len(self.service.list_payments(actor_ctx("auditor", tenant=tenant)).payments)


def make_env(storage: Storage) -> QrEnv:
    clock = ManualClock()
    settlement = RecordingMerchantSettlement()
    service = QrPaymentService(storage, default_policy(), clock, SequentialIds(), settlement)
    configure(storage, clock)
    switch = FakeQrSwitch(service, actor_ctx("qrph.operator", actor="switch"))
    return QrEnv(storage, clock, settlement, service, actor_ctx("qrph.operator"), switch)


@pytest.fixture
def env(storage: Storage) -> QrEnv:
    return make_env(storage)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_storage(request: pytest.FixtureRequest) -> SqlStorage:
    name = "sqlite_engine" if request.param == "sqlite" else "pg_clean"
    return SqlStorage(request.getfixturevalue(name))
