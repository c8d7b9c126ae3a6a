"""Retention: rows kept for replay or deduplication do not have to live for ever.

Every keyed command leaves its outcome in ``ff_idempotency`` so that a retry replays it.
Clients retry within minutes or hours, not years: :func:`purge_idempotency_keys` deletes the
outcomes older than a window the product chooses (a day, as payment APIs commonly promise,
or longer). A request that arrives with a purged key runs as a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from finfactory.kernel.clock import Clock, utc_now
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.ports import Storage, UnitOfWork

PurgeBatch = Callable[[UnitOfWork, datetime, int], int]
"""Deletes up to ``limit`` rows older than the cutoff in one unit of work; returns how many."""


def purge_in_batches(
    storage: Storage, clock: Clock, purge: PurgeBatch, *, keep_for: timedelta, batch_size: int
) -> int:
    """Run ``purge`` in transactions of ``batch_size`` rows until it finds fewer: no long
    transaction and few locks at a time, so commands keep running meanwhile."""
    if not isinstance(keep_for, timedelta) or keep_for <= timedelta(0):
        raise ValidationError("keep_for must be a positive duration", field="keep_for")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError("batch_size must be a positive integer", field="batch_size")
    cutoff = utc_now(clock) - keep_for
    purged = 0
    while True:
        with storage.transaction() as tx:
            count = purge(tx, cutoff, batch_size)
        purged += count
        if count < batch_size:
            return purged


def purge_idempotency_keys(
    storage: Storage, clock: Clock, *, keep_for: timedelta, batch_size: int = 1000
) -> int:
    """Delete the idempotency outcomes of every tenant claimed more than ``keep_for`` ago,
    oldest first, and return how many went. Safe to run while commands run, and again."""
    return purge_in_batches(
        storage,
        clock,
        lambda tx, cutoff, limit: tx.kernel.purge_idempotency(cutoff, limit),
        keep_for=keep_for,
        batch_size=batch_size,
    )
