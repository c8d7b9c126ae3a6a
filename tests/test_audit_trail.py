"""The audit trail is readable and verifiable only with audit.read, per tenant."""

from __future__ import annotations

import pytest

from finfactory.kernel import AuditTrail, PermissionDenied, default_policy
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
