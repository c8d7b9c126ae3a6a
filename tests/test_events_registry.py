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
