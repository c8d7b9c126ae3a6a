"""The request context refuses what some backend, log or header could not carry alike, and
propagates W3C trace context as the specification asks."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finfactory.kernel import AuditTrail, PermissionDenied, default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.ports import Storage
from finfactory.primitives.ledger import OpenAccount
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, SequentialIds

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
OPERATOR = Actor("ops-1", ActorKind.USER, frozenset({"admin"}))

hex_digits = st.text("0123456789abcdef", min_size=1, max_size=1)
trace_ids = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda t: set(t) != {"0"})
span_ids = st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda t: set(t) != {"0"})
flags = st.text("0123456789abcdef", min_size=2, max_size=2)
# One character no id may hold: a control character or a lone surrogate.
unstorable = st.one_of(st.characters(categories=["Cc"]), st.integers(0xD800, 0xDFFF).map(chr))


def context(**fields: object) -> RequestContext:
    return RequestContext(**{"tenant_id": "acme", "actor": OPERATOR, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tenant_id": "acme\n"}, "tenant_id"),
        ({"trace_id": TRACE + "\n"}, "trace_id"),
        ({"trace_id": TRACE.upper()}, "trace_id"),
        ({"parent_span_id": "not hex!"}, "parent_span_id"),
        ({"parent_span_id": "0" * 16}, "parent_span_id"),
        ({"trace_flags": "1"}, "trace_flags"),
        ({"correlation_id": ""}, "correlation_id"),
        ({"causation_id": "x" * 65}, "causation_id"),
        ({"actor": "ops-1"}, "actor"),
    ],
)
def test_malformed_context_fields_are_refused_with_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        context(**fields)
    assert refused.value.field == field


@given(prefix=st.text(max_size=10), bad=unstorable, suffix=st.text(max_size=10))
def test_ids_with_a_control_character_or_lone_surrogate_are_refused(
    prefix: str, bad: str, suffix: str
) -> None:
    text = prefix + bad + suffix
    for build, field in (
        (lambda: Actor(text, ActorKind.USER), "actor.id"),
        (lambda: Actor("ops", ActorKind.USER, frozenset({text})), "actor.roles"),
        (lambda: context(correlation_id=text[:64]), "correlation_id"),
        (lambda: context(causation_id=text[:64]), "causation_id"),
    ):
        with pytest.raises(ValidationError) as refused:
            build()
        assert refused.value.field == field


def test_actor_kind_given_as_text_becomes_the_enum_and_an_unknown_one_is_refused() -> None:
    agent = Actor("copilot", "agent", ["assistant"])  # type: ignore[arg-type]
    assert agent.kind is ActorKind.AGENT
    assert agent.roles == frozenset({"assistant"})
    with pytest.raises(ValidationError) as refused:
        Actor("copilot", "robot")  # type: ignore[arg-type]
    assert refused.value.field == "actor.kind"
    with pytest.raises(ValidationError) as refused:
        Actor("copilot", ActorKind.AGENT, "admin")  # type: ignore[arg-type]
    assert refused.value.field == "actor.roles"


@given(trace=trace_ids, span=span_ids, flag=flags)
def test_a_version_00_traceparent_keeps_trace_and_flags_and_the_outgoing_span_is_ours(
    trace: str, span: str, flag: str
) -> None:
    ctx = RequestContext.from_traceparent(
        f"00-{trace}-{span}-{flag}", tenant_id="acme", actor=OPERATOR
    )
    assert (ctx.trace_id, ctx.parent_span_id, ctx.trace_flags) == (trace, span, flag)
    known = f"{int(flag, 16) & 0x03:02x}"  # sampled and random trace id; the rest reserved
    outgoing = ctx.traceparent()
    version, out_trace, out_span, out_flags = outgoing.split("-")
    assert (version, out_trace, out_flags) == ("00", trace, known)
    assert out_span != span  # a child of our span, not a sibling of the caller's
    assert out_span != "0" * 16
    assert ctx.traceparent("b7ad6b7169203331") == f"00-{trace}-b7ad6b7169203331-{known}"


@pytest.mark.parametrize(
    ("incoming", "outgoing"),
    [("00", "00"), ("01", "01"), ("02", "02"), ("03", "03"), ("09", "01"), ("ff", "03")],
)
def test_outgoing_flags_keep_the_defined_bits_and_zero_the_reserved_ones(
    incoming: str, outgoing: str
) -> None:
    ctx = RequestContext.from_traceparent(
        f"00-{TRACE}-{SPAN}-{incoming}", tenant_id="acme", actor=OPERATOR
    )
    assert ctx.trace_flags == incoming
    assert ctx.traceparent().endswith(f"-{outgoing}")


def test_without_a_traceparent_outgoing_calls_are_sampled() -> None:
    assert context().traceparent().endswith("-01")


@given(version=st.tuples(hex_digits, hex_digits).map("".join), trace=trace_ids, span=span_ids)
def test_a_later_version_is_read_by_its_first_four_fields(
    version: str, trace: str, span: str
) -> None:
    header = f"{version}-{trace}-{span}-01-what-a-later-version-adds"
    if version in ("00", "ff"):
        with pytest.raises(ValidationError):
            RequestContext.from_traceparent(header, tenant_id="acme", actor=OPERATOR)
        return
    ctx = RequestContext.from_traceparent(header, tenant_id="acme", actor=OPERATOR)
    assert (ctx.trace_id, ctx.parent_span_id) == (trace, span)


@pytest.mark.parametrize(
    "header",
    [
        f"00-{TRACE}-{'0' * 16}-01",  # parent id all zero
        f"00-{'0' * 32}-{SPAN}-01",  # trace id all zero
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{SPAN}-01\nInjected: yes",
        f"00-{TRACE.upper()}-{SPAN}-01",
        None,
        42,
    ],
)
def test_malformed_traceparent_is_refused(header: object) -> None:
    with pytest.raises(ValidationError) as refused:
        RequestContext.from_traceparent(header, tenant_id="acme", actor=OPERATOR)  # type: ignore[arg-type]
    assert refused.value.field == "traceparent"


def test_an_outgoing_span_id_is_checked() -> None:
    with pytest.raises(ValidationError) as refused:
        context().traceparent("0" * 16)
    assert refused.value.field == "span_id"


def test_an_agent_given_as_text_and_the_longest_ids_are_audited_alike_on_every_backend(
    storage: Storage,
) -> None:
    """Ids at their length limits, outside ASCII, fit every backend's columns; an actor kind
    given as text is audited like the enum (it failed with AttributeError, unaudited)."""
    clock, ids = ManualClock(), SequentialIds()
    ledger = LedgerService(storage, default_policy(), clock, ids)
    agent = Actor("é" * 128, "agent", {"admin"})  # type: ignore[arg-type]
    ctx = context(actor=agent, correlation_id="ü" * 64, causation_id="😀" * 64)
    ledger.open_account(ctx, OpenAccount(code="cash", currency="PHP", type="asset"))
    with pytest.raises(PermissionDenied):
        ledger.open_account(
            attrs.evolve(ctx, actor=Actor("bot", "agent")),  # type: ignore[arg-type]
            OpenAccount(code="cash2", currency="PHP", type="asset"),
        )
    auditor = context(actor=Actor("auditor-1", ActorKind.USER, frozenset({"auditor"})))
    records = AuditTrail(storage, default_policy(), clock, ids).records(auditor)
    assert [(r.actor_id, r.actor_kind, r.outcome.value) for r in records] == [
        ("é" * 128, "agent", "succeeded"),
        ("bot", "agent", "denied"),
    ]
    with storage.read() as uow:
        events = uow.kernel.read_events(0, 100, tenant_id="acme")
    assert {(e.correlation_id, e.causation_id) for e in events} == {("ü" * 64, "😀" * 64)}
