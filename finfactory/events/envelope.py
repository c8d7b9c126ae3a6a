"""The event envelope written to the outbox and carried to consumers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from finfactory.events.registry import EventPayload


@attrs.frozen
class PendingEvent:
    """An event a command produced; the kernel wraps it in an envelope when it is written.

    ``payload`` is the JSON form of ``payload_type``; it is validated against that model
    before it reaches the outbox.
    """

    payload_type: type[EventPayload]
    payload: dict[str, Any]
    aggregate_id: str
    aggregate_sequence: int


@attrs.frozen
class EventEnvelope:
    """One outbox row. ``position`` is the gap-safe commit-order cursor consumers resume from."""

    id: str
    event_type: str
    schema_version: int
    payload: dict[str, Any]
    recorded_at: datetime
    trace_id: str
    tenant_id: str
    source: str
    aggregate_type: str
    aggregate_id: str
    aggregate_sequence: int
    correlation_id: str
    causation_id: str | None
    position: int | None = None

    def to_json_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["recorded_at"] = self.recorded_at.isoformat()
        return data
