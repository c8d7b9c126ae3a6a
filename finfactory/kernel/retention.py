"""Retention of stored idempotency outcomes.

Every keyed command leaves its outcome in ``ff_idempotency`` so that a retry replays it. Clients
retry within minutes or hours, not years: :func:`purge_idempotency_keys` deletes the outcomes
older than a window the product chooses (a day, as card networks and payment APIs commonly
promise, or longer). A request that arrives with a purged key runs as a new one.
"""

from __future__ import annotations

from datetime import timedelta

from finfactory.kernel.clock import Clock, utc_now
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.ports import Storage


def purge_idempotency_keys(
    storage: Storage, clock: Clock, *, keep_for: timedelta, batch_size: int = 1000
) -> int:
    """Delete the idempotency outcomes of every tenant claimed more than ``keep_for`` ago.

    Works in transactions of ``batch_size`` keys, so that it never holds many locks or a long
    transaction; returns how many keys went. Safe to run while commands run, and to run again.
    """
    if keep_for <= timedelta(0):
        raise ValidationError("keep_for must be a positive duration", field="keep_for")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError("batch_size must be a positive integer", field="batch_size")
    cutoff = utc_now(clock) - keep_for
    purged = 0
    while True:
        with storage.transaction() as tx:
            count = tx.kernel.purge_idempotency(cutoff, batch_size)
        purged += count
        if count < batch_size:
            return purged
