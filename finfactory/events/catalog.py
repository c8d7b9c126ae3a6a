"""The event catalog, generated from the registry.

From the declared event types this module builds:

- ``render_markdown``: the event reference page (docs/events.md), grouped by primitive;
- ``json_schemas``: a JSON Schema (draft 2020-12) per event type and version, plus the envelope;
- ``asyncapi_document``: an AsyncAPI 3.0 document of every channel, message and operation;
- ``check_compatibility``: the gate that keeps an already published event version backward
  compatible (a new version is the way to break).

``python -m finfactory.events.catalog`` writes the catalog into ``docs/``; ``--check`` writes
nothing and exits 1 when the committed files differ from what the code would generate.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import pkgutil
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.events.registry import EVENT_NAME, REGISTRY, EventRegistry, EventType

JsonObject = dict[str, Any]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_PREFIX = "urn:finfactory:event:"
ENVELOPE_SCHEMA_ID = "urn:finfactory:event-envelope"
ENVELOPE_KEY = "envelope"
ASYNCAPI_VERSION = "3.0.0"
CONTENT_TYPE = "application/json"
DEFAULT_SUBJECT_PREFIX = "finfactory"
REGENERATE_COMMAND = "python -m finfactory.events.catalog"

MARKDOWN_FILE = "events.md"
SCHEMA_DIR = "events/schemas"
ASYNCAPI_FILE = "events/asyncapi.json"

_SCHEMA_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_.]*)\.v(?P<version>[0-9]+)\.json$")
_LOCAL_REF = "#/$defs/"
_EXAMPLE_TIME = "2026-01-15T10:30:00+00:00"


class CatalogError(RuntimeError):
    """The catalog cannot be generated from the declared events."""


# -- the envelope -----------------------------------------------------------------------------

# Every field of EventEnvelope, in its order, with its JSON Schema and what it means. A field
# added to the envelope without an entry here makes generation fail (see envelope_schema).
_ENVELOPE_FIELDS: dict[str, tuple[JsonObject, str]] = {
    "id": (
        {"type": "string", "format": "uuid"},
        "Event id (a UUID). Delivery is at least once: deduplicate on it",
    ),
    "event_type": (
        {"type": "string", "pattern": EVENT_NAME.pattern, "maxLength": 100},
        "Event name, for example `journal.posted`",
    ),
    "schema_version": (
        {"type": "integer", "minimum": 1},
        "Version of the payload schema; a breaking change is a new version",
    ),
    "payload": ({"type": "object"}, "The event's typed payload (see the event's schema)"),
    "recorded_at": (
        {"type": "string", "format": "date-time"},
        "When the command that produced the event ran (ISO 8601, UTC)",
    ),
    "trace_id": (
        {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "W3C trace-context trace id of the request",
    ),
    "tenant_id": (
        {"type": "string", "minLength": 1, "maxLength": 64},
        "Tenant of the command that produced the event",
    ),
    "source": (
        {"type": "string", "minLength": 1, "maxLength": 64},
        "Primitive that produced the event, for example `ledger`",
    ),
    "aggregate_type": (
        {"type": "string", "minLength": 1, "maxLength": 64},
        "Kind of entity the event is about, for example `journal`",
    ),
    "aggregate_id": (
        {"type": "string", "minLength": 1, "maxLength": 64},
        "Id of the entity the event is about",
    ),
    "aggregate_sequence": (
        {"type": "integer", "minimum": 1},
        "1, 2, 3… per aggregate, unique per tenant and aggregate: the aggregate's event order",
    ),
    "correlation_id": (
        {"type": "string", "minLength": 1, "maxLength": 64},
        "Correlation id (the trace id unless the caller set one)",
    ),
    "causation_id": (
        {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
        "Id of whatever caused the command, when the caller gave one",
    ),
    "position": (
        {"type": ["integer", "null"], "minimum": 1},
        "Outbox position: the consumer cursor, increasing in commit order",
    ),
}


def envelope_schema() -> JsonObject:
    """The JSON Schema of the envelope every event travels in."""
    names = [field.name for field in attrs.fields(EventEnvelope)]
    if set(names) != set(_ENVELOPE_FIELDS):
        missing = sorted(set(names) - set(_ENVELOPE_FIELDS))
        extra = sorted(set(_ENVELOPE_FIELDS) - set(names))
        raise CatalogError(
            f"the catalog's envelope description is out of date: undocumented {missing}, "
            f"no longer in EventEnvelope {extra}"
        )
    return {
        "$schema": DRAFT_2020_12,
        "$id": ENVELOPE_SCHEMA_ID,
        "title": "FinFactory event envelope",
        "description": (
            "Every FinFactory domain event: routing, tracing and ordering metadata "
            "around the event's typed payload"
        ),
        "type": "object",
        "properties": {
            name: {**_ENVELOPE_FIELDS[name][0], "description": _ENVELOPE_FIELDS[name][1]}
            for name in names
        },
        "required": names,
        "additionalProperties": False,
    }


# -- JSON Schemas -----------------------------------------------------------------------------


def schema_key(event_type: EventType) -> str:
    """The key of an event version in ``json_schemas``: ``journal.posted/1``."""
    return f"{event_type.name}/{event_type.version}"


def schema_id(event_type: EventType) -> str:
    return f"{SCHEMA_ID_PREFIX}{event_type.name}:v{event_type.version}"


def schema_file_name(key: str) -> str:
    """``journal.posted/1`` -> ``journal.posted.v1.json``; ``envelope`` -> ``envelope.json``."""
    if key == ENVELOPE_KEY:
        return f"{ENVELOPE_KEY}.json"
    name, _, version = key.partition("/")
    return f"{name}.v{version}.json"


def schema_key_of_file(file_name: str) -> str | None:
    """The inverse of ``schema_file_name``; None for a name the catalog never writes."""
    if file_name == f"{ENVELOPE_KEY}.json":
        return ENVELOPE_KEY
    match = _SCHEMA_FILE.match(file_name)
    if match is None:
        return None
    return f"{match['name']}/{int(match['version'])}"


def payload_schema(event_type: EventType) -> JsonObject:
    """The JSON Schema of one event version's payload, as consumers receive it."""
    generated = event_type.payload_model.model_json_schema(mode="serialization")
    generated.pop("title", None)
    generated.pop("description", None)
    return {
        "$schema": DRAFT_2020_12,
        "$id": schema_id(event_type),
        "title": event_type.name,
        "description": event_type.description,
        "x-finfactory": {
            "event_type": event_type.name,
            "schema_version": event_type.version,
            "primitive": event_type.primitive,
            "aggregate_type": event_type.aggregate_type,
        },
        **generated,
    }


def json_schemas(registry: EventRegistry) -> dict[str, JsonObject]:
    """A schema per event type and version (``"journal.posted/1"``) plus ``"envelope"``."""
    schemas = {schema_key(event_type): payload_schema(event_type) for event_type in registry}
    schemas[ENVELOPE_KEY] = envelope_schema()
    return dict(sorted(schemas.items()))


# -- walking schemas --------------------------------------------------------------------------


def _resolve(root: JsonObject, node: JsonObject) -> tuple[JsonObject, str | None]:
    """Follow local ``$ref``s; returns the target and the last ref followed."""
    ref: str | None = None
    hops = 0
    while isinstance(node.get("$ref"), str):
        ref = str(node["$ref"])
        if not ref.startswith("#/"):
            raise CatalogError(f"only local $refs are supported, not {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise CatalogError(f"$ref {ref!r} points nowhere")
            target = target[part]
        if not isinstance(target, dict):
            raise CatalogError(f"$ref {ref!r} is not a schema")
        node = target
        hops += 1
        if hops > 64:
            raise CatalogError(f"$ref {ref!r} loops")
    return node, ref


def _branches(root: JsonObject, node: JsonObject) -> list[JsonObject]:
    """The alternatives of a schema (``anyOf``/``oneOf`` flattened), references resolved."""
    node, _ = _resolve(root, node)
    for keyword in ("anyOf", "oneOf"):
        if isinstance(node.get(keyword), list):
            out: list[JsonObject] = []
            for branch in node[keyword]:
                out.extend(_branches(root, branch))
            return out
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        return _branches(root, all_of[0])
    return [node]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _own_types(node: JsonObject) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        types = {declared}
    elif isinstance(declared, list):
        types = {str(t) for t in declared}
    elif "const" in node:
        types = {_json_type(node["const"])}
    elif isinstance(node.get("enum"), list):
        types = {_json_type(v) for v in node["enum"]}
    elif "properties" in node:
        types = {"object"}
    elif "items" in node:
        types = {"array"}
    else:
        return {"any"}
    if "string" in types and isinstance(node.get("format"), str):
        types = (types - {"string"}) | {f"string({node['format']})"}
    return types


def _types(root: JsonObject, node: JsonObject) -> set[str]:
    """The JSON types a schema admits; a string's format counts as part of its type."""
    out: set[str] = set()
    for branch in _branches(root, node):
        out |= _own_types(branch)
    return out


def _enum_values(root: JsonObject, node: JsonObject) -> list[Any] | None:
    """The values a schema is restricted to, or None when it is not an enumeration."""
    values: list[Any] = []
    for branch in _branches(root, node):
        if "const" in branch:
            values.append(branch["const"])
        elif isinstance(branch.get("enum"), list):
            values.extend(branch["enum"])
        elif _own_types(branch) == {"null"}:
            values.append(None)
        else:
            return None
    return values


def _is_money(root: JsonObject, node: JsonObject) -> bool:
    """FinFactory's money JSON: exactly a string ``amount`` and a string ``currency``."""
    props = node.get("properties")
    if not isinstance(props, dict) or set(props) != {"amount", "currency"}:
        return False
    return all(_types(root, props[name]) == {"string"} for name in ("amount", "currency"))


# -- compatibility ----------------------------------------------------------------------------


def _label(path: str) -> str:
    return path or "(the payload)"


def _fmt_types(types: set[str]) -> str:
    return " | ".join(sorted(types))


def _compare(
    old_root: JsonObject,
    old: JsonObject,
    new_root: JsonObject,
    new: JsonObject,
    path: str,
    stack: frozenset[tuple[str, str]],
    problems: list[str],
) -> None:
    old_node, old_ref = _resolve(old_root, old)
    new_node, new_ref = _resolve(new_root, new)
    if old_ref is not None and new_ref is not None:
        if (old_ref, new_ref) in stack:
            return  # a recursive model already being compared further up
        stack = stack | {(old_ref, new_ref)}

    old_types, new_types = _types(old_root, old_node), _types(new_root, new_node)
    if old_types != new_types:
        problems.append(
            f"{_label(path)}: type changed from {_fmt_types(old_types)} to {_fmt_types(new_types)}"
        )
        return

    old_enum, new_enum = _enum_values(old_root, old_node), _enum_values(new_root, new_node)
    if old_enum is not None and new_enum is not None:
        removed = [v for v in old_enum if v not in new_enum]
        if removed:
            problems.append(f"{_label(path)}: enum values removed: {removed!r}")

    old_objects = [b for b in _branches(old_root, old_node) if "properties" in b]
    new_objects = [b for b in _branches(new_root, new_node) if "properties" in b]
    if len(old_objects) != len(new_objects):
        problems.append(f"{_label(path)}: the object alternatives changed")
    else:
        for old_object, new_object in zip(old_objects, new_objects, strict=True):
            _compare_object(old_root, old_object, new_root, new_object, path, stack, problems)

    old_arrays = [b for b in _branches(old_root, old_node) if isinstance(b.get("items"), dict)]
    new_arrays = [b for b in _branches(new_root, new_node) if isinstance(b.get("items"), dict)]
    if len(old_arrays) == len(new_arrays) == 1:
        _compare(
            old_root,
            old_arrays[0]["items"],
            new_root,
            new_arrays[0]["items"],
            f"{path}[]",
            stack,
            problems,
        )

    old_maps = [
        b for b in _branches(old_root, old_node) if isinstance(b.get("additionalProperties"), dict)
    ]
    new_maps = [
        b for b in _branches(new_root, new_node) if isinstance(b.get("additionalProperties"), dict)
    ]
    if len(old_maps) == len(new_maps) == 1:
        _compare(
            old_root,
            old_maps[0]["additionalProperties"],
            new_root,
            new_maps[0]["additionalProperties"],
            f"{path}{{*}}",
            stack,
            problems,
        )


def _compare_object(
    old_root: JsonObject,
    old: JsonObject,
    new_root: JsonObject,
    new: JsonObject,
    path: str,
    stack: frozenset[tuple[str, str]],
    problems: list[str],
) -> None:
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    old_required = set(old.get("required", []))
    new_required = set(new.get("required", []))
    for name, old_field in old_props.items():
        field_path = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{field_path}: field removed")
            continue
        if name in new_required and name not in old_required:
            problems.append(f"{field_path}: optional field became required")
        elif name in old_required and name not in new_required:
            problems.append(f"{field_path}: required field became optional")
        _compare(old_root, old_field, new_root, new_props[name], field_path, stack, problems)
    for name in new_props:
        if name not in old_props and name in new_required:
            field_path = f"{path}.{name}" if path else name
            problems.append(f"{field_path}: new required field")


def check_compatibility(old_schema: Mapping[str, Any], new_schema: Mapping[str, Any]) -> list[str]:
    """Why ``new_schema`` cannot replace ``old_schema`` under the same event name and version.

    Events already in the outbox keep their version, and consumers of that version keep
    reading it, so within one version: no field removed, no field's type changed (a string's
    format is part of its type), no optional field made required, no new required field,
    no required field made optional (consumers may rely on it), no enum value removed. New
    optional fields and new enum values are fine (consumers must ignore fields they do not
    know), and so is restricting a field to the values it already carried. Nested objects
    (``$ref``/``$defs``, array items, map values) are checked the same way. An empty list
    means compatible.
    """
    old_root, new_root = dict(old_schema), dict(new_schema)
    problems: list[str] = []
    _compare(old_root, old_root, new_root, new_root, "", frozenset(), problems)
    return problems


def compatibility_problems(
    committed: Mapping[str, Mapping[str, Any]], generated: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Problems per committed schema key: incompatible changes, or a version no longer declared."""
    out: dict[str, list[str]] = {}
    for key in sorted(committed):
        if key not in generated:
            out[key] = [
                "no longer declared: a published event version must stay (declare a new "
                "version to change it)"
            ]
            continue
        problems = check_compatibility(committed[key], generated[key])
        if problems:
            out[key] = problems
    return out


def load_committed_schemas(schema_dir: Path) -> dict[str, JsonObject]:
    """The schema files in ``schema_dir``, by schema key."""
    out: dict[str, JsonObject] = {}
    if not schema_dir.is_dir():
        return out
    for path in sorted(schema_dir.glob("*.json")):
        key = schema_key_of_file(path.name)
        if key is not None:
            out[key] = json.loads(path.read_text(encoding="utf-8"))
    return out


# -- Markdown ---------------------------------------------------------------------------------


def _type_text(root: JsonObject, node: JsonObject) -> str:
    """A short, human type name: ``string``, ``date-time``, ``money``, ``list of string``…"""
    branches = _branches(root, node)
    nullable = any("null" in _own_types(b) for b in branches)
    parts: list[str] = []
    for branch in branches:
        if _own_types(branch) == {"null"}:
            continue
        if "const" in branch:
            text = f"`{json.dumps(branch['const'])}`"
        elif isinstance(branch.get("enum"), list):
            text = "one of " + ", ".join(f"`{json.dumps(v)}`" for v in branch["enum"])
        elif _is_money(root, branch):
            text = "money"
        elif isinstance(branch.get("items"), dict):
            text = f"list of {_type_text(root, branch['items'])}"
        elif isinstance(branch.get("additionalProperties"), dict):
            text = f"map of {_type_text(root, branch['additionalProperties'])}"
        else:
            own = sorted(_own_types(branch) - {"null"})
            text = " or ".join(t.replace("string(", "").rstrip(")") for t in own)
        if text not in parts:
            parts.append(text)
    if nullable:
        parts.append("null")
    return " or ".join(parts) if parts else "null"


def _field_rows(
    root: JsonObject,
    node: JsonObject,
    path: str,
    required: bool,
    stack: frozenset[str],
) -> list[tuple[str, str]]:
    """(field path, type) rows; nested models are flattened (``legs[].amount``)."""
    resolved, ref = _resolve(root, node)
    description = node.get("description") or resolved.get("description")
    branches = _branches(root, resolved)
    nullable = any("null" in _own_types(b) for b in branches)
    solid = [b for b in branches if _own_types(b) != {"null"}]
    qualifiers = (" or null" if nullable else "") + ("" if required else ", optional")
    if ref is not None and ref in stack:
        return [(path, f"{ref.removeprefix(_LOCAL_REF)} (recursive){qualifiers}")]
    if ref is not None:
        stack = stack | {ref}
    if len(solid) == 1:
        (only,) = solid
        if isinstance(only.get("properties"), dict) and not _is_money(root, only):
            rows = [] if not qualifiers else [(path, f"object{qualifiers}")]
            wanted = set(only.get("required", []))
            for name, sub in only["properties"].items():
                rows.extend(_field_rows(root, sub, f"{path}.{name}", name in wanted, stack))
            return rows
        items = only.get("items")
        if isinstance(items, dict):
            item, _ = _resolve(root, items)
            item_branches = _branches(root, item)
            if (
                len(item_branches) == 1
                and isinstance(item_branches[0].get("properties"), dict)
                and not _is_money(root, item_branches[0])
            ):
                rows = [] if not qualifiers else [(path, f"list{qualifiers}")]
                rows.extend(_field_rows(root, items, f"{path}[]", True, stack))
                return rows
    text = _type_text(root, resolved)
    if not required:
        text += ", optional"
    if isinstance(description, str) and description.strip():
        text += f" — {description.strip()}"
    return [(path, text)]


def payload_fields(schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The payload's fields as (path, type) rows, nested models flattened."""
    root = dict(schema)
    props = root.get("properties", {})
    wanted = set(root.get("required", []))
    rows: list[tuple[str, str]] = []
    for name, sub in props.items():
        rows.extend(_field_rows(root, sub, name, name in wanted, frozenset()))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _primitive_title(primitive: str) -> str:
    """The package's ``DISPLAY_NAME`` when it declares one, else the name title-cased."""
    module = sys.modules.get(f"finfactory.primitives.{primitive}")
    declared = getattr(module, "DISPLAY_NAME", None)
    if isinstance(declared, str) and declared:
        return declared
    return " ".join(
        word.upper() if word in {"ai", "kyc", "pos", "qr"} else word.capitalize()
        for word in primitive.split("_")
    )


def _primitive_summary(primitive: str) -> str | None:
    """The first paragraph of the primitive package's docstring, when the package is loaded."""
    module = sys.modules.get(f"finfactory.primitives.{primitive}")
    doc = getattr(module, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


def _group(registry: EventRegistry) -> dict[str, list[EventType]]:
    groups: dict[str, list[EventType]] = {}
    for event_type in sorted(registry, key=lambda t: (t.primitive, t.name, t.version)):
        groups.setdefault(event_type.primitive, []).append(event_type)
    return groups


def _segments(name: str) -> list[str]:
    return name.split(".")


def _cover(group: list[str], depth: int, others: set[str], patterns: list[str]) -> None:
    """Add to ``patterns`` what selects exactly ``group`` (names sharing ``depth`` segments)."""
    split = [_segments(n) for n in group]
    common = split[0][:-1]
    for parts in split[1:]:
        limit = 0
        while limit < len(common) and limit < len(parts) - 1 and common[limit] == parts[limit]:
            limit += 1
        common = common[:limit]
    prefix = ".".join(common) + "."
    if common and not any(other.startswith(prefix) for other in others):
        patterns.append(f"{prefix}*")
        return
    level = max(len(common), depth)
    subgroups: dict[str, list[str]] = {}
    for name, parts in zip(group, split, strict=True):
        if len(parts) == level + 1:
            patterns.append(name)
        else:
            subgroups.setdefault(parts[level], []).append(name)
    for _, sub in sorted(subgroups.items()):
        _cover(sub, level + 1, others, patterns)


def event_prefixes(registry: EventRegistry) -> dict[str, list[str]]:
    """Per primitive, the event-name patterns (``hold.*``) that select exactly its events.

    Where a prefix would also match another primitive's events (``risk.*`` is shared by KYC and
    fraud detection), the exact event names are listed instead.
    """
    names_by_primitive: dict[str, set[str]] = {}
    for event_type in registry:
        names_by_primitive.setdefault(event_type.primitive, set()).add(event_type.name)
    out: dict[str, list[str]] = {}
    for primitive, names in sorted(names_by_primitive.items()):
        others = {n for p, ns in names_by_primitive.items() if p != primitive for n in ns}
        patterns: list[str] = []
        firsts: dict[str, list[str]] = {}
        for name in sorted(names):
            firsts.setdefault(_segments(name)[0], []).append(name)
        for _, group in sorted(firsts.items()):
            _cover(group, 0, others, patterns)
        out[primitive] = sorted(set(patterns))
    return out


def _example_value(
    root: JsonObject, node: JsonObject, name: str, stack: frozenset[str] = frozenset()
) -> Any:
    """A placeholder value that satisfies a schema, for the envelope example.

    Only required fields are filled in; a model met again inside itself ends the recursion
    (an empty list, or null).
    """
    resolved, ref = _resolve(root, node)
    if ref is not None:
        if ref in stack:
            return None
        stack = stack | {ref}
    branches = [b for b in _branches(root, resolved) if _own_types(b) != {"null"}]
    if not branches:
        return None
    branch = branches[0]
    if "const" in branch:
        return branch["const"]
    if isinstance(branch.get("enum"), list) and branch["enum"]:
        return branch["enum"][0]
    if _is_money(root, branch):
        return {"amount": "10.00", "currency": "PHP"}
    if isinstance(branch.get("properties"), dict):
        wanted = set(branch.get("required", []))
        return {
            key: _example_value(root, sub, key, stack)
            for key, sub in branch["properties"].items()
            if key in wanted
        }
    if isinstance(branch.get("items"), dict):
        _, item_ref = _resolve(root, branch["items"])
        if item_ref is not None and item_ref in stack:
            return []
        return [_example_value(root, branch["items"], name, stack)]
    types = _own_types(branch)
    if "string(date-time)" in types:
        return _EXAMPLE_TIME
    if "string(date)" in types:
        return _EXAMPLE_TIME[:10]
    if "string(uuid)" in types:
        return "5f0c6a1e-8d2b-4c3a-9e41-7b2d9c0a6f15"
    if "integer" in types or "number" in types:
        return 1
    if "boolean" in types:
        return True
    if "string" in types:
        return name
    return {}


def example_envelope(registry: EventRegistry) -> JsonObject:
    """An example envelope (the registry's first event, placeholder payload values)."""
    first = next(iter(registry), None)
    if first is None:
        event_name, version, primitive, aggregate = "journal.posted", 1, "ledger", "journal"
        payload: Any = {}
    else:
        schema = payload_schema(first)
        event_name, version = first.name, first.version
        primitive, aggregate = first.primitive, first.aggregate_type
        payload = _example_value(schema, schema, "payload")
    return {
        "id": "0e5ad3b4-2c1f-4f6e-8a57-93b1d2c4e6f8",
        "event_type": event_name,
        "schema_version": version,
        "payload": payload,
        "recorded_at": _EXAMPLE_TIME,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "tenant_id": "acme",
        "source": primitive,
        "aggregate_type": aggregate,
        "aggregate_id": "9b2e7c41-5d3a-4f08-b6e2-1c8f0a7d3e59",
        "aggregate_sequence": 1,
        "correlation_id": "order-991",
        "causation_id": None,
        "position": 42,
    }


def render_markdown(
    registry: EventRegistry, *, subject_prefix: str = DEFAULT_SUBJECT_PREFIX
) -> str:
    """The event reference page: envelope, one section per primitive, naming, consuming."""
    envelope = envelope_schema()
    lines: list[str] = [
        "# Domain Events",
        "",
        "<!-- Generated from the event registry by "
        f"`{REGENERATE_COMMAND}`: do not edit by hand. -->",
        "",
        "FinFactory primitives publish domain events through the transactional outbox: every "
        "state change appends its events in the same database transaction as the change, so "
        "an event exists exactly when its change committed. Consumers integrate, analyse and "
        "audit through them.",
        "",
        "All events are serialized as JSON. Money is "
        '`{"amount": "10.00", "currency": "PHP"}` (a decimal string in the currency\'s minor '
        "unit precision, never a float); timestamps are ISO 8601 in UTC. Consumers must "
        "ignore payload fields they do not know: an event version may gain optional fields, "
        "and anything else is a new version.",
        "",
        "Machine-readable forms of this page: a JSON Schema (draft 2020-12) per event version "
        "in [events/schemas/](events/schemas/) (`<event>.v<version>.json`, and "
        "[envelope.json](events/schemas/envelope.json)), and an AsyncAPI 3.0 document in "
        "[events/asyncapi.json](events/asyncapi.json).",
        "",
        "## Event Structure",
        "",
        "Each event is wrapped in an envelope with the following structure:",
        "",
        "```json",
        json.dumps(example_envelope(registry), indent=2, ensure_ascii=False),
        "```",
        "",
        "| Field | Type | Description |",
        "|---|---|---|",
    ]
    for name, prop in envelope["properties"].items():
        lines.append(
            f"| `{name}` | {_cell(_type_text(envelope, prop))} | {_cell(prop['description'])} |"
        )

    groups = _group(registry)
    for primitive, event_types in groups.items():
        title = _primitive_title(primitive)
        counts: dict[str, int] = {}
        for event_type in event_types:
            counts[event_type.name] = counts.get(event_type.name, 0) + 1
        versioned = any(count > 1 for count in counts.values())
        lines += ["", f"## {title} Events", ""]
        summary = _primitive_summary(primitive)
        lines += [summary or f"Events published by the {title} primitive.", ""]
        if versioned:
            lines += [
                "| Event | Version | Description | Payload Fields |",
                "|---|---|---|---|",
            ]
        else:
            lines += ["| Event | Description | Payload Fields |", "|---|---|---|"]
        for event_type in event_types:
            key = schema_key(event_type)
            link = f"{SCHEMA_DIR}/{schema_file_name(key)}"
            fields = payload_fields(payload_schema(event_type))
            field_text = "<br>".join(f"`{path}` {kind}" for path, kind in fields) or "—"
            description = f"{event_type.description}<br>Aggregate: `{event_type.aggregate_type}`"
            cells = [f"[`{event_type.name}`]({link})"]
            if versioned:
                cells.append(str(event_type.version))
            cells += [description, field_text]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")

    lines += [
        "",
        "## Event Types Reference",
        "",
        "Event names are lower-case words joined by dots, an entity then what happened to it "
        "(`journal.posted`, `ledger.account.status_changed`). The envelope's `source` names "
        "the primitive that published the event.",
        "",
        "| Primitive | Event Type Prefix |",
        "|---|---|",
    ]
    for primitive, patterns in event_prefixes(registry).items():
        shown = ", ".join(f"`{p}`" for p in patterns)
        lines.append(f"| {_cell(_primitive_title(primitive))} | {_cell(shown)} |")

    lines += [
        "",
        "## Consuming Events",
        "",
        "Events are published through the transactional outbox and can be consumed in three "
        "ways. Delivery is at least once in every case: deduplicate on the event `id`, and "
        "use `aggregate_sequence` for the order of one aggregate's events.",
        "",
        "1. **Direct database polling.** Read the `ff_outbox` table (columns as in the "
        "envelope above; see [kernel.md](kernel.md#the-transactional-outbox)). Remember the "
        "last `position` you handled and ask for what comes after it, ordered by `position`: "
        "positions follow commit order, so this cursor never skips an event (positions may "
        "have holes; rely on their order). Add `tenant_id = :tenant` to read one tenant's "
        "events (indexed by `tenant_id, position`). In Python, "
        "`finfactory.events.OutboxReader` does this.",
        "",
        "   ```sql",
        "   SELECT position, id, event_type, schema_version, tenant_id, aggregate_type,",
        "          aggregate_id, aggregate_sequence, payload, recorded_at",
        "     FROM ff_outbox",
        "    WHERE position > :last_seen",
        "    ORDER BY position",
        "    LIMIT 500",
        "   ```",
        "",
        "2. **Event streaming.** A relay publishes the outbox to a message broker. On NATS "
        f"JetStream the subject is `{subject_prefix}.<tenant>.<event_type>` (for example "
        f"`{subject_prefix}.acme.journal.posted`; subscribe to `{subject_prefix}.acme.>` for "
        "all of a tenant's events), and the message id (`Nats-Msg-Id`) is the event id, so "
        "JetStream drops duplicates; on Kafka the message key is the aggregate id, which "
        "keeps an aggregate's events in order in one partition. Channels, messages and "
        "payload schemas are described in [events/asyncapi.json](events/asyncapi.json).",
        "",
        "3. **ETL pipelines.** The Singer tap `tap-finfactory` (`python -m "
        "finfactory.events.singer`) emits one stream per event type and version, typed by "
        "the JSON Schemas in [events/schemas/](events/schemas/), resuming from the outbox "
        "`position`; Meltano runs it as an extractor. See "
        "[events-delivery.md](events-delivery.md).",
        "",
    ]
    return "\n".join(lines)


# -- AsyncAPI ---------------------------------------------------------------------------------


def _rewrite_refs(node: Any, names: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out: JsonObject = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_LOCAL_REF):
                out[key] = f"#/components/schemas/{names[value.removeprefix(_LOCAL_REF)]}"
            else:
                out[key] = _rewrite_refs(value, names)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, names) for item in node]
    return node


def _local_refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found: set[str] = set()
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_LOCAL_REF):
                found.add(value.removeprefix(_LOCAL_REF))
            else:
                found |= _local_refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_local_refs(item) for item in node)) if node else set()
    return set()


def _closure_digest(defs: Mapping[str, Any], name: str) -> str:
    """A digest of a definition together with everything it references (by content)."""
    closure: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in closure:
            continue
        closure[current] = defs[current]
        todo.extend(sorted(_local_refs(defs[current])))
    text = json.dumps(closure, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _message_id(event_type: EventType) -> str:
    return f"{event_type.name}.v{event_type.version}"


def _package_version() -> str:
    try:
        return metadata.version("finfactory")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def asyncapi_document(
    registry: EventRegistry, subject_prefix: str = DEFAULT_SUBJECT_PREFIX
) -> JsonObject:
    """An AsyncAPI 3.0.0 document: a channel per event type on ``{prefix}.{tenant}.{type}``."""
    if not EVENT_NAME.match(f"{subject_prefix}.x") or "." in subject_prefix:
        raise CatalogError(f"subject prefix {subject_prefix!r} must be one lower-case token")
    payloads = {_message_id(t): payload_schema(t) for t in registry}

    # Hoist every payload's $defs into components/schemas. A name that means different
    # things in different payloads gets a content digest appended, so names stay stable.
    digests: dict[str, set[str]] = {}
    for schema in payloads.values():
        defs = schema.get("$defs", {})
        for name in defs:
            digests.setdefault(name, set()).add(_closure_digest(defs, name))
    reserved = {"Envelope", *payloads}
    schemas: JsonObject = {}
    renamed: dict[str, dict[str, str]] = {}
    for key, schema in payloads.items():
        defs = schema.get("$defs", {})
        names: dict[str, str] = {}
        for name in defs:
            digest = _closure_digest(defs, name)
            clash = len(digests[name]) > 1 or name in reserved
            names[name] = f"{name}.{digest[:8]}" if clash else name
        renamed[key] = names
        for name, definition in defs.items():
            schemas.setdefault(names[name], _rewrite_refs(definition, names))

    envelope = envelope_schema()
    for drop in ("$schema", "$id"):
        envelope.pop(drop)
    components_schemas: JsonObject = {"Envelope": envelope}
    for key, schema in payloads.items():
        body = {
            k: v for k, v in schema.items() if k not in {"$schema", "$id", "$defs", "x-finfactory"}
        }
        components_schemas[key] = _rewrite_refs(body, renamed[key])
    components_schemas.update(sorted(schemas.items()))

    channels: JsonObject = {}
    operations: JsonObject = {}
    messages: JsonObject = {}
    by_name: dict[str, list[EventType]] = {}
    for event_type in sorted(registry, key=lambda t: (t.name, t.version)):
        by_name.setdefault(event_type.name, []).append(event_type)
    for name, versions in by_name.items():
        latest = versions[-1]
        channel_messages: JsonObject = {}
        for event_type in versions:
            message_id = _message_id(event_type)
            messages[message_id] = {
                "name": event_type.name,
                "title": f"{event_type.name} v{event_type.version}",
                "summary": event_type.description,
                "payload": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Envelope"},
                        {
                            "type": "object",
                            "properties": {
                                "event_type": {"const": event_type.name},
                                "schema_version": {"const": event_type.version},
                                "source": {"const": event_type.primitive},
                                "aggregate_type": {"const": event_type.aggregate_type},
                                "payload": {"$ref": f"#/components/schemas/{message_id}"},
                            },
                        },
                    ]
                },
                "correlationId": {
                    "description": "The envelope's correlation id",
                    "location": "$message.payload#/correlation_id",
                },
            }
            channel_messages[message_id] = {"$ref": f"#/components/messages/{message_id}"}
        channels[name] = {
            "address": f"{subject_prefix}.{{tenant}}.{name}",
            "title": name,
            "summary": latest.description,
            "description": (
                f"`{name}` events published by the {_primitive_title(latest.primitive)} "
                f"primitive (aggregate `{latest.aggregate_type}`)."
            ),
            "parameters": {"tenant": {"$ref": "#/components/parameters/tenant"}},
            "messages": channel_messages,
        }
        operations[f"send.{name}"] = {
            "action": "send",
            "title": f"Publish {name}",
            "summary": f"The outbox relay publishes each committed `{name}` event",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [
                {"$ref": f"#/channels/{name}/messages/{_message_id(t)}"} for t in versions
            ],
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "FinFactory domain events",
            "version": _package_version(),
            "description": (
                "Every domain event FinFactory primitives publish through the transactional "
                "outbox. Each message is the event envelope with the event's typed payload; "
                f"the subject is `{subject_prefix}.{{tenant}}.{{event_type}}`. Generated from "
                f"the event registry by `{REGENERATE_COMMAND}`."
            ),
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": components_schemas,
            "messages": messages,
            "parameters": {
                "tenant": {
                    "description": (
                        "The tenant id (the envelope's `tenant_id`); one subject token, so "
                        "it must not contain `.`, `*`, `>` or whitespace"
                    ),
                    "examples": ["acme"],
                    "location": "$message.payload#/tenant_id",
                }
            },
        },
    }


# -- files and the command line ---------------------------------------------------------------


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generate_files(
    registry: EventRegistry, *, subject_prefix: str = DEFAULT_SUBJECT_PREFIX
) -> dict[str, str]:
    """Every catalog file, by path relative to the docs directory, with its content."""
    files = {MARKDOWN_FILE: render_markdown(registry, subject_prefix=subject_prefix)}
    for key, schema in json_schemas(registry).items():
        files[f"{SCHEMA_DIR}/{schema_file_name(key)}"] = _dump(schema)
    files[ASYNCAPI_FILE] = _dump(asyncapi_document(registry, subject_prefix))
    return dict(sorted(files.items()))


def stale_files(out_dir: Path, files: Mapping[str, str]) -> list[str]:
    """What differs between ``out_dir`` and the generated ``files`` (empty: up to date)."""
    problems: list[str] = []
    for relative, content in files.items():
        path = out_dir / relative
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{path}: differs from what the code generates")
    schema_dir = out_dir / SCHEMA_DIR
    if schema_dir.is_dir():
        for path in sorted(schema_dir.glob("*.json")):
            if f"{SCHEMA_DIR}/{path.name}" not in files:
                problems.append(f"{path}: no event version generates it")
    return problems


def write_files(
    out_dir: Path,
    files: Mapping[str, str],
    *,
    allow_breaking: bool = False,
) -> dict[str, list[str]]:
    """Write the catalog into ``out_dir``; stale schema files are removed.

    Refuses (writes nothing, returns the problems by schema key) when a committed schema
    would be replaced by an incompatible one or removed, unless ``allow_breaking``.
    """
    schema_dir = out_dir / SCHEMA_DIR
    generated = {
        key: json.loads(content)
        for relative, content in files.items()
        if relative.startswith(f"{SCHEMA_DIR}/")
        and (key := schema_key_of_file(relative.rsplit("/", 1)[1])) is not None
    }
    problems = compatibility_problems(load_committed_schemas(schema_dir), generated)
    if problems and not allow_breaking:
        return problems
    for relative, content in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
    if schema_dir.is_dir():
        for path in schema_dir.glob("*.json"):
            if f"{SCHEMA_DIR}/{path.name}" not in files:
                path.unlink()
    return {}


def load_all_primitives() -> list[str]:
    """Import every primitive package under ``finfactory.primitives`` (declaring its events)."""
    import finfactory.primitives as primitives

    loaded: list[str] = []
    for info in sorted(pkgutil.iter_modules(primitives.__path__), key=lambda m: m.name):
        if info.ispkg and not info.name.startswith("_"):
            importlib.import_module(f"{primitives.__name__}.{info.name}")
            loaded.append(info.name)
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE_COMMAND,
        description="Generate the event catalog (Markdown, JSON Schemas, AsyncAPI) from code.",
    )
    parser.add_argument("--out", default="docs", type=Path, help="docs directory (docs)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the committed catalog differs from the generated one",
    )
    parser.add_argument(
        "--subject-prefix", default=DEFAULT_SUBJECT_PREFIX, help="NATS subject prefix"
    )
    parser.add_argument(
        "--allow-breaking",
        action="store_true",
        help="overwrite or remove committed schemas even when that breaks consumers",
    )
    args = parser.parse_args(argv)
    load_all_primitives()
    files = generate_files(REGISTRY, subject_prefix=args.subject_prefix)
    out_dir: Path = args.out
    if args.check:
        problems = stale_files(out_dir, files)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(
                f"the event catalog is out of date: run `{REGENERATE_COMMAND}` and commit "
                "the result",
                file=sys.stderr,
            )
            return 1
        print(f"event catalog up to date ({len(files)} files, {len(REGISTRY)} event versions)")
        return 0
    refused = write_files(out_dir, files, allow_breaking=args.allow_breaking)
    if refused:
        _print_refusal(refused)
        return 1
    print(f"wrote the event catalog to {out_dir} ({len(files)} files)")
    return 0


def _print_refusal(refused: Mapping[str, Iterable[str]]) -> None:
    for key, problems in refused.items():
        for problem in problems:
            print(f"{schema_file_name(key)}: {problem}", file=sys.stderr)
    print(
        "refusing to change published event versions incompatibly: declare a new version "
        "of the event instead (or pass --allow-breaking if nothing consumes it yet)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    raise SystemExit(main())
