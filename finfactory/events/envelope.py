"""The event envelope written to the outbox and carried to consumers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from finfactory.events.jsontext import decode_json, encode_json
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

    def payload_json(self) -> bytes:
        """The payload as UTF-8 JSON (:func:`~finfactory.events.jsontext.encode_json`).

        Envelopes read from a store return the JSON text as stored, without decoding it:
        the same value, possibly spaced or ordered differently.
        """
        return encode_json(self.payload)


class StoredEventEnvelope(EventEnvelope):
    """An envelope read back from the outbox, whose payload is decoded on first use.

    A relay forwarding thousands of events a second to a broker never needs the payload as
    a dict: :meth:`payload_json` hands over the stored text, and ``payload`` parses it only
    when something reads it. In every other way it is an :class:`EventEnvelope`: it
    compares equal to one with the same fields, and :func:`attrs.evolve` works on it.
    """

    __slots__ = ("_stored_json",)

    @classmethod
    def from_stored(
        cls,
        stored_json: str | bytes,
        *,
        id: str,
        event_type: str,
        schema_version: int,
        recorded_at: datetime,
        trace_id: str,
        tenant_id: str,
        source: str,
        aggregate_type: str,
        aggregate_id: str,
        aggregate_sequence: int,
        correlation_id: str,
        causation_id: str | None,
        position: int | None,
    ) -> StoredEventEnvelope:
        """An envelope whose payload is the JSON object ``stored_json`` (not checked here:
        a store hands over what it stored)."""
        env = cls.__new__(cls)
        put = object.__setattr__  # frozen: this is how attrs itself sets the fields
        put(env, "_stored_json", stored_json)
        put(env, "id", id)
        put(env, "event_type", event_type)
        put(env, "schema_version", schema_version)
        put(env, "recorded_at", recorded_at)
        put(env, "trace_id", trace_id)
        put(env, "tenant_id", tenant_id)
        put(env, "source", source)
        put(env, "aggregate_type", aggregate_type)
        put(env, "aggregate_id", aggregate_id)
        put(env, "aggregate_sequence", aggregate_sequence)
        put(env, "correlation_id", correlation_id)
        put(env, "causation_id", causation_id)
        put(env, "position", position)
        return env

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set: the payload slot, until first read.
        if name != "payload":
            raise AttributeError(name)
        payload = decode_json(object.__getattribute__(self, "_stored_json"))
        object.__setattr__(self, "payload", payload)
        return payload

    def payload_json(self) -> bytes:
        try:
            stored = object.__getattribute__(self, "_stored_json")
        except AttributeError:  # built by evolve() or unpickled: the payload is the truth
            return super().payload_json()
        return stored.encode("utf-8") if isinstance(stored, str) else stored

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventEnvelope):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in _FIELDS)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = EventEnvelope.__hash__


_FIELDS = attrs.fields(EventEnvelope)
