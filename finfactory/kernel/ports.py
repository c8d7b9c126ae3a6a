"""Storage ports of the kernel. Adapters: SQLAlchemy (SQLite, PostgreSQL) and in-memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.audit import AuditDraft, AuditRecord


@attrs.frozen
class StoredOutcome:
    """What an idempotency key remembers: the request fingerprint and the first outcome."""

    command: str
    request_hash: str
    succeeded: bool
    response: dict[str, Any]


@attrs.frozen
class ConfigVersion:
    section: str
    version: int
    values: dict[str, Any]
    changed_by: str
    changed_at: datetime
    reason: str


class KernelStore(Protocol):
    """Rows the kernel owns: idempotency keys, audit chain, outbox, tenant configuration."""

    def claim_idempotency(
        self, tenant_id: str, key: str, command: str, request_hash: str, now: datetime
    ) -> StoredOutcome | None:
        """Reserve ``key`` for this transaction, or return what it stored before.

        ``None`` means this transaction now owns the key. A concurrent transaction holding
        the same key makes this call wait until that one commits or rolls back.
        """
        ...

    def complete_idempotency(
        self, tenant_id: str, key: str, succeeded: bool, response_json: str
    ) -> None:
        """Store the outcome (a result or an error, as JSON text) under the claimed key."""
        ...

    def purge_idempotency(self, created_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` stored outcomes whose key was claimed before
        ``created_before``, oldest first, and return how many went. A later request with a
        purged key runs afresh."""
        ...

    def append_audit(
        self, draft: AuditDraft, sealer: Callable[[AuditDraft, int, str], AuditRecord]
    ) -> None:
        """Chain ``draft`` after the tenant's head (``sealer(draft, sequence, prev_hash)``).

        An adapter may defer the write to the end of the transaction (the SQL adapter does:
        the tenant's audit head is a lock held to commit, so it is taken last).
        """
        ...

    def append_events(self, events: Sequence[EventEnvelope], *, last: bool = False) -> None:
        """Write to the outbox; positions are assigned in commit order (may be deferred to
        the end of the transaction, like :meth:`append_audit`).

        ``last`` says no row lock follows in this transaction (only audit records), so the
        adapter may start the write at once instead of at the end."""
        ...

    def read_events(
        self, after_position: int, limit: int, tenant_id: str | None = None
    ) -> list[EventEnvelope]:
        """Committed events with ``position > after_position`` (of one tenant if given),
        oldest first, at most ``limit`` (callers pass 1 or more)."""
        ...

    def audit_records(
        self, tenant_id: str, *, after_sequence: int = 0, limit: int | None = None
    ) -> Iterator[AuditRecord]:
        """The tenant's records numbered above ``after_sequence``, oldest first, at most
        ``limit`` of them (all without one)."""
        ...

    def audit_head(self, tenant_id: str) -> tuple[int, str] | None: ...

    def lock_config(self, tenant_id: str, section: str) -> None:
        """Hold off other transactions' changes to this tenant's section until this one
        ends, so that two concurrent changes number their versions one after the other."""
        ...

    def config_latest(self, tenant_id: str, section: str) -> ConfigVersion | None: ...

    def config_history(self, tenant_id: str, section: str) -> list[ConfigVersion]: ...

    def config_append(self, tenant_id: str, entry: ConfigVersion) -> None: ...


class UnitOfWork(Protocol):
    """One database transaction. ``owns_transaction`` is False when the caller opened it."""

    @property
    def kernel(self) -> KernelStore: ...

    @property
    def owns_transaction(self) -> bool: ...

    def flush(self) -> None:
        """Send writes the adapter buffered; called at the end of every command."""
        ...

    def savepoint(self, *, settle: bool = True) -> AbstractContextManager[None]:
        """Undo everything written inside the block if it raises; keep it otherwise.

        With ``settle`` (the default), writes made inside the block have reached the database
        when it ends normally, so their errors are raised inside it. ``settle=False`` lets
        them still be in flight: an error then surfaces at the transaction's next wait and
        fails what encloses the block (for a block nested in another savepoint or in a
        transaction that is rolled back as a whole, the outcome is the same, sooner).
        """
        ...


class Storage(Protocol):
    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        """Open a transaction that commits when the block ends normally, else rolls back."""
        ...

    def read(self) -> AbstractContextManager[UnitOfWork]:
        """A consistent read-only view (a transaction that is always rolled back)."""
        ...
