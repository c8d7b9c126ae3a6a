"""Append-only audit log, hash-chained per tenant.

Each record's hash covers its own fields and the previous record's hash, and records are
numbered 1, 2, 3... per tenant; a head row remembers the last number and hash. Editing a
record breaks its hash, deleting one leaves a gap (or a head that points past the end), and
reordering breaks the links. :func:`verify_chain` reports the first place it breaks.

The chain alone cannot tell a history rewritten as a whole (every hash recomputed, the head
moved to match) or cut short (the newest records deleted, the head wound back) by someone
with full rights on the database. An :class:`AuditAnchor`, a head copied to a place that
person cannot write, closes that gap: verifying against it fails unless the record it names
is still there with the same hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import attrs

from finfactory.kernel.canonical import canonical_json, sha256_hex
from finfactory.kernel.errors import ValidationError

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


_HASH = re.compile(r"[0-9a-f]{64}")


def _check_anchor(anchor: AuditAnchor, attribute: attrs.Attribute[Any], value: Any) -> None:
    name = attribute.name
    if name == "tenant_id" and not (isinstance(value, str) and value):
        raise ValidationError("an anchor names its tenant", field="tenant_id")
    if name == "sequence" and (type(value) is not int or value < 0):
        raise ValidationError("an anchor's sequence is a whole number >= 0", field="sequence")
    if name == "hash" and not (isinstance(value, str) and _HASH.fullmatch(value)):
        raise ValidationError("an anchor's hash is 64 lower-case hex digits", field="hash")


@attrs.frozen
class AuditAnchor:
    """A tenant's chain head as it was at some moment: record ``sequence`` had ``hash``.

    Take one regularly (``AuditTrail.anchor``) and keep it where whoever administers the
    database cannot write: a log service, object storage with retention, a signed report.
    Sequence 0 with the genesis hash anchors an empty chain.
    """

    tenant_id: str = attrs.field(validator=_check_anchor)
    sequence: int = attrs.field(validator=_check_anchor)
    hash: str = attrs.field(validator=_check_anchor)

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "sequence": self.sequence, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditAnchor:
        """The inverse of :meth:`to_dict`; anything else is a ValidationError."""
        if not isinstance(data, Mapping) or set(data) != {"tenant_id", "sequence", "hash"}:
            raise ValidationError(
                "an anchor has exactly tenant_id, sequence and hash", field="anchor"
            )
        return cls(data["tenant_id"], data["sequence"], data["hash"])


@attrs.frozen
class ChainVerification:
    ok: bool
    records_checked: int
    broken_at: int | None = None
    problem: str | None = None


def verify_chain(
    records: Iterable[AuditRecord],
    head: tuple[int, str] | None,
    anchors: Iterable[AuditAnchor] = (),
) -> ChainVerification:
    """Check one tenant's records, given in storage order, against the stored head and any
    anchors taken from that tenant's head earlier (see :class:`AuditAnchor`)."""
    vouched: dict[int, str] = {}
    for anchor in anchors:
        if vouched.setdefault(anchor.sequence, anchor.hash) != anchor.hash:
            raise ValidationError(
                f"two anchors disagree about record {anchor.sequence}", field="anchors"
            )
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    if vouched.get(0, GENESIS_HASH) != GENESIS_HASH:
        return ChainVerification(False, 0, 0, "an anchor for record 0 must hold the genesis hash")
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
        if vouched.get(rec.sequence, rec.hash) != rec.hash:
            return ChainVerification(
                False,
                count,
                rec.sequence,
                "record differs from its anchor: the chain was rewritten up to here",
            )
        prev = rec.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    beyond = max(vouched, default=0)
    if beyond > last_seq:
        return ChainVerification(
            False,
            count,
            last_seq + 1,
            f"an anchor vouches for record {beyond}, the chain ends at {last_seq}",
        )
    head_seq, head_hash = head if head is not None else (0, GENESIS_HASH)
    if (head_seq, head_hash) != (last_seq, prev):
        return ChainVerification(
            False, count, last_seq + 1, f"head says {head_seq} records, chain has {last_seq}"
        )
    return ChainVerification(True, count)
