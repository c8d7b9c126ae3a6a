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


class PendingRows:
    """Waiting audit drafts and events, with marks that savepoints roll back to.

    A mark is a position in everything this unit of work was given, written or not, so it
    stays valid when the waiting rows are written early (a manual ``finish()``).
    """

    def __init__(self) -> None:
        self.audits: list[tuple[AuditDraft, Sealer]] = []
        self.events: list[EventEnvelope] = []
        self._audits_taken = 0
        self._events_taken = 0

    def marks(self) -> tuple[int, int]:
        return self._audits_taken + len(self.audits), self._events_taken + len(self.events)

    def truncate(self, marks: tuple[int, int]) -> None:
        """Drop what was given after ``marks`` and still waits (what was written is the
        database's to roll back)."""
        del self.audits[max(0, marks[0] - self._audits_taken) :]
        del self.events[max(0, marks[1] - self._events_taken) :]

    def take_events(self) -> list[EventEnvelope]:
        events, self.events = self.events, []
        self._events_taken += len(events)
        return events

    def take_audits_by_tenant(self) -> list[tuple[str, list[tuple[AuditDraft, Sealer]]]]:
        """Waiting audit drafts grouped by tenant, tenants in order (one lock order)."""
        audits, self.audits = self.audits, []
        self._audits_taken += len(audits)
        by_tenant: dict[str, list[tuple[AuditDraft, Sealer]]] = {}
        for draft, sealer in audits:
            by_tenant.setdefault(draft.tenant_id, []).append((draft, sealer))
        return sorted(by_tenant.items())


class HoldsBackAudits:
    """The kernel store methods both adapters share: audit drafts wait in ``_pending``."""

    _pending: PendingRows

    def append_audit(self, draft: AuditDraft, sealer: Sealer) -> None:
        self._pending.audits.append((draft, sealer))

    def pending_marks(self) -> tuple[int, int]:
        return self._pending.marks()

    def truncate_pending(self, marks: tuple[int, int]) -> None:
        self._pending.truncate(marks)
