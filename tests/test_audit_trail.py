"""The audit trail is readable and verifiable only with audit.read, per tenant."""

from __future__ import annotations

from typing import Any

import pytest

from finfactory.kernel import AuditTrail, PermissionDenied, ValidationError, default_policy
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import OpenAccount
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds
from tests.conftest import context


def test_auditor_reads_and_verifies_own_tenant_only(storage: Storage) -> None:
    clock, ids = ManualClock(), SequentialIds()
    ledger = LedgerService(storage, default_policy(), clock, ids)
    trail = AuditTrail(storage, default_policy(), clock, ids)
    for n in range(3):
        ledger.open_account(context("a"), OpenAccount(code=f"x{n}", currency="PHP", type="asset"))
    ledger.open_account(context("b"), OpenAccount(code="y", currency="PHP", type="asset"))
    auditor = context("a", roles=frozenset({"auditor"}), actor="auditor-1")
    records = trail.records(auditor)
    assert [r.sequence for r in records] == [1, 2, 3]
    assert {r.tenant_id for r in records} == {"a"}
    assert [r.sequence for r in trail.records(auditor, after_sequence=1, limit=1)] == [2]
    verification = trail.verify(auditor)
    assert verification.ok
    assert verification.records_checked == 3

    clerk = context("a", roles=frozenset({"ledger.operator"}), actor="clerk")
    with pytest.raises(PermissionDenied):
        trail.verify(clerk)
    # The denial itself is on the record.
    last = trail.records(auditor, after_sequence=3)
    assert [(r.actor_id, r.outcome.value, r.action) for r in last] == [
        ("clerk", "denied", "audit.read")
    ]


@pytest.mark.parametrize(
    ("paging", "field"),
    [
        ({"after_sequence": -1}, "after_sequence"),
        ({"after_sequence": 2**63}, "after_sequence"),
        ({"after_sequence": "3"}, "after_sequence"),
        ({"limit": True}, "limit"),
    ],
)
def test_paging_input_is_checked_alike_on_every_store(
    storage: Storage, paging: dict[str, Any], field: str
) -> None:
    trail = AuditTrail(storage, default_policy(), ManualClock(), SequentialIds())
    with pytest.raises(ValidationError) as refused:
        trail.records(context("a", roles=frozenset({"auditor"})), **paging)
    assert refused.value.field == field


def test_a_page_deep_in_a_long_trail_reads_only_that_page(storage: Storage) -> None:
    """The store answers with the page itself: the trail used to read every record before
    the page and drop them in Python, so reading a whole trail page by page was quadratic."""
    clock, ids = ManualClock(), SequentialIds()
    ledger = LedgerService(storage, default_policy(), clock, ids)
    for n in range(30):
        ledger.open_account(context("a"), OpenAccount(code=f"x{n}", currency="PHP", type="asset"))
    trail = AuditTrail(storage, default_policy(), clock, ids)
    auditor = context("a", roles=frozenset({"auditor"}), actor="auditor-1")
    seen: list[int] = []
    after = 0
    while page := trail.records(auditor, after_sequence=after, limit=7):
        seen += [r.sequence for r in page]
        after = page[-1].sequence
    assert seen == list(range(1, 31))
    calls: list[dict[str, Any]] = []
    with storage.read() as uow:
        real = uow.kernel.audit_records

        def spy(tenant_id: str, **paging: Any) -> Any:
            calls.append(paging)
            return real(tenant_id, **paging)

        uow.kernel.audit_records = spy  # type: ignore[method-assign]
        assert [
            r.sequence for r in trail.records(auditor, after_sequence=20, limit=3, uow=uow)
        ] == [
            21,
            22,
            23,
        ]
    assert calls == [{"after_sequence": 20, "limit": 3}]
