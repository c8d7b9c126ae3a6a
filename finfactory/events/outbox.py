"""Reading the transactional outbox directly (the "database polling" way of consuming).

Positions follow commit order, so a consumer that remembers the last position it handled
and asks for ``position > last`` never skips an event, even one a slower transaction commits
later (see docs/kernel.md for why this holds on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.paging import page_limit

if TYPE_CHECKING:  # the kernel's ports import the envelope module from this package
    from finfactory.kernel.ports import Storage


@attrs.define
class OutboxReader:
    """A cursor over committed events, optionally for one tenant."""

    storage: Storage
    tenant_id: str | None = None
    batch_size: int = attrs.field(default=500)

    @batch_size.validator
    def _check_batch_size(self, attribute: object, value: object) -> None:
        # SQLite reads LIMIT -1 as "no limit", PostgreSQL refuses it: checked here for all.
        page_limit(value, field="batch_size")

    def read(self, after_position: int = 0, limit: int | None = None) -> list[EventEnvelope]:
        """Committed events with ``position > after_position``, oldest first: at most
        ``limit`` of them (``batch_size`` without one)."""
        if type(after_position) is not int or after_position < 0:
            raise ValidationError(
                "after_position must be a whole number >= 0", field="after_position"
            )
        if limit is not None:
            page_limit(limit)
        with self.storage.read() as tx:
            return tx.kernel.read_events(
                after_position,
                self.batch_size if limit is None else limit,
                tenant_id=self.tenant_id,
            )

    def drain(self, after_position: int = 0) -> Iterator[EventEnvelope]:
        """Every event committed after ``after_position`` as of now, in batches."""
        cursor = after_position
        while True:
            batch = self.read(cursor)
            if not batch:
                return
            yield from batch
            cursor = batch[-1].position or cursor
