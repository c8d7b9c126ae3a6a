"""The event registry refuses malformed or duplicate declarations; the ledger's are complete."""

from __future__ import annotations

import pytest

from finfactory.events import (
    REGISTRY,
    EventDeclarationError,
    EventPayload,
    EventRegistry,
    declare_event,
)

LEDGER_SEED_EVENTS = {
    "journal.posted",
    "balance.updated",
    "hold.created",
    "hold.released",
    "transaction.reversed",
}


class _Payload(EventPayload):
    value: int


@pytest.mark.parametrize(
    "name",
    [
        "Journal.posted",
        "journal",
        "journal..posted",
        "journal.posted.",
        "1x.posted",
        "journal posted",
        "journal-posted.x",
        "",
        "journal.posted\n",  # a pattern ending in $ let a trailing newline through
        "journal.postéd",
        "x." + "a" * 99,  # 101 characters: event_type is varchar(100)
    ],
)
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(EventDeclarationError):
        declare_event(
            name, primitive="t", aggregate_type="a", description="d", registry=EventRegistry()
        )(_Payload)


def test_duplicate_declaration_is_refused() -> None:
    registry = EventRegistry()
    declare_event(
        "thing.happened", primitive="t", aggregate_type="a", description="d", registry=registry
    )(_Payload)
    with pytest.raises(EventDeclarationError, match="declared twice"):
        declare_event(
            "thing.happened", primitive="t", aggregate_type="a", description="d2", registry=registry
        )(_Payload)
    # A new version of the same name is how a schema evolves.
    declare_event(
        "thing.happened",
        version=2,
        primitive="t",
        aggregate_type="a",
        description="d",
        registry=registry,
    )(_Payload)
    assert registry.get("thing.happened").version == 2
    assert registry.get("thing.happened", 1).version == 1


def test_description_must_be_one_line() -> None:
    with pytest.raises(EventDeclarationError):
        declare_event(
            "thing.happened",
            primitive="t",
            aggregate_type="a",
            description="two\nlines",
            registry=EventRegistry(),
        )(_Payload)
    with pytest.raises(EventDeclarationError):
        declare_event(
            "thing.happened",
            primitive="t",
            aggregate_type="a",
            description="  ",
            registry=EventRegistry(),
        )(_Payload)


def test_ledger_declares_every_seed_event() -> None:
    import finfactory.primitives.ledger  # noqa: F401  (declares the events)

    ledger_events = {t.name for t in REGISTRY if t.primitive == "ledger"}
    assert ledger_events >= LEDGER_SEED_EVENTS
    for event_type in REGISTRY:
        assert event_type.description
        assert event_type.payload_model.model_json_schema()["properties"]


class _Plain:
    value: int


class _FloatPayload(EventPayload):
    score: float


class _AllowsNan(EventPayload):
    model_config = {"frozen": True, "extra": "forbid", "allow_inf_nan": True}
    score: float


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": True}, "version"),
        ({"version": 1.5}, "version"),
        ({"version": 0}, "version"),
        ({"primitive": ""}, "primitive"),
        ({"primitive": "p" * 65}, "primitive"),  # ff_outbox.source is varchar(64)
        ({"aggregate_type": "a" * 65}, "aggregate_type"),
    ],
)
def test_a_declaration_the_outbox_cannot_store_fails_at_import(
    changes: dict[str, object], message: str
) -> None:
    declaration: dict[str, object] = {
        "primitive": "t",
        "aggregate_type": "a",
        "description": "d",
        "registry": EventRegistry(),
        **changes,
    }
    with pytest.raises(EventDeclarationError, match=message):
        declare_event("thing.happened", **declaration)(_Payload)  # type: ignore[arg-type]


def test_the_longest_storable_name_is_accepted() -> None:
    name = "x." + "a" * 98
    assert len(name) == 100
    registry = EventRegistry()
    declare_event(name, primitive="t", aggregate_type="a", description="d", registry=registry)(
        _Payload
    )
    assert registry.get(name).name == name


@pytest.mark.parametrize("model", [_Plain, _AllowsNan])
def test_a_payload_must_be_an_event_payload_that_refuses_nan(model: type) -> None:
    private = EventRegistry()
    declare = declare_event(
        "x.y", primitive="t", aggregate_type="a", description="d", registry=private
    )
    with pytest.raises(EventDeclarationError, match="payload"):
        declare(model)


def test_a_payload_refuses_nan_and_infinity() -> None:
    """NaN has no JSON form: PostgreSQL's json column refused it while SQLite and memory kept
    it. The payload model refuses it wherever the event is emitted."""
    assert _FloatPayload(score=0.5).score == 0.5
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="finite"):
            _FloatPayload(score=bad)
