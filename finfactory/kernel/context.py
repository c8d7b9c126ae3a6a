"""The request context every command receives explicitly: who, for which tenant, traced how."""

from __future__ import annotations

import re
import secrets
import unicodedata
from enum import StrEnum

import attrs

from finfactory.kernel.errors import ValidationError

# W3C Trace Context: version, trace id, parent id, flags; a later version may append fields
# after a further "-", which a version-00 reader ignores.
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?",
    re.ASCII | re.DOTALL,
)
_TRACE_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)
_SPAN_ID = re.compile(r"[0-9a-f]{16}", re.ASCII)
_FLAGS = re.compile(r"[0-9a-f]{2}", re.ASCII)
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)
# Trace flags defined so far: 01 sampled, 02 random trace id (Trace Context Level 2).
_KNOWN_FLAGS = 0x03


class ActorKind(StrEnum):
    USER = "user"
    SERVICE = "service"
    AGENT = "agent"
    SYSTEM = "system"


def _check_text(value: object, field: str, limit: int) -> None:
    """An id that every backend stores alike: text of 1..limit characters, valid Unicode (no
    lone surrogates, which cannot be encoded), no control characters (no NUL for
    PostgreSQL, nothing that could split a log line or a header)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= limit
        or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)
    ):
        raise ValidationError(
            f"{field} must be 1-{limit} characters, without control characters", field=field
        )


@attrs.frozen
class Actor:
    id: str
    kind: ActorKind
    roles: frozenset[str] = frozenset()

    def __attrs_post_init__(self) -> None:
        _check_text(self.id, "actor.id", 128)
        try:
            kind = ActorKind(self.kind)
        except ValueError:
            raise ValidationError(
                f"actor kind must be one of {', '.join(k.value for k in ActorKind)}",
                field="actor.kind",
            ) from None
        if isinstance(self.roles, str) or not isinstance(
            self.roles, frozenset | set | list | tuple
        ):
            raise ValidationError("roles must be a set of role names", field="actor.roles")
        for role in self.roles:
            _check_text(role, "actor.roles", 128)
        # attrs' frozen classes are set once, here: a plain "agent" becomes ActorKind.AGENT.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "roles", frozenset(self.roles))


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    span = secrets.token_hex(8)
    return span if span != "0" * 16 else new_span_id()


def _check_trace_id(value: object) -> None:
    if not isinstance(value, str) or not _TRACE_ID.fullmatch(value) or value == "0" * 32:
        raise ValidationError("trace_id must be 32 lower-case hex digits", field="trace_id")


def _check_span_id(value: object, field: str) -> None:
    if not isinstance(value, str) or not _SPAN_ID.fullmatch(value) or value == "0" * 16:
        raise ValidationError(f"{field} must be 16 lower-case hex digits", field=field)


@attrs.frozen
class RequestContext:
    """Passed into every command. ``trace_id`` is a W3C trace-context trace id;
    ``parent_span_id`` and ``trace_flags`` come from the incoming ``traceparent``, if any."""

    tenant_id: str
    actor: Actor
    trace_id: str = attrs.field(factory=new_trace_id)
    correlation_id: str | None = None
    causation_id: str | None = None
    parent_span_id: str | None = None
    trace_flags: str = "01"

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not _TENANT.fullmatch(self.tenant_id):
            raise ValidationError("tenant_id is malformed", field="tenant_id")
        if not isinstance(self.actor, Actor):
            raise ValidationError("actor must be an Actor", field="actor")
        _check_trace_id(self.trace_id)
        for name in ("correlation_id", "causation_id"):
            value = getattr(self, name)
            if value is not None:
                _check_text(value, name, 64)
        if self.parent_span_id is not None:
            _check_span_id(self.parent_span_id, "parent_span_id")
        if not isinstance(self.trace_flags, str) or not _FLAGS.fullmatch(self.trace_flags):
            raise ValidationError(
                "trace_flags must be 2 lower-case hex digits", field="trace_flags"
            )

    @classmethod
    def from_traceparent(
        cls, traceparent: str, *, tenant_id: str, actor: Actor, **kw: str | None
    ) -> RequestContext:
        """The context of a request that arrived with a W3C ``traceparent`` header: its
        trace id, the caller's span as parent, and its trace flags (sampled or not)."""
        found = (
            _TRACEPARENT.fullmatch(traceparent.strip()) if isinstance(traceparent, str) else None
        )
        if found is None:
            raise ValidationError("traceparent is not W3C trace-context", field="traceparent")
        version, trace, span, flags = found.group("version", "trace", "span", "flags")
        if version == "ff" or (version == "00" and found.group("rest") is not None):
            raise ValidationError("traceparent has an invalid version", field="traceparent")
        if trace == "0" * 32 or span == "0" * 16:
            raise ValidationError("traceparent ids must not be all zero", field="traceparent")
        return cls(
            tenant_id=tenant_id,
            actor=actor,
            trace_id=trace,
            parent_span_id=span,
            trace_flags=flags,
            **kw,
        )

    def traceparent(self, span_id: str | None = None) -> str:
        """A traceparent header for a call made on behalf of this request: the same trace and
        flags (those the specification defines), and ``span_id`` (the span of the outgoing
        call; a new one if not given) as the parent the callee sees. Never the incoming
        parent's span: the callee's spans would then look like siblings of ours instead of
        children."""
        if span_id is None:
            span_id = new_span_id()
        _check_span_id(span_id, "span_id")
        # The specification asks that flags it reserves be sent as zero.
        flags = int(self.trace_flags, 16) & _KNOWN_FLAGS
        return f"00-{self.trace_id}-{span_id}-{flags:02x}"

    def delegate(self, actor: Actor) -> RequestContext:
        """The same request, carried on by ``actor`` (a primitive calling another's API).

        Tenant, trace, correlation and causation stay, so the callee's audit records and
        events join the caller's in one trace; the caller audits its own actor.
        """
        return attrs.evolve(self, actor=actor, correlation_id=self.effective_correlation_id)

    @property
    def effective_correlation_id(self) -> str:
        return self.correlation_id or self.trace_id
