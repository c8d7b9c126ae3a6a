"""Clock and id ports, with deterministic fakes in :mod:`finfactory.testing`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

from finfactory.kernel.errors import ConfigurationError


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A new globally unique id (a UUID string)."""
        ...


def utc_now(clock: Clock) -> datetime:
    """The clock's reading in UTC; a naive reading is refused (it would mean local time)."""
    now = clock.now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigurationError("the clock returned a naive datetime; clocks must be aware")
    return now if now.tzinfo is UTC else now.astimezone(UTC)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator:
    """Random UUIDv4 strings; ordering comes from positions and sequences, never from ids."""

    def new_id(self) -> str:
        return str(uuid.uuid4())
