"""The event type registry: every event declared once, with a typed payload and a description.

Names are lower-case and dot separated (``journal.posted``); a duplicate or malformed
declaration raises at import time, so a bad catalog can never ship.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import attrs
from pydantic import BaseModel

# Anchored for the published JSON Schema; matched with fullmatch here, since "$" alone
# lets a trailing newline through.
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", re.ASCII)
# Column sizes of ff_outbox (event_type, source, aggregate_type): a declaration that cannot
# be stored fails at import, not on the first command (and on PostgreSQL only).
MAX_NAME_LENGTH = 100
MAX_LABEL_LENGTH = 64


class EventDeclarationError(TypeError):
    """An event type declaration is malformed or duplicated."""


class EventPayload(BaseModel):
    """Base for event payload models: frozen, no unknown fields."""

    # NaN and infinity have no JSON form: refused when the event is emitted, on every backend
    # (PostgreSQL's json column would refuse them, SQLite and memory would keep them).
    model_config = {"frozen": True, "extra": "forbid", "allow_inf_nan": False}


@attrs.frozen
class EventType:
    name: str
    version: int
    payload_model: type[EventPayload]
    description: str
    primitive: str
    aggregate_type: str


@attrs.define
class EventRegistry:
    _types: dict[tuple[str, int], EventType] = attrs.field(factory=dict)

    def register(self, event_type: EventType) -> EventType:
        name = event_type.name
        if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
            raise EventDeclarationError(
                f"event name {name!r} must be lower-case words joined by dots"
            )
        if len(name) > MAX_NAME_LENGTH:
            raise EventDeclarationError(f"event name {name} is over {MAX_NAME_LENGTH} characters")
        if type(event_type.version) is not int or event_type.version < 1:
            raise EventDeclarationError(f"{name}: version must be a whole number >= 1")
        model = event_type.payload_model
        if not (isinstance(model, type) and issubclass(model, EventPayload)):
            raise EventDeclarationError(f"{name}: the payload must be an EventPayload subclass")
        if model.model_config.get("allow_inf_nan", True):
            raise EventDeclarationError(f"{name}: the payload must not allow NaN or infinity")
        for label in ("primitive", "aggregate_type"):
            value = getattr(event_type, label)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_LABEL_LENGTH:
                raise EventDeclarationError(
                    f"{name}: {label} must be 1 to {MAX_LABEL_LENGTH} characters"
                )
        if not event_type.description.strip() or "\n" in event_type.description:
            raise EventDeclarationError(f"{event_type.name}: needs a one-line description")
        key = (event_type.name, event_type.version)
        if key in self._types:
            raise EventDeclarationError(
                f"event {event_type.name} v{event_type.version} is declared twice"
            )
        self._types[key] = event_type
        return event_type

    def get(self, name: str, version: int | None = None) -> EventType:
        if version is None:
            versions = [v for (n, v) in self._types if n == name]
            if not versions:
                raise KeyError(name)
            version = max(versions)
        return self._types[(name, version)]

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda t: (t.primitive, t.name, t.version)))

    def __len__(self) -> int:
        return len(self._types)


REGISTRY = EventRegistry()


def declare_event(
    name: str,
    *,
    primitive: str,
    aggregate_type: str,
    description: str,
    version: int = 1,
    registry: EventRegistry | None = None,
) -> Callable[[type[EventPayload]], type[EventPayload]]:
    """Class decorator declaring ``cls`` as the payload of event ``name`` (version ``version``)."""

    def wrap(cls: type[EventPayload]) -> type[EventPayload]:
        (REGISTRY if registry is None else registry).register(
            EventType(name, version, cls, description, primitive, aggregate_type)
        )
        cls.__event_type__ = (name, version)  # type: ignore[attr-defined]
        return cls

    return wrap


def event_type_of(
    payload_type: type[EventPayload], registry: EventRegistry | None = None
) -> EventType:
    try:
        name, version = payload_type.__event_type__  # type: ignore[attr-defined]
    except AttributeError:
        raise EventDeclarationError(f"{payload_type.__name__} is not a declared event") from None
    return (REGISTRY if registry is None else registry).get(name, version)
