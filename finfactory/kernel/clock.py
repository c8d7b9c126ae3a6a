"""Clock and id ports, with deterministic fakes in :mod:`finfactory.testing`."""

from __future__ import annotations

import os
import threading
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


_IDS_PER_READ = 256
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class UuidGenerator:
    """Random UUIDv4 strings; ordering comes from positions and sequences, never from ids.

    The randomness is the operating system's CSPRNG, as in :func:`uuid.uuid4`, read 4 KiB
    at a time and formatted directly: ``str(uuid.uuid4())`` costs about 2.5 us, which a
    batch of postings (five ids per journal) paid thousands of times a second. Each thread
    has its own buffer, and a forked child never reuses bytes its parent had read.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def new_id(self) -> str:
        local = self._local
        ids: list[str] | None = getattr(local, "ids", None)
        if not ids or local.generation != _fork_generation:
            ids = local.ids = _uuid4_strings(_IDS_PER_READ)
            local.generation = _fork_generation
        return ids.pop()


def _uuid4_strings(count: int) -> list[str]:
    raw = bytearray(os.urandom(16 * count))
    for offset in range(0, len(raw), 16):
        raw[offset + 6] = (raw[offset + 6] & 0x0F) | 0x40  # version 4
        raw[offset + 8] = (raw[offset + 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}"
        f"-{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, len(text), 32)
    ]
