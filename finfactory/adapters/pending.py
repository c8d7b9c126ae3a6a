"""The audit records and events a unit of work holds back until its transaction ends.

Both adapters write them last, in :meth:`finish`: on PostgreSQL their locks (the outbox lock,
each tenant's audit head) are then the last a transaction takes, in one order for everyone.
The in-memory adapter does the same, so that what a unit of work can read back is the same
on every adapter.
"""

from __future__ import annotations

from collections.abc import Callable

from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.audit import AuditDraft, AuditRecord

Sealer = Callable[[AuditDraft, int, str], AuditRecord]


PendingMark = tuple[int, int, int, int]
"""Audit drafts given, events given, audit drafts written, events written: where a unit of
work stood when a savepoint was taken."""
START: PendingMark = (0, 0, 0, 0)


class PendingRows:
    """Waiting audit drafts and events, with marks that savepoints roll back to.

    Everything given is kept until the unit of work ends, written or not: rows that waited
    when a savepoint was taken and were written inside it (a manual ``finish()``) are rolled
    back by the database with the savepoint, so they wait again.
    """

    def __init__(self) -> None:
        self.audits: list[tuple[AuditDraft, Sealer]] = []
        self.events: list[EventEnvelope] = []
        self._audits_written = 0
        self._events_written = 0

    def marks(self) -> PendingMark:
        return len(self.audits), len(self.events), self._audits_written, self._events_written

    def truncate(self, marks: PendingMark) -> None:
        """Back to ``marks``: drop what was given since, and what was written since waits
        again (the database undoes those writes)."""
        audits_given, events_given, audits_written, events_written = marks
        del self.audits[audits_given:]
        del self.events[events_given:]
        self._audits_written = min(self._audits_written, audits_written)
        self._events_written = min(self._events_written, events_written)

    def take_events(self) -> list[EventEnvelope]:
        events = self.events[self._events_written :]
        self._events_written = len(self.events)
        return events

    def take_audits_by_tenant(self) -> list[tuple[str, list[tuple[AuditDraft, Sealer]]]]:
        """Waiting audit drafts grouped by tenant, tenants in order (one lock order)."""
        audits = self.audits[self._audits_written :]
        self._audits_written = len(self.audits)
        by_tenant: dict[str, list[tuple[AuditDraft, Sealer]]] = {}
        for draft, sealer in audits:
            by_tenant.setdefault(draft.tenant_id, []).append((draft, sealer))
        return sorted(by_tenant.items())


class HoldsBackAudits:
    """The kernel store methods both adapters share: audit drafts wait in ``_pending``."""

    _pending: PendingRows

    def append_audit(self, draft: AuditDraft, sealer: Sealer) -> None:
        self._pending.audits.append((draft, sealer))

    def pending_marks(self) -> PendingMark:
        return self._pending.marks()

    def truncate_pending(self, marks: PendingMark) -> None:
        self._pending.truncate(marks)
