"""Anchors catch what the chain alone cannot: a history rewritten as a whole, hashes and head
included, or cut short with the head wound back (someone with full rights on the database)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.storage import SqlStorage
from finfactory.kernel import AuditAnchor, AuditTrail, PermissionDenied, ValidationError
from finfactory.kernel.audit import GENESIS_HASH, AuditRecord, record_hash, verify_chain
from finfactory.kernel.authz import default_policy
from finfactory.kernel.ports import Storage
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds
from tests.test_audit_tamper import (
    OTHER,
    TENANT,
    _ctx,
    audit_log_unprotected,
    records,
    run_commands,
    verify,
)

AUDITOR = _ctx(roles=frozenset({"auditor"}), actor="auditor-1")


def trail(storage: Storage) -> AuditTrail:
    return AuditTrail(storage, default_policy(), ManualClock(), SequentialIds(namespace=9))


def anchor_at(recs: list[AuditRecord], sequence: int) -> AuditAnchor:
    return AuditAnchor(TENANT, sequence, recs[sequence - 1].hash)


def rewritten(recs: list[AuditRecord], start: int) -> list[AuditRecord]:
    """The chain with record ``start`` edited and every hash from there on recomputed: what
    someone who knows the (public) hashing scheme and can write every row would produce."""
    out = recs[: start - 1]
    prev = out[-1].hash if out else GENESIS_HASH
    for rec in recs[start - 1 :]:
        rec = attrs.evolve(rec, prev_hash=prev)
        if rec.sequence == start:
            rec = attrs.evolve(rec, reason="approved by nobody")
        rec = attrs.evolve(rec, hash=record_hash(rec, rec.sequence, prev))
        out.append(rec)
        prev = rec.hash
    return out


# -- tampering by backend --------------------------------------------------------------------
def sql_tamper(engine: sa.Engine) -> Callable[[list[AuditRecord], int], None]:
    """Replace the tenant's chain by ``chain`` (first ``keep`` records) and move the head."""

    def apply(chain: list[AuditRecord], keep: int) -> None:
        with engine.begin() as conn, audit_log_unprotected(conn, heads=True):
            params = {"t": TENANT}
            conn.execute(
                sa.text("DELETE FROM ff_audit_log WHERE tenant_id = :t AND sequence > :k"),
                {**params, "k": keep},
            )
            for rec in chain[:keep]:
                conn.execute(
                    sa.text(
                        "UPDATE ff_audit_log SET reason = :r, prev_hash = :p, hash = :h"
                        " WHERE tenant_id = :t AND sequence = :s"
                    ),
                    {
                        **params,
                        "s": rec.sequence,
                        "r": rec.reason,
                        "p": rec.prev_hash,
                        "h": rec.hash,
                    },
                )
            conn.execute(
                sa.text(
                    "UPDATE ff_audit_heads SET last_sequence = :k, last_hash = :h"
                    " WHERE tenant_id = :t"
                ),
                {**params, "k": keep, "h": chain[keep - 1].hash},
            )

    return apply


def memory_tamper(storage: MemoryStorage) -> Callable[[list[AuditRecord], int], None]:
    def apply(chain: list[AuditRecord], keep: int) -> None:
        log = storage.db.tables["ff_audit_log"]
        for key in [k for k in log if k[0] == TENANT and k[1] > keep]:
            del log[key]
        for rec in chain[:keep]:
            log[(TENANT, rec.sequence)] = rec
        storage.db.tables["ff_audit_heads"][TENANT] = (keep, chain[keep - 1].hash)

    return apply


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def tampering(
    request: pytest.FixtureRequest,
) -> tuple[Storage, Callable[[list[AuditRecord], int], None]]:
    if request.param == "memory":
        memory = MemoryStorage()
        return memory, memory_tamper(memory)
    engine: sa.Engine = request.getfixturevalue(
        "sqlite_engine" if request.param == "sqlite" else "pg_clean"
    )
    return SqlStorage(engine), sql_tamper(engine)


# -- the tests ------------------------------------------------------------------------------
def test_a_rewritten_history_passes_the_chain_but_not_an_anchor(
    tampering: tuple[Storage, Callable[[list[AuditRecord], int], None]],
) -> None:
    storage, tamper = tampering
    run_commands(storage)
    recs = records(storage)
    assert len(recs) == 8
    kept_aside = [trail(storage).anchor(AUDITOR)]
    assert kept_aside == [anchor_at(recs, 8)]
    early = anchor_at(recs, 3)

    tamper(rewritten(recs, 4), 8)

    assert records(storage)[3].reason == "approved by nobody"
    assert verify(storage).ok  # consistent: the chain alone cannot tell
    result = trail(storage).verify(AUDITOR, anchors=[early, *kept_aside])
    assert not result.ok
    assert result.broken_at == 8  # the first anchored record that changed
    assert result.problem is not None
    assert "rewritten" in result.problem
    assert trail(storage).verify(AUDITOR, anchors=[early]).ok  # records 1-3 are untouched
    assert verify(storage, OTHER).ok


def test_a_history_cut_short_passes_the_chain_but_not_an_anchor(
    tampering: tuple[Storage, Callable[[list[AuditRecord], int], None]],
) -> None:
    storage, tamper = tampering
    run_commands(storage)
    recs = records(storage)
    kept_aside = trail(storage).anchor(AUDITOR)

    tamper(recs, 6)  # the last two records gone, the head wound back to the sixth

    assert [r.sequence for r in records(storage)] == [1, 2, 3, 4, 5, 6]
    assert verify(storage).ok
    result = trail(storage).verify(AUDITOR, anchors=[kept_aside])
    assert not result.ok
    assert result.broken_at == 7
    assert result.problem == "an anchor vouches for record 8, the chain ends at 6"


def test_every_anchor_of_an_honest_chain_verifies(storage: Storage) -> None:
    auditors_trail = trail(storage)
    anchors = [auditors_trail.anchor(AUDITOR)]
    assert anchors[0] == AuditAnchor(TENANT, 0, GENESIS_HASH)
    run_commands(storage)
    anchors.append(auditors_trail.anchor(AUDITOR))  # itself a read: not audited unless denied
    recs = records(storage)
    anchors += [anchor_at(recs, n) for n in range(1, len(recs) + 1)]
    result = auditors_trail.verify(AUDITOR, anchors=anchors)
    assert result.ok, result
    assert result.records_checked == len(recs)


def test_anchors_are_read_with_audit_read_and_only_for_the_own_tenant(storage: Storage) -> None:
    run_commands(storage)
    auditors_trail = trail(storage)
    with pytest.raises(PermissionDenied):
        auditors_trail.anchor(_ctx(roles=frozenset({"ledger.operator"}), actor="clerk"))
    others = auditors_trail.anchor(_ctx(OTHER, roles=frozenset({"auditor"})))
    assert others.tenant_id == OTHER
    with pytest.raises(ValidationError) as refused:
        auditors_trail.verify(AUDITOR, anchors=[others])
    assert refused.value.details["field"] == "anchors.0.tenant_id"
    with pytest.raises(ValidationError) as refused:
        auditors_trail.verify(AUDITOR, anchors=[others.to_dict()])  # type: ignore[list-item]
    assert refused.value.details["field"] == "anchors.0"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"tenant_id": "", "sequence": 1, "hash": "a" * 64}, "tenant_id"),
        ({"tenant_id": "t", "sequence": -1, "hash": "a" * 64}, "sequence"),
        ({"tenant_id": "t", "sequence": True, "hash": "a" * 64}, "sequence"),
        ({"tenant_id": "t", "sequence": "3", "hash": "a" * 64}, "sequence"),
        ({"tenant_id": "t", "sequence": 1, "hash": "A" * 64}, "hash"),
        ({"tenant_id": "t", "sequence": 1, "hash": "a" * 63}, "hash"),
        ({"tenant_id": "t", "sequence": 1, "hash": "a" * 64, "extra": 1}, "anchor"),
        ({"tenant_id": "t", "sequence": 1}, "anchor"),
    ],
)
def test_malformed_anchors_are_refused(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AuditAnchor.from_dict(data)
    assert refused.value.details["field"] == field


def test_anchor_round_trips_through_a_dict_and_disagreeing_anchors_are_refused() -> None:
    anchor = AuditAnchor("t", 5, "ab" * 32)
    assert AuditAnchor.from_dict(anchor.to_dict()) == anchor
    with pytest.raises(ValidationError) as refused:
        verify_chain([], None, [anchor, AuditAnchor("t", 5, "cd" * 32)])
    assert refused.value.details["field"] == "anchors"
    genesis_lie = verify_chain([], None, [AuditAnchor("t", 0, "cd" * 32)])
    assert not genesis_lie.ok
