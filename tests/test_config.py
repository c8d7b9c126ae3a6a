"""Per-tenant settings: versioned, audited, authorized, validated, and honoured by the ledger."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

import pytest
import sqlalchemy as sa
from pydantic import SecretStr, model_validator

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel.audit import AuditRecord, Outcome, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.clock import IdGenerator
from finfactory.kernel.config import TenantConfigService, TenantSettings
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import ConfigurationError, PermissionDenied, ValidationError
from finfactory.kernel.model import MoneyAmount
from finfactory.kernel.money import Money, from_minor
from finfactory.kernel.ports import ConfigVersion, Storage
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.errors import (
    BatchTooLarge,
    CurrencyNotAllowed,
    HoldNotPending,
)
from finfactory.primitives.ledger.service import LedgerService
from finfactory.primitives.ledger.settings import LedgerSettings
from finfactory.testing import ManualClock, SequentialIds

TENANT = "tenant-a"


def _ctx(
    tenant: str = TENANT, roles: frozenset[str] = frozenset({"admin"}), actor: str = "admin-1"
) -> RequestContext:
    return RequestContext(tenant_id=tenant, actor=Actor(actor, ActorKind.USER, roles))


def php(minor: int) -> Money:
    return from_minor(minor, "PHP")


def transfer(reference: str, debit: str, credit: str, minor: int) -> c.PostJournal:
    return c.PostJournal(
        reference=reference,
        legs=[
            c.Leg(account_id=debit, direction="debit", amount=php(minor)),
            c.Leg(account_id=credit, direction="credit", amount=php(minor)),
        ],
    )


@pytest.fixture
def config(storage: Storage, clock: ManualClock, ids: IdGenerator) -> TenantConfigService:
    return TenantConfigService(storage, default_policy(), clock, ids)


def _audit(storage: Storage, tenant: str = TENANT) -> list[AuditRecord]:
    with storage.read() as uow:
        return list(uow.kernel.audit_records(tenant))


def _set(config: TenantConfigService, **changes: Any) -> None:
    config.update(_ctx(), LedgerSettings, changes, reason="test setup")


def test_defaults_apply_until_something_is_stored(config: TenantConfigService) -> None:
    settings = config.get(_ctx(), LedgerSettings)
    assert settings == LedgerSettings()
    assert settings.allowed_currencies == []
    assert settings.max_batch_size == 1000
    assert settings.default_hold_ttl_seconds is None
    assert config.history(_ctx(), LedgerSettings) == []


def test_updates_create_numbered_versions_and_keep_history(
    config: TenantConfigService, clock: ManualClock
) -> None:
    ctx = _ctx()
    first_at = clock.now()
    v1 = config.update(ctx, LedgerSettings, {"max_batch_size": 50}, reason="limit batches")
    clock.advance(timedelta(minutes=3))
    v2 = config.update(
        _ctx(actor="admin-2"),
        LedgerSettings,
        {"allowed_currencies": ["PHP", "USD"]},
        reason="go multi-currency",
    )
    v3 = config.update(ctx, LedgerSettings, {"max_batch_size": 75}, reason="a bit more")

    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert v1.section == "ledger"
    assert v2.values["max_batch_size"] == 50  # earlier changes carry forward
    assert v3.values["allowed_currencies"] == ["PHP", "USD"]
    assert (v1.changed_by, v2.changed_by) == ("admin-1", "admin-2")
    assert v1.changed_at == first_at
    assert v2.changed_at == first_at + timedelta(minutes=3)
    assert config.history(ctx, LedgerSettings) == [v1, v2, v3]
    assert [h.reason for h in config.history(ctx, LedgerSettings)] == [
        "limit batches",
        "go multi-currency",
        "a bit more",
    ]
    effective = config.get(ctx, LedgerSettings)
    assert effective.max_batch_size == 75
    assert effective.allowed_currencies == ["PHP", "USD"]
    # another tenant is untouched
    assert config.get(_ctx("tenant-b"), LedgerSettings) == LedgerSettings()
    assert config.history(_ctx("tenant-b"), LedgerSettings) == []


def test_updates_are_audited_with_before_and_after(
    config: TenantConfigService, storage: Storage
) -> None:
    config.update(_ctx(), LedgerSettings, {"max_batch_size": 10}, reason="first")
    config.update(
        _ctx(),
        LedgerSettings,
        {"max_batch_size": 20, "default_hold_ttl_seconds": 90},
        reason="second",
    )
    records = _audit(storage)
    assert [(r.action, r.outcome, r.resource_type, r.resource_id) for r in records] == [
        ("config.update", Outcome.SUCCEEDED, "tenant_config", "ledger")
    ] * 2
    assert records[0].summary == {
        "version": 1,
        "reason": "first",
        "before": {"max_batch_size": 1000},
        "after": {"max_batch_size": 10},
    }
    assert records[1].summary == {
        "version": 2,
        "reason": "second",
        "before": {"default_hold_ttl_seconds": None, "max_batch_size": 10},
        "after": {"default_hold_ttl_seconds": 90, "max_batch_size": 20},
    }
    with storage.read() as uow:
        assert verify_chain(uow.kernel.audit_records(TENANT), uow.kernel.audit_head(TENANT)).ok


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_batch_sizes": 5}, "changes.max_batch_sizes"),
        ({"section": "other"}, "changes.section"),
        ({"max_batch_size": 0}, "changes.max_batch_size"),
        ({"max_batch_size": 1001}, "changes.max_batch_size"),
        ({"max_batch_size": "lots"}, "changes.max_batch_size"),
        ({"allowed_currencies": ["php"]}, "changes.allowed_currencies.0"),
        ({"allowed_currencies": "PHP"}, "changes.allowed_currencies"),
        ({"default_hold_ttl_seconds": 0}, "changes.default_hold_ttl_seconds"),
    ],
)
def test_unknown_or_invalid_settings_are_refused_with_the_field(
    config: TenantConfigService, storage: Storage, changes: dict[str, Any], field: str
) -> None:
    _set(config, max_batch_size=7)
    audit = _audit(storage)
    with pytest.raises(ValidationError) as err:
        config.update(_ctx(), LedgerSettings, changes, reason="bad", idempotency_key="cfg-1")
    assert err.value.field == field
    assert [h.version for h in config.history(_ctx(), LedgerSettings)] == [1]
    assert config.get(_ctx(), LedgerSettings).max_batch_size == 7
    assert _audit(storage) == audit
    # the key was not taken by the malformed request
    ok = config.update(
        _ctx(), LedgerSettings, {"max_batch_size": 8}, reason="fixed", idempotency_key="cfg-1"
    )
    assert ok.version == 2


def test_writing_needs_config_write_and_reading_needs_config_read(
    config: TenantConfigService, storage: Storage
) -> None:
    operator = _ctx(roles=frozenset({"ledger.operator"}), actor="op-7")
    with pytest.raises(PermissionDenied) as denied:
        config.update(operator, LedgerSettings, {"max_batch_size": 1}, reason="sneaky")
    assert denied.value.details["permission"] == "config.write"
    assert config.history(_ctx(), LedgerSettings) == []
    last = _audit(storage)[-1]
    assert (last.action, last.outcome, last.actor_id) == ("config.update", Outcome.DENIED, "op-7")
    with pytest.raises(PermissionDenied):
        config.get(operator, LedgerSettings)
    with pytest.raises(PermissionDenied):
        config.history(operator, LedgerSettings)

    config_admin = _ctx(roles=frozenset({"config.admin"}), actor="cfg-admin")
    change = config.update(config_admin, LedgerSettings, {"max_batch_size": 3}, reason="ok")
    assert change.version == 1
    assert config.get(config_admin, LedgerSettings).max_batch_size == 3


def test_update_is_idempotent(config: TenantConfigService, storage: Storage) -> None:
    first = config.update(
        _ctx(), LedgerSettings, {"max_batch_size": 9}, reason="r", idempotency_key="cfg-k"
    )
    again = config.update(
        _ctx(), LedgerSettings, {"max_batch_size": 9}, reason="r", idempotency_key="cfg-k"
    )
    assert again == first
    assert [h.version for h in config.history(_ctx(), LedgerSettings)] == [1]
    assert _audit(storage)[-1].outcome is Outcome.REPLAYED


# -- the ledger honours the settings --------------------------------------------------------


def test_ledger_honours_allowed_currencies(
    config: TenantConfigService, ledger: LedgerService
) -> None:
    ledger.open_account(_ctx(), c.OpenAccount(code="usd-before", currency="USD", type="asset"))
    _set(config, allowed_currencies=["PHP", "EUR"])

    with pytest.raises(CurrencyNotAllowed) as err:
        ledger.open_account(_ctx(), c.OpenAccount(code="usd", currency="USD", type="asset"))
    assert err.value.code == "ledger.currency_not_allowed"
    assert (
        ledger.open_account(
            _ctx(), c.OpenAccount(code="php", currency="PHP", type="asset")
        ).currency
        == "PHP"
    )
    assert (
        ledger.open_account(
            _ctx(), c.OpenAccount(code="eur", currency="EUR", type="asset")
        ).currency
        == "EUR"
    )
    # another tenant keeps the default (any currency)
    assert (
        ledger.open_account(
            _ctx("tenant-b"), c.OpenAccount(code="usd", currency="USD", type="asset")
        ).currency
        == "USD"
    )
    assert {a.code for a in ledger.list_accounts(_ctx())} == {"usd-before", "php", "eur"}
    _set(config, allowed_currencies=[])  # empty means any again
    ledger.open_account(_ctx(), c.OpenAccount(code="usd", currency="USD", type="asset"))


def _wallet(ledger: LedgerService, funds: int) -> tuple[str, str]:
    cash = ledger.open_account(_ctx(), c.OpenAccount(code="cash", currency="PHP", type="asset")).id
    wallet = ledger.open_account(
        _ctx(),
        c.OpenAccount(
            code="wallet",
            currency="PHP",
            type="liability",
            balance_bound="debits_must_not_exceed_credits",
        ),
    ).id
    ledger.post_journal(_ctx(), transfer("fund", cash, wallet, funds))
    return cash, wallet


def test_ledger_honours_default_hold_ttl(
    config: TenantConfigService, ledger: LedgerService, clock: ManualClock
) -> None:
    cash, wallet = _wallet(ledger, 10_000)
    untimed = ledger.create_hold(
        _ctx(),
        c.CreateHold(
            reference="before", debit_account_id=wallet, credit_account_id=cash, amount=php(100)
        ),
    )
    assert untimed.expires_at is None
    _set(config, default_hold_ttl_seconds=60)

    now = clock.now()
    hold = ledger.create_hold(
        _ctx(),
        c.CreateHold(
            reference="ttl", debit_account_id=wallet, credit_account_id=cash, amount=php(1_000)
        ),
    )
    assert hold.expires_at == now + timedelta(seconds=60)
    explicit = now + timedelta(days=1)
    kept = ledger.create_hold(
        _ctx(),
        c.CreateHold(
            reference="explicit",
            debit_account_id=wallet,
            credit_account_id=cash,
            amount=php(10),
            expires_at=explicit,
        ),
    )
    assert kept.expires_at == explicit

    clock.advance(timedelta(seconds=61))
    with pytest.raises(HoldNotPending):
        ledger.capture_hold(_ctx(), c.CaptureHold(hold_id=hold.id, reference="late"))
    assert ledger.expire_holds(_ctx()).hold_ids == [hold.id]
    assert ledger.get_hold(_ctx(), hold.id).status == "expired"
    assert ledger.get_hold(_ctx(), kept.id).status == "pending"
    assert ledger.get_hold(_ctx(), untimed.id).status == "pending"
    assert ledger.balance(_ctx(), wallet).held == php(110)


def test_every_hold_past_the_ttl_is_released_by_one_expiry_run(
    config: TenantConfigService, ledger: LedgerService, clock: ManualClock
) -> None:
    """Two holds on the same wallet, both created under the TTL: one expire_holds call
    releases both, and the wallet's held amount and events stay consistent."""
    cash, wallet = _wallet(ledger, 10_000)
    _set(config, default_hold_ttl_seconds=30)
    first = ledger.create_hold(
        _ctx(),
        c.CreateHold(
            reference="a", debit_account_id=wallet, credit_account_id=cash, amount=php(1_000)
        ),
    )
    second = ledger.create_hold(
        _ctx(),
        c.CreateHold(
            reference="b", debit_account_id=wallet, credit_account_id=cash, amount=php(2_000)
        ),
    )
    assert ledger.balance(_ctx(), wallet).held == php(3_000)

    clock.advance(timedelta(seconds=31))
    expired = ledger.expire_holds(_ctx())

    assert sorted(expired.hold_ids) == sorted([first.id, second.id])
    assert ledger.balance(_ctx(), wallet).held == php(0)
    assert ledger.balance(_ctx(), cash).held == php(0)
    assert ledger.balance(_ctx(), wallet).available == php(10_000)


def test_ledger_honours_max_batch_size(
    config: TenantConfigService, ledger: LedgerService, storage: Storage
) -> None:
    cash, wallet = _wallet(ledger, 1)
    _set(config, max_batch_size=2)
    three = c.PostJournals(journals=[transfer(f"b{i}", cash, wallet, 1) for i in range(3)])
    with pytest.raises(BatchTooLarge) as err:
        ledger.post_journals(_ctx(), three)
    assert err.value.code == "ledger.batch_too_large"
    assert ledger.balance(_ctx(), wallet).posted == php(1)
    two = c.PostJournals(journals=[transfer(f"b{i}", cash, wallet, 1) for i in range(2)])
    assert len(ledger.post_journals(_ctx(), two).journals) == 2
    assert ledger.balance(_ctx(), wallet).posted == php(3)
    # the limit is per tenant
    b_cash = ledger.open_account(
        _ctx("tenant-b"), c.OpenAccount(code="cash", currency="PHP", type="asset")
    ).id
    b_wallet = ledger.open_account(
        _ctx("tenant-b"), c.OpenAccount(code="wallet", currency="PHP", type="liability")
    ).id
    assert (
        len(
            ledger.post_journals(
                _ctx("tenant-b"),
                c.PostJournals(journals=[transfer(f"b{i}", b_cash, b_wallet, 1) for i in range(3)]),
            ).journals
        )
        == 3
    )


# -- review findings: rules across settings, request identity, odd values, evolution ---------
class Limits(TenantSettings):
    """Two settings with a rule relating them, a money amount and a float."""

    section: ClassVar[str] = "test.limits"
    default_ttl: int = 60
    max_ttl: int = 120
    ceiling: MoneyAmount = Money("100.00", "PHP")
    fee_rate: float = 0.01

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default_ttl > self.max_ttl:
            raise ValueError("default_ttl exceeds max_ttl")
        return self


def test_a_change_is_checked_against_the_current_settings_not_the_defaults(
    config: TenantConfigService, storage: Storage
) -> None:
    config.update(_ctx(), Limits, {"max_ttl": 1_000}, reason="longer codes")
    # 500 exceeds the default max_ttl (120) but not the tenant's (1,000).
    change = config.update(_ctx(), Limits, {"default_ttl": 500}, reason="longer default")
    assert change.version == 2
    assert config.get(_ctx(), Limits).default_ttl == 500
    audit = _audit(storage)
    with pytest.raises(ValidationError) as refused:
        config.update(_ctx(), Limits, {"max_ttl": 100}, reason="shorter", idempotency_key="k")
    assert refused.value.field == "changes.request"  # the rule, not one field, failed
    assert _audit(storage) == audit  # nothing written, the key not taken
    assert config.update(_ctx(), Limits, {"max_ttl": 600}, reason="ok", idempotency_key="k")


def test_the_same_change_in_another_key_order_or_form_is_the_same_request(
    config: TenantConfigService,
) -> None:
    first = config.update(
        _ctx(),
        Limits,
        {"max_ttl": 300, "ceiling": Money("50", "PHP")},
        reason="r",
        idempotency_key="same",
    )
    again = config.update(
        _ctx(),
        Limits,
        {"ceiling": {"amount": "50.00", "currency": "PHP"}, "max_ttl": 300},
        reason="r",
        idempotency_key="same",
    )
    assert again == first
    assert [h.version for h in config.history(_ctx(), Limits)] == [1]
    assert config.get(_ctx(), Limits).ceiling == Money("50.00", "PHP")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fee_rate": float("nan")}, "changes.fee_rate"),
        ({"fee_rate": float("inf")}, "changes.fee_rate"),
        ({"max_ttl": object()}, "changes.max_ttl"),
        ({"max_ttl": "\ud800"}, "changes.max_ttl"),
    ],
)
def test_values_no_backend_can_store_are_refused_alike(
    config: TenantConfigService, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        config.update(_ctx(), Limits, changes, reason="odd")
    assert refused.value.field == field
    assert config.history(_ctx(), Limits) == []


def test_a_setting_removed_by_a_later_release_does_not_lock_the_section(
    config: TenantConfigService, storage: Storage
) -> None:
    config.update(_ctx(), Limits, {"max_ttl": 200}, reason="before the upgrade")
    with storage.transaction() as uow:  # a version stored by a release that had one more
        uow.kernel.config_append(
            TENANT,
            ConfigVersion(
                section=Limits.section,
                version=2,
                values={**Limits(max_ttl=300).model_dump(mode="json"), "legacy_flag": True},
                changed_by="old-release",
                changed_at=datetime(2026, 1, 1, tzinfo=UTC),
                reason="set by an older release",
            ),
        )
    assert config.get(_ctx(), Limits).max_ttl == 300
    assert config.update(_ctx(), Limits, {"max_ttl": 400}, reason="after").version == 3
    assert "legacy_flag" not in config.history(_ctx(), Limits)[-1].values


def test_settings_refuse_secret_fields_when_declared() -> None:
    with pytest.raises(ConfigurationError, match="secret store"):

        class Webhooks(TenantSettings):
            section: ClassVar[str] = "test.webhooks"
            signing_secret: SecretStr | None = None


def test_concurrent_changes_to_one_section_all_succeed_in_turn(pg_clean: sa.Engine) -> None:
    """Without a lock per tenant and section, writers raced for the same version number and
    most failed with IntegrityViolation once the runner's retries ran out."""
    storage = SqlStorage(pg_clean)
    writers = 8
    services = [
        TenantConfigService(storage, default_policy(), ManualClock(), SequentialIds(n + 1))
        for n in range(writers)
    ]
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def change(n: int) -> None:
        start.wait()
        try:
            services[n].update(_ctx(), Limits, {"max_ttl": 200 + n}, reason=f"writer {n}")
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    history = services[0].history(_ctx(), Limits)
    assert [h.version for h in history] == list(range(1, writers + 1))
    assert sorted(h.values["max_ttl"] for h in history) == [200 + n for n in range(writers)]
    with storage.read() as uow:
        assert verify_chain(uow.kernel.audit_records(TENANT), uow.kernel.audit_head(TENANT)).ok
