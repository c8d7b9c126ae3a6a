"""Clock and id ports, with deterministic fakes in :mod:`finfactory.testing`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A new globally unique id (a UUID string)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator:
    """Random UUIDv4 strings; ordering comes from positions and sequences, never from ids."""

    def new_id(self) -> str:
        return str(uuid.uuid4())
