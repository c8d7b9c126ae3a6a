"""Event envelope, the registry of event types, and reading the outbox."""

from finfactory.events.envelope import EventEnvelope, PendingEvent
from finfactory.events.outbox import OutboxReader
from finfactory.events.registry import (
    REGISTRY,
    EventDeclarationError,
    EventPayload,
    EventRegistry,
    EventType,
    declare_event,
)

__all__ = [
    "REGISTRY",
    "EventDeclarationError",
    "EventEnvelope",
    "EventPayload",
    "EventRegistry",
    "EventType",
    "OutboxReader",
    "PendingEvent",
    "declare_event",
]
