"""A Singer tap over the outbox: the ETL way of consuming events (Meltano runs it as a tap).

Usage::

    python -m finfactory.events.singer --config config.json [--state state.json]
                                       [--catalog catalog.json] [--discover] [--about]

``config.json``: ``database_url`` (SQLAlchemy URL of the FinFactory database, required),
``tenant_id`` (only this tenant's events), ``batch_size`` (outbox rows per batch, 500) and
``streams`` (event type names to include, for example ``["journal.posted"]``; all if absent).

Streams
    One stream per event type and version, named after it with dots turned into
    underscores: ``journal.posted`` version 1 is stream ``journal_posted_v1``. A record is
    the event envelope (id, event_type, schema_version, recorded_at, trace_id, tenant_id,
    source, aggregate_type, aggregate_id, aggregate_sequence, correlation_id, causation_id,
    position) with the typed ``payload`` object, so targets create typed tables. Schemas are
    plain JSON Schema without ``$ref`` (references inlined), readable as Draft 7; money
    amounts are decimal strings, marked ``"format": "singer.decimal"`` for targets that
    map it to NUMERIC. A new version of an event is a new stream: breaking payload changes
    never reach an existing table.

Replication
    Incremental on ``position``, the outbox cursor. Positions follow commit order, so an
    event committed late by a slow transaction still gets a position after everything
    already read: resuming from the bookmark never skips one. The tap emits STATE after
    every batch; the value is ``{"bookmarks": {stream: {"replication_key": "position",
    "replication_key_value": N}}}``. Each stream keeps its own bookmark, so a stream
    selected later is read from the beginning while the others resume. Delivery is at
    least once (a run interrupted between a batch and its STATE repeats that batch): the
    key property is the event ``id``.

Selection
    Without ``--catalog`` every stream is synced. With one, the streams whose root
    metadata says ``selected`` (falling back to ``selected-by-default``); a top-level
    property whose metadata says ``"selected": false`` is left out of SCHEMA and RECORDs
    (``id`` and ``position`` are ``automatic`` and always kept). An outbox event of a type
    this installation does not know stops the tap when every stream is wanted (no catalog,
    no ``streams`` in the config), so nothing is silently skipped; upgrade the tap.

``--discover`` prints the catalog and does not connect to the database.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import attrs

from finfactory.events.catalog import envelope_schema, load_all_primitives, payload_schema
from finfactory.events.envelope import EventEnvelope
from finfactory.events.outbox import OutboxReader
from finfactory.events.registry import REGISTRY, EventRegistry, EventType
from finfactory.kernel.ports import Storage

log = logging.getLogger("tap-finfactory")

TAP_NAME = "tap-finfactory"
KEY_PROPERTIES = ("id",)
REPLICATION_KEY = "position"
AUTOMATIC = frozenset({*KEY_PROPERTIES, REPLICATION_KEY})
DEFAULT_BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000
DECIMAL_FORMAT = "singer.decimal"

JsonObject = dict[str, Any]

CONFIG_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "database_url": {
            "type": "string",
            "description": "SQLAlchemy URL of the FinFactory database (sqlite:///… or "
            "postgresql+psycopg://…)",
            "secret": True,
        },
        "tenant_id": {"type": ["string", "null"], "description": "Only this tenant's events"},
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_BATCH_SIZE,
            "default": DEFAULT_BATCH_SIZE,
            "description": "Outbox rows read per batch; STATE follows every batch",
        },
        "streams": {
            "type": ["array", "null"],
            "items": {"type": "string"},
            "description": "Event types to include (for example journal.posted); all if absent",
        },
    },
    "required": ["database_url"],
}


class TapError(RuntimeError):
    """A configuration, state or catalog problem, or an outbox the tap cannot export."""


# -- configuration and state ------------------------------------------------------------------


@attrs.frozen
class TapConfig:
    database_url: str
    tenant_id: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    streams: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Any) -> TapConfig:
        if not isinstance(data, dict):
            raise TapError("config must be a JSON object")
        url = data.get("database_url")
        if not isinstance(url, str) or not url:
            raise TapError("config: database_url is required (a SQLAlchemy database URL)")
        tenant = data.get("tenant_id")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise TapError("config: tenant_id must be a non-empty string")
        size = data.get("batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_BATCH_SIZE:
            raise TapError(f"config: batch_size must be an integer from 1 to {MAX_BATCH_SIZE}")
        streams = data.get("streams")
        if streams is not None and (
            not isinstance(streams, list) or not all(isinstance(s, str) for s in streams)
        ):
            raise TapError("config: streams must be a list of event type names")
        return cls(url, tenant, size, None if streams is None else tuple(streams))


def read_bookmarks(state: Any) -> dict[str, int]:
    """The position each stream's bookmark holds, from a STATE value (``{}`` for none)."""
    if state is None or state == {}:
        return {}
    if not isinstance(state, dict) or not isinstance(state.get("bookmarks", {}), dict):
        raise TapError('state must be a STATE value: {"bookmarks": {stream: {...}}}')
    out: dict[str, int] = {}
    for stream, bookmark in state.get("bookmarks", {}).items():
        value = bookmark.get("replication_key_value") if isinstance(bookmark, dict) else None
        key = bookmark.get("replication_key", REPLICATION_KEY) if value is not None else None
        if (
            key != REPLICATION_KEY
            or isinstance(value, bool)
            or not isinstance(value, int)
            or value < 0
        ):
            raise TapError(
                f"state: the bookmark of {stream!r} must be "
                f'{{"replication_key": "{REPLICATION_KEY}", "replication_key_value": <int>}}'
            )
        out[str(stream)] = value
    return out


def state_value(bookmarks: Mapping[str, int]) -> JsonObject:
    return {
        "bookmarks": {
            stream: {"replication_key": REPLICATION_KEY, "replication_key_value": position}
            for stream, position in sorted(bookmarks.items())
        }
    }


# -- schemas ----------------------------------------------------------------------------------

_DROPPED_KEYWORDS = frozenset({"$schema", "$id", "$defs", "definitions", "title", "x-finfactory"})
_SCHEMA_MAPS = ("properties", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains", "propertyNames")
_LOCAL_DEF = "#/$defs/"


def _inline(node: Any, defs: Mapping[str, Any], expanding: frozenset[str]) -> Any:
    """A copy of ``node`` with local references inlined and Singer-friendly keywords."""
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix(_LOCAL_DEF)
        if not ref.startswith(_LOCAL_DEF) or name not in defs:
            raise TapError(f"cannot inline the schema reference {ref!r}")
        if name in expanding:
            return {}  # a recursive model: any JSON below this point
        target = _inline(defs[name], defs, expanding | {name})
        siblings = _inline({k: v for k, v in node.items() if k != "$ref"}, defs, expanding)
        return {**target, **siblings}
    out: JsonObject = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _inline(sub, defs, expanding) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_inline(sub, defs, expanding) for sub in value]
        elif key in _SCHEMA_VALUES:
            if key == "additionalProperties" and value is False:
                continue  # let a newer producer's added optional fields through
            out[key] = _inline(value, defs, expanding)
        else:
            out[key] = value
    _mark_money(out)
    return _simplify_nullable(out)


def _mark_money(node: JsonObject) -> None:
    """FinFactory money JSON (exactly string ``amount`` and ``currency``): tag the amount."""
    props = node.get("properties")
    if isinstance(props, dict) and set(props) == {"amount", "currency"}:
        amount = props["amount"]
        if all(props[k].get("type") == "string" for k in ("amount", "currency")):
            props["amount"] = {**amount, "format": DECIMAL_FORMAT}


def _simplify_nullable(node: JsonObject) -> JsonObject:
    """``anyOf: [{type: X, ...}, {type: null}]`` -> ``{type: [X, "null"], ...}``.

    Many Singer targets read ``type`` lists but not ``anyOf``. Left alone when the
    non-null branch is an enumeration (null would then fail its ``enum``/``const``).
    """
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2:
        return node
    nulls = [b for b in branches if b == {"type": "null"}]
    others = [b for b in branches if b != {"type": "null"}]
    if len(nulls) != 1 or len(others) != 1:
        return node
    other = others[0]
    if not isinstance(other.get("type"), str) or "enum" in other or "const" in other:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**other, **rest, "type": [other["type"], "null"]}


def stream_id(event_type: EventType) -> str:
    """``journal.posted`` v1 -> ``journal_posted_v1``."""
    return f"{event_type.name.replace('.', '_')}_v{event_type.version}"


def stream_schema(event_type: EventType) -> JsonObject:
    """The record schema of an event type's stream: envelope fields plus the typed payload."""
    envelope = envelope_schema()
    payload = payload_schema(event_type)
    properties: JsonObject = {}
    for name, field_schema in envelope["properties"].items():
        if name == "payload":
            typed = _inline(payload, payload.get("$defs", {}), frozenset())
            properties[name] = {**typed, "description": event_type.description}
        elif name == REPLICATION_KEY:
            properties[name] = {
                "type": "integer",
                "minimum": 1,
                "description": field_schema["description"],
            }
        else:
            properties[name] = _inline(field_schema, {}, frozenset())
    return {
        "type": "object",
        "description": f"{event_type.name} v{event_type.version}: {event_type.description}",
        "properties": properties,
        "required": list(properties),
    }


@attrs.frozen
class Stream:
    event_type: EventType
    tap_stream_id: str
    schema: JsonObject

    @classmethod
    def of(cls, event_type: EventType) -> Stream:
        return cls(event_type, stream_id(event_type), stream_schema(event_type))

    def catalog_entry(self) -> JsonObject:
        metadata: list[JsonObject] = [
            {
                "breadcrumb": [],
                "metadata": {
                    "inclusion": "available",
                    "selected-by-default": True,
                    "table-key-properties": list(KEY_PROPERTIES),
                    "forced-replication-method": "INCREMENTAL",
                    "valid-replication-keys": [REPLICATION_KEY],
                    "finfactory-event-type": self.event_type.name,
                    "finfactory-schema-version": self.event_type.version,
                    "finfactory-primitive": self.event_type.primitive,
                },
            }
        ]
        for name in self.schema["properties"]:
            metadata.append(
                {
                    "breadcrumb": ["properties", name],
                    "metadata": {
                        "inclusion": "automatic" if name in AUTOMATIC else "available",
                        "selected-by-default": True,
                    },
                }
            )
        return {
            "tap_stream_id": self.tap_stream_id,
            "stream": self.tap_stream_id,
            "schema": self.schema,
            "metadata": metadata,
            "key_properties": list(KEY_PROPERTIES),
            "replication_key": REPLICATION_KEY,
            "replication_method": "INCREMENTAL",
        }


def available_streams(registry: EventRegistry, config: TapConfig) -> list[Stream]:
    """A stream per declared event version, restricted to ``config.streams`` if given."""
    declared = {t.name for t in registry}
    if config.streams is not None:
        unknown = sorted(set(config.streams) - declared)
        if unknown:
            raise TapError(f"config: streams names undeclared event types {unknown}")
    return [
        Stream.of(t)
        for t in sorted(registry, key=lambda t: (t.name, t.version))
        if config.streams is None or t.name in config.streams
    ]


def discover(registry: EventRegistry, config: TapConfig) -> JsonObject:
    """The Singer catalog of every stream the config allows."""
    return {"streams": [s.catalog_entry() for s in available_streams(registry, config)]}


# -- selection --------------------------------------------------------------------------------


@attrs.frozen
class Selected:
    """A stream to sync and the top-level properties its records carry."""

    stream: Stream
    properties: tuple[str, ...]

    def schema(self) -> JsonObject:
        schema = self.stream.schema
        return {
            **schema,
            "properties": {k: v for k, v in schema["properties"].items() if k in self.properties},
            "required": [k for k in schema["required"] if k in self.properties],
        }


def _metadata_by_breadcrumb(entry: Mapping[str, Any]) -> dict[tuple[str, ...], JsonObject]:
    found: dict[tuple[str, ...], JsonObject] = {}
    for item in entry.get("metadata") or []:
        if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
            found[tuple(item.get("breadcrumb") or ())] = item["metadata"]
    return found


def select(streams: Sequence[Stream], catalog: Any | None) -> list[Selected]:
    """The streams (and properties) to sync: all without a catalog, else what it selects."""
    if catalog is None:
        return [Selected(s, tuple(s.schema["properties"])) for s in streams]
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise TapError('catalog must be {"streams": [...]}')
    by_id = {s.tap_stream_id: s for s in streams}
    chosen: list[Selected] = []
    for entry in catalog["streams"]:
        if not isinstance(entry, dict):
            raise TapError("catalog: every stream must be an object")
        sid = entry.get("tap_stream_id") or entry.get("stream")
        stream = by_id.pop(str(sid), None)
        if stream is None:
            log.warning("catalog stream %r is not one this tap offers (or repeated); ignored", sid)
            continue
        metadata = _metadata_by_breadcrumb(entry)
        root = metadata.get((), {})
        schema = entry["schema"] if isinstance(entry.get("schema"), dict) else {}
        selected = root.get("selected", schema.get("selected", root.get("selected-by-default")))
        if selected is not True:
            continue
        properties = []
        for name in stream.schema["properties"]:
            prop = metadata.get(("properties", name), {})
            wanted = prop.get("selected", prop.get("selected-by-default", True)) is not False
            if name in AUTOMATIC or (wanted and prop.get("inclusion") != "unsupported"):
                properties.append(name)
        chosen.append(Selected(stream, tuple(properties)))
    return sorted(chosen, key=lambda s: s.stream.tap_stream_id)


# -- messages ---------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays exact: never a float
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json_line(message: Mapping[str, Any]) -> str:
    return (
        json.dumps(
            message,
            default=_json_default,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )
        + "\n"
    )


def schema_message(selected: Selected) -> JsonObject:
    return {
        "type": "SCHEMA",
        "stream": selected.stream.tap_stream_id,
        "schema": selected.schema(),
        "key_properties": list(KEY_PROPERTIES),
        "bookmark_properties": [REPLICATION_KEY],
    }


def record_message(selected: Selected, event: EventEnvelope, extracted: datetime) -> JsonObject:
    data = event.to_json_dict()
    return {
        "type": "RECORD",
        "stream": selected.stream.tap_stream_id,
        "record": {name: data[name] for name in selected.properties},
        "time_extracted": extracted.isoformat(),
    }


def state_message(bookmarks: Mapping[str, int]) -> JsonObject:
    return {"type": "STATE", "value": state_value(bookmarks)}


# -- the sync ---------------------------------------------------------------------------------


@attrs.define
class SyncReport:
    records: int = 0
    batches: int = 0
    position: int = 0


@attrs.define
class Tap:
    """Reads the outbox from the bookmarks on and writes Singer messages to ``out``."""

    storage: Storage
    config: TapConfig
    out: TextIO
    registry: EventRegistry = REGISTRY
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def _write(self, message: Mapping[str, Any]) -> None:
        self.out.write(to_json_line(message))

    def sync(self, state: Any = None, catalog: Any | None = None) -> SyncReport:
        streams = available_streams(self.registry, self.config)
        chosen = select(streams, catalog)
        by_type = {(s.stream.event_type.name, s.stream.event_type.version): s for s in chosen}
        # Every outbox event must be accounted for when the user asked for all of them.
        strict = catalog is None and self.config.streams is None
        known = {(t.name, t.version) for t in self.registry}
        saved = read_bookmarks(state)
        bookmarks = {s.stream.tap_stream_id: saved.get(s.stream.tap_stream_id, 0) for s in chosen}
        report = SyncReport(position=min(bookmarks.values(), default=0))
        for selected in chosen:
            self._write(schema_message(selected))
        if not chosen:
            log.warning("no stream is selected: nothing to sync")
            self._write(state_message(bookmarks))
            self.out.flush()
            return report

        reader = OutboxReader(self.storage, self.config.tenant_id, self.config.batch_size)
        cursor = report.position
        while True:
            batch = reader.read(cursor)
            if not batch:
                break
            extracted = self.clock()
            for event in batch:
                key = (event.event_type, event.schema_version)
                target = by_type.get(key)
                if target is None:
                    if strict and key not in known:
                        raise TapError(
                            f"outbox position {event.position}: event type {event.event_type} "
                            f"v{event.schema_version} is not declared in this installation; "
                            "upgrade the tap (or choose streams with a catalog)"
                        )
                    continue
                assert event.position is not None
                if event.position > bookmarks[target.stream.tap_stream_id]:
                    self._write(record_message(target, event, extracted))
                    report.records += 1
            last = batch[-1].position
            assert last is not None
            cursor = last
            for sid, position in bookmarks.items():
                bookmarks[sid] = max(position, cursor)
            self._write(state_message(bookmarks))
            self.out.flush()
            report.batches += 1
            report.position = cursor
            log.info(
                "batch %d: up to position %d, %d records", report.batches, cursor, report.records
            )
        if report.batches == 0:
            self._write(state_message(bookmarks))
        self.out.flush()
        return report


# -- the command line -------------------------------------------------------------------------


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TapError(f"cannot read the {what} file {path}: {err}") from err


def _storage(url: str) -> tuple[Storage, Callable[[], None]]:
    import sqlalchemy

    from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine

    parsed = sqlalchemy.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver FinFactory ships with
    engine = create_engine(parsed)
    return SqlStorage(engine), engine.dispose


def about() -> JsonObject:
    return {
        "name": TAP_NAME,
        "description": "FinFactory transactional outbox as Singer streams, one per event type",
        "capabilities": ["discover", "catalog", "properties", "state"],
        "settings": CONFIG_SCHEMA,
    }


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finfactory.events.singer",
        description="Singer tap: export the FinFactory outbox as SCHEMA/RECORD/STATE messages.",
    )
    parser.add_argument("-c", "--config", type=Path, help="config JSON file")
    parser.add_argument("-s", "--state", type=Path, help="state JSON file (a STATE value)")
    parser.add_argument("--catalog", type=Path, help="catalog JSON file selecting streams")
    parser.add_argument("-p", "--properties", type=Path, help="legacy name for --catalog")
    parser.add_argument("-d", "--discover", action="store_true", help="print the catalog")
    parser.add_argument("--about", action="store_true", help="print what this tap offers")
    args = parser.parse_args(argv)
    stdout = out or sys.stdout
    # Singer: messages on stdout, logs on stderr.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s"
    )
    log.setLevel(logging.INFO)
    if args.about:
        stdout.write(json.dumps(about(), indent=2) + "\n")
        return 0
    if args.config is None:
        parser.error("--config is required")
    try:
        config = TapConfig.from_dict(_load_json(args.config, "config"))
        load_all_primitives()
        if args.discover:
            stdout.write(json.dumps(discover(REGISTRY, config), indent=2) + "\n")
            return 0
        state = _load_json(args.state, "state") if args.state else None
        catalog_path = args.catalog or args.properties
        catalog = _load_json(catalog_path, "catalog") if catalog_path else None
        storage, close = _storage(config.database_url)
        try:
            report = Tap(storage, config, stdout).sync(state, catalog)
        finally:
            close()
    except TapError as err:
        log.error("%s", err)
        return 1
    except BrokenPipeError:
        log.error("the target stopped reading")
        return 1
    except Exception as err:
        log.error("sync failed: %s: %s", type(err).__name__, err)
        return 1
    log.info(
        "synced %d records in %d batches; bookmark at position %d",
        report.records,
        report.batches,
        report.position,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
