"""The request context every command receives explicitly: who, for which tenant, traced how."""

from __future__ import annotations

import re
import secrets
from enum import StrEnum

import attrs

from finfactory.kernel.errors import ValidationError

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class ActorKind(StrEnum):
    USER = "user"
    SERVICE = "service"
    AGENT = "agent"
    SYSTEM = "system"


@attrs.frozen
class Actor:
    id: str
    kind: ActorKind
    roles: frozenset[str] = frozenset()

    def __attrs_post_init__(self) -> None:
        if not self.id or len(self.id) > 128 or "\x00" in self.id:
            raise ValidationError("actor id must be 1-128 characters", field="actor.id")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def _check_trace_id(value: str) -> None:
    if not _TRACE_ID.match(value) or value == "0" * 32:
        raise ValidationError("trace_id must be 32 lower-case hex digits", field="trace_id")


@attrs.frozen
class RequestContext:
    """Passed into every command. ``trace_id`` is a W3C trace-context trace id."""

    tenant_id: str
    actor: Actor
    trace_id: str = attrs.field(factory=new_trace_id)
    correlation_id: str | None = None
    causation_id: str | None = None
    parent_span_id: str | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not _TENANT.match(self.tenant_id):
            raise ValidationError("tenant_id is malformed", field="tenant_id")
        _check_trace_id(self.trace_id)
        for name in ("correlation_id", "causation_id"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, str) or not 0 < len(value) <= 64 or "\x00" in value
            ):
                raise ValidationError(f"{name} must be 1-64 characters, no NUL", field=name)

    @classmethod
    def from_traceparent(
        cls, traceparent: str, *, tenant_id: str, actor: Actor, **kw: str | None
    ) -> RequestContext:
        match = _TRACEPARENT.match(traceparent.strip())
        if match is None:
            raise ValidationError("traceparent is not W3C trace-context", field="traceparent")
        return cls(
            tenant_id=tenant_id,
            actor=actor,
            trace_id=match.group(1),
            parent_span_id=match.group(2),
            **kw,
        )

    def traceparent(self, span_id: str | None = None) -> str:
        """A traceparent header for work done on behalf of this request."""
        span = span_id or self.parent_span_id or secrets.token_hex(8)
        return f"00-{self.trace_id}-{span}-01"

    def delegate(self, actor: Actor) -> RequestContext:
        """The same request, carried on by ``actor`` (a primitive calling another's API).

        Tenant, trace, correlation and causation stay, so the callee's audit records and
        events join the caller's in one trace; the caller audits its own actor.
        """
        return attrs.evolve(self, actor=actor, correlation_id=self.effective_correlation_id)

    @property
    def effective_correlation_id(self) -> str:
        return self.correlation_id or self.trace_id
