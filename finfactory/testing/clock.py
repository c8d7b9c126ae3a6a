"""Deterministic clock and ids for tests and reproducible runs."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta


class ManualClock:
    """A clock that moves only when told to (``advance``/``set``); optional auto-tick."""

    def __init__(self, start: datetime | None = None, *, tick: timedelta = timedelta(0)) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._tick = tick
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            current = self._now
            self._now = current + self._tick
            return current

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        with self._lock:
            self._now = moment.astimezone(UTC)


class SequentialIds:
    """UUID-shaped ids from a counter: ``00000000-0000-4000-8000-000000000001``, ..."""

    def __init__(self, namespace: int = 0) -> None:
        self._next = 1
        self._namespace = namespace
        self._lock = threading.Lock()

    def new_id(self) -> str:
        with self._lock:
            n = self._next
            self._next += 1
        return str(uuid.UUID(int=(self._namespace << 96) | (0x4000 << 64) | (0x8 << 60) | n))
