"""Append-only audit log, hash-chained per tenant.

Each record's hash covers its own fields and the previous record's hash, and records are
numbered 1, 2, 3... per tenant; a head row remembers the last number and hash. Editing a
record breaks its hash, deleting one leaves a gap (or a head that points past the end), and
reordering breaks the links. :func:`verify_chain` reports the first place it breaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import attrs

from finfactory.kernel.canonical import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    DENIED = "denied"
    REPLAYED = "replayed"
    CONFLICT = "conflict"


@attrs.frozen
class AuditDraft:
    """What a command knows about itself; sequence and hashes are added when it is sealed."""

    id: str
    tenant_id: str
    occurred_at: datetime
    actor_id: str
    actor_kind: str
    action: str
    resource_type: str
    resource_id: str | None
    outcome: Outcome
    reason: str
    trace_id: str
    summary: dict[str, Any]


@attrs.frozen
class AuditRecord:
    id: str
    tenant_id: str
    sequence: int
    occurred_at: datetime
    actor_id: str
    actor_kind: str
    action: str
    resource_type: str
    resource_id: str | None
    outcome: Outcome
    reason: str
    trace_id: str
    summary: dict[str, Any]
    prev_hash: str
    hash: str


def _hashed_fields(draft: AuditDraft | AuditRecord, sequence: int) -> dict[str, Any]:
    return {
        "id": draft.id,
        "tenant_id": draft.tenant_id,
        "sequence": sequence,
        "occurred_at": draft.occurred_at.astimezone(UTC).isoformat(),
        "actor_id": draft.actor_id,
        "actor_kind": draft.actor_kind,
        "action": draft.action,
        "resource_type": draft.resource_type,
        "resource_id": draft.resource_id,
        "outcome": Outcome(draft.outcome).value,
        "reason": draft.reason,
        "trace_id": draft.trace_id,
        "summary": draft.summary,
    }


def record_hash(draft: AuditDraft | AuditRecord, sequence: int, prev_hash: str) -> str:
    return sha256_hex(prev_hash + canonical_json(_hashed_fields(draft, sequence)))


def seal(draft: AuditDraft, sequence: int, prev_hash: str) -> AuditRecord:
    return AuditRecord(
        id=draft.id,
        tenant_id=draft.tenant_id,
        sequence=sequence,
        occurred_at=draft.occurred_at,
        actor_id=draft.actor_id,
        actor_kind=draft.actor_kind,
        action=draft.action,
        resource_type=draft.resource_type,
        resource_id=draft.resource_id,
        outcome=draft.outcome,
        reason=draft.reason,
        trace_id=draft.trace_id,
        summary=draft.summary,
        prev_hash=prev_hash,
        hash=record_hash(draft, sequence, prev_hash),
    )


@attrs.frozen
class ChainVerification:
    ok: bool
    records_checked: int
    broken_at: int | None = None
    problem: str | None = None


def verify_chain(records: Iterable[AuditRecord], head: tuple[int, str] | None) -> ChainVerification:
    """Check one tenant's records, given in storage order, against the stored head."""
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for rec in records:
        count += 1
        if rec.sequence != expected_seq:
            return ChainVerification(
                False, count, expected_seq, f"expected record {expected_seq}, found {rec.sequence}"
            )
        if rec.prev_hash != prev:
            return ChainVerification(
                False, count, rec.sequence, "link to the previous record is broken"
            )
        if record_hash(rec, rec.sequence, rec.prev_hash) != rec.hash:
            return ChainVerification(False, count, rec.sequence, "record content was altered")
        prev = rec.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    head_seq, head_hash = head if head is not None else (0, GENESIS_HASH)
    if (head_seq, head_hash) != (last_seq, prev):
        return ChainVerification(
            False, count, last_seq + 1, f"head says {head_seq} records, chain has {last_seq}"
        )
    return ChainVerification(True, count)
