"""Arguments of paged reads, checked before any read and alike for every store (a store would
otherwise fail on a string, a float or a negative number in its own way)."""

from __future__ import annotations

from finfactory.kernel.errors import ValidationError

# Sequences and cursors are signed 64-bit integers in storage.
MAX_SEQUENCE = 2**63 - 1


def page_limit(limit: object, maximum: int | None = None, field: str = "limit") -> int:
    """A page size: a whole number from 1; above ``maximum`` (if any) it means ``maximum``."""
    if type(limit) is not int or limit < 1:
        upto = "" if maximum is None else f" to {maximum}"
        raise ValidationError(f"{field} must be a whole number from 1{upto}", field=field)
    return limit if maximum is None else min(limit, maximum)


def sequence_cursor(value: object, field: str) -> int:
    """A cursor naming the last sequence already read: a whole number from 0."""
    if type(value) is not int or not 0 <= value <= MAX_SEQUENCE:
        raise ValidationError(f"{field} must be a whole number >= 0", field=field)
    return value
