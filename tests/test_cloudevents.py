"""CloudEvents 1.0 mapping, checked against the official ``cloudevents`` package (2.x).

The oracle is the package's ``core`` API (``JSONFormat``, ``bindings.kafka``,
``bindings.http``, ``v1.event.CloudEvent``), plus the legacy ``cloudevents.v1`` JSON reader.
The package has no NATS binding; NATS headers are checked against the spec text instead.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import attrs
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.http import from_json as legacy_from_json
from hypothesis import given, settings
from hypothesis import strategies as st
from moneyed import Money

from finfactory.events import OutboxReader
from finfactory.events.cloudevents import (
    BINDINGS,
    DEFAULT_OPTIONS,
    CloudEventOptions,
    from_binary,
    from_cloudevent,
    from_message,
    from_structured_json,
    partition_key,
    span_id_for,
    to_binary,
    to_cloudevent,
    to_structured_json,
    traceparent_for,
)
from finfactory.events.envelope import EventEnvelope, StoredEventEnvelope
from finfactory.kernel.authz import default_policy
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import ConfigurationError, ValidationError
from finfactory.primitives.ledger import commands as c
from finfactory.primitives.ledger.service import LedgerService
from finfactory.testing import ManualClock, MemoryStorage, SequentialIds

# W3C Trace Context level 1, version 00: version-traceid-parentid-flags, lower-case hex.
W3C_TRACEPARENT = re.compile(r"^00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-[0-9a-f]{2}$")
PREFIXED = CloudEventOptions(
    source_base="https://events.example.com/finfactory", type_prefix="io.finfactory."
)
FORMAT = JSONFormat()
# What the NATS and HTTP bindings leave unencoded: printable ASCII but '"' and '%'.
HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def envelope(**changes: Any) -> EventEnvelope:
    base = EventEnvelope(
        id="00000000-0000-4000-8000-000000000042",
        event_type="journal.posted",
        schema_version=1,
        payload={"journal_id": "j-1", "amount": {"amount": "10.00", "currency": "PHP"}},
        recorded_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        tenant_id="tenant-a",
        source="ledger",
        aggregate_type="journal",
        aggregate_id="j-1",
        aggregate_sequence=1,
        correlation_id="corr-1",
        causation_id="cmd-9",
        position=17,
    )
    return attrs.evolve(base, **changes)


def oracle_attributes(env: EventEnvelope, options: CloudEventOptions) -> dict[str, Any]:
    """Our attributes as the official package holds them in memory (``time`` a datetime)."""
    attributes = to_cloudevent(env, options)
    del attributes["data"]
    attributes["time"] = env.recorded_at
    return attributes


def official_event(env: EventEnvelope, options: CloudEventOptions) -> CloudEvent:
    return CloudEvent(oracle_attributes(env, options), copy.deepcopy(env.payload))


def assert_oracle_reads_structured(env: EventEnvelope, options: CloudEventOptions) -> None:
    raw = to_structured_json(env, options)
    event = FORMAT.read(None, raw)
    assert isinstance(event, CloudEvent)  # parsed as, and validated by, the 1.0 event class
    assert event.get_attributes() == oracle_attributes(env, options)
    assert event.get_data() == env.payload


def assert_oracle_reads_kafka(env: EventEnvelope, options: CloudEventOptions) -> None:
    headers, body = to_binary(env, options, binding="kafka")
    message = ce_kafka.KafkaMessage(headers=headers, key=partition_key(env), value=body)
    event = ce_kafka.from_binary(message, FORMAT)
    assert event.get_attributes() == oracle_attributes(env, options)
    assert event.get_data() == env.payload


# -- (a) our structured JSON, read by the official package ---------------------------------


@pytest.mark.parametrize("options", [DEFAULT_OPTIONS, PREFIXED], ids=["default", "prefixed"])
def test_official_package_reads_our_structured_json(options: CloudEventOptions) -> None:
    env = envelope()
    assert_oracle_reads_structured(env, options)
    # The legacy (1.x-style) reader agrees too; it keeps every attribute as the JSON string.
    legacy = legacy_from_json(to_structured_json(env, options))
    expected = to_cloudevent(env, options)
    assert legacy.get_data() == expected.pop("data")
    assert legacy.get_attributes() == expected


def test_structured_json_shape() -> None:
    event = json.loads(to_structured_json(envelope()))
    assert event == {
        "specversion": "1.0",
        "id": "00000000-0000-4000-8000-000000000042",
        "source": "urn:finfactory:ledger:tenant-a",
        "type": "journal.posted",
        "subject": "journal/j-1",
        "time": "2026-01-02T03:04:05.678901Z",
        "datacontenttype": "application/json",
        "dataschema": "urn:finfactory:schema:journal.posted:1",
        "traceparent": traceparent_for(envelope()),
        "partitionkey": "j-1",
        "sequence": "00000000000000000001",
        "tenantid": "tenant-a",
        "aggregatetype": "journal",
        "aggregateid": "j-1",
        "schemaversion": "1",
        "correlationid": "corr-1",
        "causationid": "cmd-9",
        "position": "17",
        "data": envelope().payload,
    }
    for name in event:
        assert re.fullmatch(r"[a-z0-9]{1,20}", name), name
    prefixed = json.loads(to_structured_json(envelope(), PREFIXED))
    assert prefixed["type"] == "io.finfactory.journal.posted"
    assert prefixed["source"] == "https://events.example.com/finfactory/ledger/tenant-a"
    assert prefixed["dataschema"] == (
        "https://events.example.com/finfactory/schema/journal.posted/1"
    )


def test_optional_attributes_are_omitted_when_none() -> None:
    env = envelope(causation_id=None, position=None)
    event = to_cloudevent(env)
    assert "causationid" not in event
    assert "position" not in event
    assert from_structured_json(to_structured_json(env)) == env
    headers, body = to_binary(env, binding="http")
    assert "ce-causationid" not in headers
    assert from_binary(headers, body, "http") == env


# -- (b) the official package's output, read by us -----------------------------------------


@pytest.mark.parametrize("options", [DEFAULT_OPTIONS, PREFIXED], ids=["default", "prefixed"])
def test_we_read_the_official_packages_structured_json(options: CloudEventOptions) -> None:
    for env in (envelope(), envelope(recorded_at=datetime(2026, 5, 1, tzinfo=UTC))):
        official = official_event(env, options)
        assert from_structured_json(FORMAT.write(official), options) == env
        message = ce_http.to_structured(official, FORMAT)
        assert from_message(message.headers, message.body, "http", options) == env
        kafka_message = ce_kafka.to_structured(official, FORMAT)
        assert from_message(kafka_message.headers, kafka_message.value, "kafka", options) == env


# -- (c) Kafka binding, both directions; HTTP binding likewise ----------------------------


def test_kafka_binary_matches_the_official_binding() -> None:
    env = envelope(correlation_id="Euro € 😀", aggregate_id="acc 7/ü")
    headers, body = to_binary(env, binding="kafka")
    assert all(isinstance(v, bytes) for v in headers.values())
    assert headers["content-type"] == b"application/json"
    assert "ce_datacontenttype" not in headers
    assert headers["ce_correlationid"] == "Euro € 😀".encode()  # UTF-8, no percent-encoding

    assert_oracle_reads_kafka(env, DEFAULT_OPTIONS)

    official = ce_kafka.to_binary(official_event(env, DEFAULT_OPTIONS), FORMAT)
    assert official.headers == headers  # byte for byte, partitionkey header included
    assert official.key == partition_key(env) == "acc 7/ü"
    assert json.loads(official.value) == json.loads(body)
    assert from_binary(official.headers, official.value, "kafka") == env
    # Kafka clients hand headers over as a list of pairs.
    assert from_binary(list(official.headers.items()), official.value, "kafka") == env
    assert from_message(official.headers, official.value, "kafka") == env


def test_http_binary_matches_the_official_binding() -> None:
    env = envelope(correlation_id='say "hi" 100% ✓', aggregate_id="a b")
    headers, body = to_binary(env, binding="http")
    assert headers["content-type"] == "application/json"
    assert headers["ce-correlationid"] == "say%20%22hi%22%20100%25%20%E2%9C%93"

    official = ce_http.to_binary(official_event(env, DEFAULT_OPTIONS), FORMAT)
    assert official.headers == headers
    assert from_binary(official.headers, official.body, "http") == env

    event = ce_http.from_binary(ce_http.HTTPMessage(headers=headers, body=body), FORMAT)
    assert event.get_attributes() == oracle_attributes(env, DEFAULT_OPTIONS)
    assert event.get_data() == env.payload


# -- (d) NATS binding header rules --------------------------------------------------------
# NATS Protocol Binding for CloudEvents v1.0.3 (binary mode was added in 1.0.3; 1.0.2 defines
# structured mode only): §3.1.3.1 every attribute, datacontenttype included, maps to a header
# named "ce-" + attribute name, header names case-insensitive; §3.1.3.2 values are the
# canonical string, percent-encoded (UTF-8 bytes, upper-case hex) for space, double quote,
# percent and anything outside printable ASCII U+0021-U+007E; decoding undoes double-quoted
# strings first, accepts lower-case hex and needless escapes, and rejects invalid UTF-8 such
# as the overlong "%C0%A0"; §3 a Content-Type of application/cloudevents marks structured mode.

NATS_VALUE = re.compile(r"^(?:[!#$&-~]|%[0-9A-F]{2})*$")  # printable ASCII minus " and %


def test_nats_headers_follow_the_spec() -> None:
    env = envelope(correlation_id="Euro € 😀", aggregate_id='x "y" 50%')
    headers, body = to_binary(env, binding="nats")
    attributes = to_cloudevent(env)
    del attributes["data"]
    assert set(headers) == {f"ce-{name}" for name in attributes}
    assert headers["ce-datacontenttype"] == "application/json"
    assert "content-type" not in headers  # would risk being read as structured mode
    assert headers["ce-time"] == "2026-01-02T03:04:05.678901Z"
    assert headers["ce-specversion"] == "1.0"
    # The spec's own example value (§3.1.3.2).
    assert headers["ce-correlationid"] == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert headers["ce-aggregateid"] == "x%20%22y%22%2050%25"
    for name, value in headers.items():
        assert name == name.lower()
        assert isinstance(value, str)
        assert NATS_VALUE.match(value), (name, value)
    assert json.loads(body) == env.payload
    assert from_binary(headers, body, "nats") == env


def test_nats_decoding_rules() -> None:
    env = envelope()
    headers, body = to_binary(env, binding="nats")
    shouted = {name.upper(): value for name, value in headers.items()}
    assert from_binary(shouted, body, "nats") == env

    quoted = dict(headers, **{"ce-tenantid": '"tenant-a"', "ce-correlationid": '"corr\\-1"'})
    assert from_binary(quoted, body, "nats") == env

    needless = dict(headers, **{"ce-correlationid": "%63orr-1"})
    assert from_binary(needless, body, "nats") == env

    lower_hex = envelope(correlation_id="é")
    lh_headers, lh_body = to_binary(lower_hex, binding="nats")
    assert lh_headers["ce-correlationid"] == "%C3%A9"
    lh_headers["ce-correlationid"] = "%c3%a9"
    assert from_binary(lh_headers, lh_body, "nats") == lower_hex

    for bad in ("%C0%A0", "%G1", "abc%", '"unterminated'):
        with pytest.raises(ValidationError) as err:
            from_binary(dict(headers, **{"ce-correlationid": bad}), body, "nats")
        assert err.value.field == "correlationid"


def test_nats_structured_mode_is_detected_by_content_type() -> None:
    env = envelope()
    raw = to_structured_json(env)
    assert from_message({"Content-Type": "application/cloudevents+json"}, raw, "nats") == env
    headers, body = to_binary(env, binding="nats")
    assert from_message(headers, body, "nats") == env
    with pytest.raises(ValidationError) as err:
        from_message({"content-type": "application/cloudevents+avro"}, raw, "nats")
    assert err.value.field == "content-type"


# -- (e) property: every envelope survives every mode -------------------------------------

# CloudEvents strings exclude controls, unpaired surrogates and noncharacters (category Cn).
texts = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Cn")), min_size=1, max_size=24
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
offsets = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=8)),
        timezone(timedelta(hours=1, seconds=7)),  # not RFC 3339-expressible: sent as UTC
    ]
)
uint63 = st.integers(min_value=0, max_value=2**63 - 1)
envelopes = st.builds(
    EventEnvelope,
    id=texts,
    event_type=texts,
    schema_version=uint63,
    payload=st.dictionaries(st.text(max_size=12), json_values, max_size=5),
    recorded_at=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
    ),
    trace_id=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).filter(
        lambda t: t != "0" * 32
    ),
    tenant_id=texts,
    source=texts,
    aggregate_type=texts,
    aggregate_id=texts,
    aggregate_sequence=uint63,
    correlation_id=texts,
    causation_id=st.none() | texts,
    position=st.none() | uint63,
)
option_sets = st.sampled_from([DEFAULT_OPTIONS, PREFIXED])


@settings(max_examples=150, deadline=None)
@given(env=envelopes, options=option_sets)
def test_round_trip_is_identity(env: EventEnvelope, options: CloudEventOptions) -> None:
    structured = json.loads(to_structured_json(env, options))
    # The structured writer builds its JSON text itself: same members, same order.
    assert list(structured.items()) == list(to_cloudevent(env, options).items())
    assert from_structured_json(to_structured_json(env, options), options) == env
    assert from_cloudevent(to_cloudevent(env, options), options) == env
    for binding in BINDINGS:
        headers, body = to_binary(env, options, binding=binding)
        assert from_binary(headers, body, binding, options) == env
        assert from_message(headers, body, binding, options) == env
    back = from_structured_json(to_structured_json(env, options), options)
    assert back.recorded_at.utcoffset() is not None
    assert_oracle_reads_structured(env, options)
    assert_oracle_reads_kafka(env, options)


def stored_copy(env: EventEnvelope, stored_json: str | bytes) -> StoredEventEnvelope:
    fields = attrs.asdict(env, recurse=False)
    del fields["payload"]
    return StoredEventEnvelope.from_stored(stored_json, **fields)


@settings(max_examples=150, deadline=None)
@given(env=envelopes, options=option_sets)
def test_a_stored_envelope_maps_like_the_envelope_it_stores(
    env: EventEnvelope, options: CloudEventOptions
) -> None:
    stored = stored_copy(env, env.payload_json().decode("utf-8", "surrogatepass"))
    # Mapping sends the stored text without decoding it, and gives the same bytes.
    assert to_structured_json(stored, options) == to_structured_json(env, options)
    for binding in BINDINGS:
        assert to_binary(stored, options, binding=binding) == to_binary(
            env, options, binding=binding
        )
    assert not _payload_decoded(stored)
    assert stored == env
    assert env == stored
    assert stored != attrs.evolve(env, aggregate_sequence=env.aggregate_sequence ^ 1)
    assert stored.payload == env.payload  # decoded on first use
    assert attrs.evolve(stored, payload={"other": 1}).payload_json() == b'{"other":1}'
    assert from_structured_json(to_structured_json(stored, options), options) == env


def _payload_decoded(env: EventEnvelope) -> bool:
    try:
        object.__getattribute__(env, "payload")
    except AttributeError:
        return False
    return True


def test_stored_payload_text_is_sent_as_stored() -> None:
    # PostgreSQL's json type returns what was written, spacing included: it goes out as is.
    env = envelope(payload={"a": 1, "b": [1, 2]})
    stored = stored_copy(env, '{"a": 1, "b": [1, 2]}')
    assert to_binary(stored, binding="nats")[1] == b'{"a": 1, "b": [1, 2]}'
    assert json.loads(to_structured_json(stored))["data"] == {"a": 1, "b": [1, 2]}
    assert stored == env
    with pytest.raises(ValidationError) as err:
        to_structured_json(stored_copy(env, "[1, 2]"))
    assert err.value.field == "payload"


@settings(max_examples=300, deadline=None)
@given(value=texts | st.text(alphabet=' "%az~!', min_size=1))
def test_header_values_are_percent_encoded_exactly_as_quote_does(value: str) -> None:
    headers, _ = to_binary(envelope(correlation_id=value), binding="nats")
    assert headers["ce-correlationid"] == quote(value, safe=HEADER_SAFE)


def test_time_keeps_minute_offsets_and_converts_others() -> None:
    india = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert to_cloudevent(envelope(recorded_at=india))["time"] == "2026-03-01T12:00:00+05:30"
    back = from_structured_json(to_structured_json(envelope(recorded_at=india)))
    assert back.recorded_at == india
    assert back.recorded_at.utcoffset() == timedelta(hours=5, minutes=30)
    odd = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(seconds=30)))
    assert to_cloudevent(envelope(recorded_at=odd))["time"] == "2026-03-01T11:59:30Z"


def test_unpaired_surrogate_in_payload_survives() -> None:
    env = envelope(payload={"note": "broken \udc80 text"})
    raw = to_structured_json(env)
    raw.decode("ascii")  # escaped as \udc80, so still valid UTF-8 JSON
    assert from_structured_json(raw) == env
    for binding in BINDINGS:
        headers, body = to_binary(env, binding=binding)
        assert from_binary(headers, body, binding) == env


# -- (f) real envelopes from a ledger scenario --------------------------------------------


def ledger_events() -> list[EventEnvelope]:
    storage = MemoryStorage()
    clock = ManualClock(tick=timedelta(milliseconds=1, microseconds=7))
    ledger = LedgerService(storage, default_policy(), clock, SequentialIds())
    actor = Actor("ops-1", ActorKind.USER, frozenset({"admin"}))
    ctx = RequestContext(tenant_id="tenant-a", actor=actor)
    caused = RequestContext(
        tenant_id="tenant:b", actor=actor, correlation_id="saga-7", causation_id="evt-3"
    )
    for context in (ctx, caused):
        cash = ledger.open_account(
            context, c.OpenAccount(code="cash", currency="PHP", type="asset")
        )
        wallet = ledger.open_account(
            context,
            c.OpenAccount(
                code="w",
                currency="PHP",
                type="liability",
                balance_bound="debits_must_not_exceed_credits",
            ),
        )
        ledger.post_journal(
            context,
            c.PostJournal(
                reference="fund",
                legs=[
                    c.Leg(account_id=cash.id, direction="debit", amount=Money("50.00", "PHP")),
                    c.Leg(account_id=wallet.id, direction="credit", amount=Money("50.00", "PHP")),
                ],
            ),
        )
        topped = ledger.post_journal(
            context,
            c.PostJournal(
                reference="top-up",
                legs=[
                    c.Leg(account_id=cash.id, direction="debit", amount=Money("1.00", "PHP")),
                    c.Leg(account_id=wallet.id, direction="credit", amount=Money("1.00", "PHP")),
                ],
            ),
        )
        hold = ledger.create_hold(
            context,
            c.CreateHold(
                reference="h1",
                debit_account_id=wallet.id,
                credit_account_id=cash.id,
                amount=Money("10.00", "PHP"),
                expires_at=datetime(2026, 2, 1, tzinfo=UTC),
            ),
        )
        ledger.capture_hold(context, c.CaptureHold(hold_id=hold.id, reference="cap"))
        other = ledger.create_hold(
            context,
            c.CreateHold(
                reference="h2",
                debit_account_id=wallet.id,
                credit_account_id=cash.id,
                amount=Money("5.00", "PHP"),
            ),
        )
        ledger.void_hold(context, c.VoidHold(hold_id=other.id, reason="changed mind"))
        ledger.reverse_journal(
            context, c.ReverseJournal(journal_id=topped.id, reference="undo", reason="test")
        )
        ledger.change_account_status(
            context, c.ChangeAccountStatus(account_id=wallet.id, status="frozen")
        )
    return list(OutboxReader(storage).drain())


def test_every_ledger_outbox_event_round_trips() -> None:
    events = ledger_events()
    kinds = {e.event_type for e in events}
    assert {"journal.posted", "hold.created", "hold.released", "transaction.reversed"} <= kinds
    assert any(e.causation_id is not None for e in events)
    assert all(e.position is not None for e in events)
    for env in events:
        for options in (DEFAULT_OPTIONS, PREFIXED):
            assert from_structured_json(to_structured_json(env, options), options) == env
            for binding in BINDINGS:
                headers, body = to_binary(env, options, binding=binding)
                assert from_binary(headers, body, binding, options) == env
            assert_oracle_reads_structured(env, options)
            assert_oracle_reads_kafka(env, options)
        assert to_cloudevent(env)["source"] == (
            "urn:finfactory:ledger:tenant-a"
            if env.tenant_id == "tenant-a"
            else "urn:finfactory:ledger:tenant%3Ab"
        )


def test_sequence_orders_lexicographically() -> None:
    sequences = [
        to_cloudevent(envelope(aggregate_sequence=n))["sequence"] for n in (1, 2, 9, 10, 11, 100)
    ]
    assert sequences == sorted(sequences)
    assert all(len(s) == 20 for s in sequences)
    unpadded = dict(to_cloudevent(envelope(aggregate_sequence=12)), sequence="12")
    assert from_cloudevent(unpadded).aggregate_sequence == 12


# -- (g) traceparent ----------------------------------------------------------------------


def test_traceparent_is_w3c_and_carries_the_trace_id() -> None:
    events = ledger_events()
    seen_spans = set()
    for env in events:
        traceparent = to_cloudevent(env)["traceparent"]
        match = W3C_TRACEPARENT.match(traceparent)
        assert match is not None, traceparent
        assert match.group(1) == env.trace_id
        assert match.group(2) == span_id_for(env.id)
        assert to_cloudevent(env)["traceparent"] == traceparent  # deterministic
        seen_spans.add(match.group(2))
        # Consumers can continue the trace from it.
        ctx = RequestContext.from_traceparent(
            traceparent, tenant_id=env.tenant_id, actor=Actor("svc", ActorKind.SERVICE)
        )
        assert ctx.trace_id == env.trace_id
    assert len(seen_spans) == len(events)


# -- invalid input ------------------------------------------------------------------------


def _mutated(**changes: Any) -> dict[str, Any]:
    event = to_cloudevent(envelope())
    for name, value in changes.items():
        if value is None:
            del event[name]
        else:
            event[name] = value
    return event


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": None}, "id"),
        ({"source": None}, "source"),
        ({"type": None}, "type"),
        ({"specversion": None}, "specversion"),
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"time": None}, "time"),
        ({"time": "2026-01-02 03:04:05"}, "time"),
        ({"time": "2026-02-30T00:00:00Z"}, "time"),
        ({"time": "2026-01-02T03:04:60Z"}, "time"),
        ({"traceparent": None}, "traceparent"),
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}, "traceparent"),
        ({"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}, "traceparent"),
        ({"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "traceparent"),
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}, "traceparent"),
        ({"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "traceparent"),
        (
            {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"},
            "traceparent",
        ),
        ({"sequence": None}, "sequence"),
        ({"sequence": "-1"}, "sequence"),
        ({"sequence": "١٢"}, "sequence"),  # non-ASCII digits
        ({"schemaversion": "one"}, "schemaversion"),
        ({"position": "x"}, "position"),
        ({"tenantid": None}, "tenantid"),
        ({"correlationid": None}, "correlationid"),
        ({"aggregateid": None}, "aggregateid"),
        ({"subject": "journal/other"}, "subject"),
        ({"partitionkey": "other"}, "partitionkey"),
        ({"dataschema": "urn:finfactory:schema:journal.posted:2"}, "dataschema"),
        ({"source": "urn:finfactory:ledger:tenant-b"}, "source"),
        ({"source": "urn:elsewhere:ledger:tenant-a"}, "source"),
        ({"source": "urn:finfactory:ledger:tenant-a:extra"}, "source"),
        ({"datacontenttype": "text/plain"}, "datacontenttype"),
        ({"data": [1, 2]}, "data"),
        ({"data": None}, "data"),
    ],
)
def test_invalid_cloudevents_are_rejected(changes: dict[str, Any], field: str) -> None:
    event = _mutated(**changes)
    with pytest.raises(ValidationError) as err:
        from_cloudevent(event)
    assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        from_structured_json(json.dumps(event).encode())
    assert err.value.field == field


def test_type_prefix_is_enforced_on_the_way_back() -> None:
    with pytest.raises(ValidationError) as err:
        from_structured_json(to_structured_json(envelope()), PREFIXED)
    assert err.value.field == "type"
    wrong_type = dict(to_cloudevent(envelope(), PREFIXED), type="journal.posted")
    with pytest.raises(ValidationError) as err:
        from_cloudevent(wrong_type, PREFIXED)
    assert err.value.field == "type"


def test_malformed_messages_are_rejected() -> None:
    raw = to_structured_json(envelope())
    for bad, field in [
        (b"not json", "body"),
        (b"[1]", "body"),
        (b"\xff", "body"),
        (raw[:-1] + b',"id":"again"}', "body"),  # duplicate member
    ]:
        with pytest.raises(ValidationError) as err:
            from_structured_json(bad)
        assert err.value.field == field
    headers, body = to_binary(envelope(), binding="kafka")
    cases: list[tuple[dict[str, bytes] | list[tuple[str, bytes]], str]] = [
        ({k: v for k, v in headers.items() if k != "ce_specversion"}, "specversion"),
        (dict(headers, ce_traceparent=b"00-zz"), "traceparent"),
        (dict(headers, ce_id=b"\xc3"), "id"),
        ([*headers.items(), ("CE_ID", b"dup")], "ce_id"),
    ]
    for broken, field in cases:
        with pytest.raises(ValidationError) as err:
            from_binary(broken, body, "kafka")
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        from_binary(headers, b"", "kafka")
    assert err.value.field == "data"
    with pytest.raises(ValidationError) as err:
        from_binary(headers, body, "amqp")
    assert err.value.field == "binding"
    with pytest.raises(ValidationError) as err:
        to_binary(envelope(), binding="amqp")
    assert err.value.field == "binding"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"recorded_at": datetime(2026, 1, 1)}, "recorded_at"),
        ({"trace_id": "abc"}, "trace_id"),
        ({"trace_id": "0" * 32}, "trace_id"),
        ({"correlation_id": "line\nbreak"}, "correlation_id"),
        ({"aggregate_id": ""}, "aggregate_id"),
        ({"id": "\ud800"}, "id"),
        ({"tenant_id": "\ufffe"}, "tenant_id"),
        ({"aggregate_sequence": -1}, "aggregate_sequence"),
        ({"position": 2**63}, "position"),
        ({"schema_version": True}, "schema_version"),
        ({"payload": {"x": float("nan")}}, "payload"),
        ({"payload": {"x": object()}}, "payload"),
    ],
)
def test_malformed_envelopes_cannot_be_mapped(changes: dict[str, Any], field: str) -> None:
    env = envelope(**changes)
    with pytest.raises(ValidationError) as err:
        to_structured_json(env)
    assert err.value.field == field


def test_options_are_validated() -> None:
    for kwargs in (
        {"source_base": "not a uri"},
        {"source_base": "finfactory"},
        {"source_base": "urn:finfactory:"},
        {"source_base": "https://x.example/"},
        {"schema_base": "relative/path"},
        {"type_prefix": "io finfactory."},
    ):
        with pytest.raises(ConfigurationError):
            CloudEventOptions(**kwargs)
