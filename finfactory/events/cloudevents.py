"""CloudEvents 1.0 mapping of the event envelope: JSON structured mode and binary bindings.

The mapping is lossless: ``from_structured_json(to_structured_json(e)) == e`` and
``from_binary(*to_binary(e, binding=b), b) == e`` for every well-formed envelope, as long as
producer and consumer use the same :class:`CloudEventOptions`. It needs nothing beyond the
standard library and pydantic-core's JSON encoder (the official ``cloudevents`` package is
only the test oracle).

Attribute mapping (defaults: ``source_base="urn:finfactory"``, ``type_prefix=""``)::

    CloudEvents attribute  EventEnvelope field       example / rule
    ---------------------  ------------------------  ------------------------------------------
    specversion            (constant)                "1.0"
    id                     id                        as is
    source                 source + tenant_id        "urn:finfactory:ledger:tenant-a"
    type                   event_type                type_prefix + event_type: "journal.posted"
    subject                aggregate_type + id       "journal/<aggregate_id>"
    time                   recorded_at               RFC 3339; "Z" for UTC, else its offset
    datacontenttype        (constant)                "application/json"
    dataschema             event_type + version      "urn:finfactory:schema:journal.posted:1"
    data                   payload                   the JSON object
    traceparent            trace_id                  "00-<trace_id>-<span>-01" (W3C)
    partitionkey           aggregate_id              Partitioning extension (Kafka key)
    sequence               aggregate_sequence        Sequence extension, 20-digit zero padded
    tenantid               tenant_id                 as is
    aggregatetype          aggregate_type            as is
    aggregateid            aggregate_id              as is
    schemaversion          schema_version            decimal string: "1"
    correlationid          correlation_id            as is
    causationid            causation_id              omitted when None
    position               position                  decimal string; omitted when None

Rules worth knowing:

* ``source`` is ``<source_base><sep><primitive><sep><tenant>`` where ``sep`` is ``:`` when the
  base is a URN (``urn:...``) and ``/`` otherwise (``https://example.com/events/ledger/t1``).
  Each segment is percent-encoded except RFC 3986 unreserved characters, so a ``:`` or ``/``
  inside a tenant id can never be confused with the separator. ``dataschema`` is built the
  same way from ``schema_base`` (default ``<source_base><sep>schema``).
* ``sequence`` is a string, as the Sequence extension requires, zero-padded to 20 digits so
  that lexicographic order equals numeric order. Decoding accepts padded or unpadded digits.
* The ``traceparent`` span id is derived from the event id (the first 16 hex digits of a
  SHA-256 of it), so mapping the same event twice gives the same bytes. The trace flags are
  always ``01`` (sampled): an event does not record the request's sampling decision.
* Every extension value is a string in every mode, so structured and binary mode agree.
* ``time`` keeps the envelope's UTC offset when it is a whole number of minutes (RFC 3339
  cannot say more); other offsets are converted to UTC. Either way the instant is exact.
  Incoming times with more than microsecond precision are truncated to microseconds.
* Decoding checks that the derived attributes agree with the explicit ones (``subject``,
  ``partitionkey``, ``dataschema``, the tenant in ``source``) and raises
  :class:`~finfactory.kernel.errors.ValidationError` naming the attribute otherwise.

Binary content mode, per binding (header names are written lower-case and matched
case-insensitively):

* ``kafka`` (Kafka protocol binding §3.2): ``ce_<attribute>`` headers, values UTF-8 bytes
  without further encoding; ``datacontenttype`` travels as the ``content-type`` header. The
  ``partitionkey`` attribute stays in the headers; use :func:`partition_key` for the record key.
* ``http`` (HTTP protocol binding §3.1.3): ``ce-<attribute>`` headers, values percent-encoded
  (space, ``"``, ``%`` and everything outside printable ASCII); ``datacontenttype`` travels as
  ``content-type``.
* ``nats`` (NATS protocol binding v1.0.3 §3.1; earlier versions define structured mode only):
  ``ce-<attribute>`` headers for *every* attribute, ``datacontenttype`` included as
  ``ce-datacontenttype``; values percent-encoded as for HTTP. No ``content-type`` header is
  written, because a ``Content-Type: application/cloudevents...`` header marks structured mode.

Decoding HTTP and NATS values first removes RFC 7230 double-quoting, then performs one strict
round of percent-decoding (malformed escapes and invalid UTF-8 are rejected).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final, Literal, TypeVar, overload
from urllib.parse import quote, unquote_to_bytes

import attrs

from finfactory.events.envelope import EventEnvelope
from finfactory.events.jsontext import encode_json
from finfactory.kernel.errors import ConfigurationError, ValidationError

__all__ = [
    "BINDINGS",
    "DATA_CONTENT_TYPE",
    "DEFAULT_OPTIONS",
    "SPECVERSION",
    "STRUCTURED_CONTENT_TYPE",
    "Binding",
    "CloudEventOptions",
    "from_binary",
    "from_cloudevent",
    "from_message",
    "from_structured_json",
    "partition_key",
    "span_id_for",
    "to_binary",
    "to_cloudevent",
    "to_structured_json",
    "traceparent_for",
]

_T = TypeVar("_T")

SPECVERSION: Final = "1.0"
DATA_CONTENT_TYPE: Final = "application/json"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"

Binding = Literal["kafka", "nats", "http"]
BINDINGS: Final[tuple[Binding, ...]] = ("kafka", "nats", "http")

HeaderValue = bytes | str
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]]

_SEQUENCE_WIDTH: Final = 20
_MAX_INT: Final = 2**63 - 1

_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[!-~]+$", re.ASCII)
_PRINTABLE_ASCII = re.compile(r"^[!-~]*$", re.ASCII)
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$", re.ASCII)
_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$",
    re.ASCII | re.DOTALL,
)
_UINT = re.compile(r"^[0-9]{1,20}$", re.ASCII)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))$",
    re.ASCII,
)
_JSON_MEDIA_TYPE = re.compile(
    r"^(?:application|text)/(?:[A-Za-z0-9!#$&^_.+\-]+\+)?json\s*(?:;.*)?$",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# The CloudEvents String type forbids C0/C1 controls, unpaired surrogates (any surrogate code
# point in a Python str is unpaired) and Unicode noncharacters.
_NONCHARACTERS = "".join(
    re.escape(chr(plane * 0x10000 + low)) for plane in range(17) for low in (0xFFFE, 0xFFFF)
)
_FORBIDDEN_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]"
)

# HTTP and NATS header values: printable ASCII stays, except space (not in the range), the
# double quote and the percent sign; everything else is percent-encoded from its UTF-8 bytes.
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_HEADER_PLAIN: Final = re.compile(r"[!#$&-~]*\Z")  # the characters of _HEADER_SAFE

_SPAN_SALT: Final = b"finfactory.cloudevents.span\x00"
_SPAN_HASHER: Final = hashlib.sha256(_SPAN_SALT)
# The last UTC time formatted, swapped as one tuple so threads never see half an update.
_LAST_TIME: Final[list[tuple[datetime, str]]] = [
    (datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00Z")
]


def _uri_separator(base: str) -> str:
    return ":" if base[:4].lower() == "urn:" else "/"


def _check_base(value: str, name: str) -> None:
    if not isinstance(value, str) or not _ABSOLUTE_URI.match(value):
        raise ConfigurationError(
            f"{name} must be an absolute URI without spaces, got {value!r}", setting=name
        )
    if value.endswith(_uri_separator(value)):
        raise ConfigurationError(
            f"{name} must not end with {_uri_separator(value)!r}", setting=name
        )


def _segment(value: str) -> str:
    # quote() with safe="" keeps only RFC 3986 unreserved characters (ALPHA DIGIT - . _ ~).
    return quote(value, safe="")


@attrs.frozen
class CloudEventOptions:
    """How envelopes become CloudEvents. Producers and consumers must use equal options.

    ``source_base``: absolute URI the ``source`` attribute starts with.
    ``type_prefix``: prepended to the event type, e.g. ``"io.finfactory."``; empty by default.
    ``schema_base``: absolute URI ``dataschema`` starts with; defaults to
    ``<source_base><sep>schema``.
    """

    source_base: str = "urn:finfactory"
    type_prefix: str = ""
    schema_base: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_base(self.source_base, "source_base")
        if self.schema_base is not None:
            _check_base(self.schema_base, "schema_base")
        if not isinstance(self.type_prefix, str) or not _PRINTABLE_ASCII.match(self.type_prefix):
            raise ConfigurationError(
                "type_prefix must be printable ASCII without spaces", setting="type_prefix"
            )

    @property
    def effective_schema_base(self) -> str:
        if self.schema_base is not None:
            return self.schema_base
        return f"{self.source_base}{_uri_separator(self.source_base)}schema"

    def source_uri(self, primitive: str, tenant_id: str) -> str:
        """The ``source`` attribute for events of ``primitive`` in ``tenant_id``."""
        sep = _uri_separator(self.source_base)
        return f"{self.source_base}{sep}{_segment(primitive)}{sep}{_segment(tenant_id)}"

    def parse_source(self, source: str) -> tuple[str, str]:
        """Split a ``source`` built by :meth:`source_uri` into (primitive, tenant id)."""
        sep = _uri_separator(self.source_base)
        head = self.source_base + sep
        if not source.startswith(head):
            raise ValidationError(f"source must start with {head!r}", field="source")
        parts = source[len(head) :].split(sep)
        if len(parts) != 2:
            raise ValidationError(f"source must be {head}<primitive>{sep}<tenant>", field="source")
        primitive, tenant = (_strict_unquote(part, "source") for part in parts)
        return primitive, tenant

    def dataschema(self, event_type: str, schema_version: int) -> str:
        """The ``dataschema`` URI of one event type and version."""
        base = self.effective_schema_base
        sep = _uri_separator(base)
        return f"{base}{sep}{_segment(event_type)}{sep}{schema_version}"


DEFAULT_OPTIONS: Final = CloudEventOptions()


# -- small helpers -------------------------------------------------------------------------


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    if value.isascii() and value.isprintable():  # the usual case, without the regex
        return value
    if _FORBIDDEN_CHARS.search(value):
        raise ValidationError(
            f"{field} contains a character CloudEvents strings forbid "
            "(control character, unpaired surrogate or noncharacter)",
            field=field,
        )
    return value


def _uint(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT:
        raise ValidationError(f"{field} must be an integer in 0..2**63-1", field=field)
    return value


def _parse_uint(value: object, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return _uint(value, field)
    if not isinstance(value, str) or not _UINT.match(value):
        raise ValidationError(f"{field} must be a string of decimal digits", field=field)
    return _uint(int(value), field)


def _strict_unquote(value: str, field: str) -> str:
    if "%" not in value:
        return value
    if _BAD_ESCAPE.search(value):
        raise ValidationError(f"{field} has a malformed percent escape", field=field)
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{field} percent-decodes to invalid UTF-8", field=field) from None


def _format_time(moment: object) -> str:
    if type(moment) is datetime and moment.tzinfo is UTC:  # what the stores return
        # The events of one command share their time: remember the last one formatted.
        last, text = _LAST_TIME[0]
        if moment == last:
            return text
        text = moment.isoformat()[:-6] + "Z"
        _LAST_TIME[0] = (moment, text)
        return text
    if not isinstance(moment, datetime):
        raise ValidationError("recorded_at must be a datetime", field="recorded_at")
    offset = moment.utcoffset()
    if offset is None:
        raise ValidationError("recorded_at must be timezone-aware", field="recorded_at")
    if offset % timedelta(minutes=1):
        # RFC 3339 offsets have minute precision; keep the instant, drop the odd offset.
        moment, offset = moment.astimezone(UTC), timedelta(0)
    text = moment.isoformat()
    return text[:-6] + "Z" if offset == timedelta(0) else text


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValidationError("time must be timezone-aware", field="time")
        return value
    if not isinstance(value, str):
        raise ValidationError("time must be an RFC 3339 timestamp", field="time")
    match = _RFC3339.match(value)
    if match is None:
        raise ValidationError("time must be an RFC 3339 timestamp", field="time")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    tz: timezone = UTC
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValidationError("time has an invalid UTC offset", field="time")
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        if delta:
            tz = timezone(delta if sign == "+" else -delta)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError as exc:
        raise ValidationError(f"time is not a valid instant: {exc}", field="time") from None


def span_id_for(event_id: str) -> str:
    """The deterministic span id of an event's ``traceparent`` (16 lower-case hex digits)."""
    hasher = _SPAN_HASHER.copy()  # the salt already hashed in
    hasher.update(event_id.encode("utf-8", "surrogatepass"))
    digest = hasher.hexdigest()
    span = digest[:16]
    return span if span != "0" * 16 else digest[16:32]


def traceparent_for(envelope: EventEnvelope) -> str:
    """The W3C ``traceparent`` of ``envelope``: its trace id and a span id from its id."""
    trace_id = envelope.trace_id
    if not isinstance(trace_id, str) or not _TRACE_ID.match(trace_id) or trace_id == "0" * 32:
        raise ValidationError(
            "trace_id must be 32 lower-case hex digits, not all zero", field="trace_id"
        )
    return f"00-{trace_id}-{span_id_for(envelope.id)}-01"


def _trace_id_from(traceparent: object) -> str:
    """The trace id of a W3C ``traceparent`` (Trace Context level 1 parsing rules)."""
    match = _TRACEPARENT.match(traceparent) if isinstance(traceparent, str) else None
    if match is None:
        raise ValidationError("traceparent is not W3C trace-context", field="traceparent")
    version, trace, span, rest = (match.group(n) for n in ("version", "trace", "span", "rest"))
    if version == "ff" or (version == "00" and rest is not None):
        raise ValidationError("traceparent has an invalid version", field="traceparent")
    if trace == "0" * 32 or span == "0" * 16:
        raise ValidationError("traceparent ids must not be all zero", field="traceparent")
    return trace


def partition_key(envelope: EventEnvelope) -> str:
    """The ``partitionkey`` of an event (its aggregate id): the Kafka record key to use."""
    return envelope.aggregate_id


# -- envelope -> CloudEvent ----------------------------------------------------------------


@lru_cache(maxsize=4096)
def _kind_attributes(
    options: CloudEventOptions,
    source: str,
    tenant_id: str,
    event_type: str,
    schema_version: int,
    aggregate_type: str,
) -> tuple[tuple[str, str], ...]:
    """The attributes every event of one kind shares (source, type, dataschema...), checked
    once: a relay sends thousands of events of a few kinds, and these do not change."""
    tenant_id = _text(tenant_id, "tenant_id")
    event_type = _text(event_type, "event_type")
    return (
        ("source", options.source_uri(_text(source, "source"), tenant_id)),
        ("type", options.type_prefix + event_type),
        ("dataschema", options.dataschema(event_type, _uint(schema_version, "schema_version"))),
        ("tenantid", tenant_id),
        ("aggregatetype", _text(aggregate_type, "aggregate_type")),
        ("schemaversion", str(schema_version)),
    )


def _for_kind(cached: Callable[..., _T], envelope: EventEnvelope, options: CloudEventOptions) -> _T:
    """``cached`` (one of the per-kind caches) for the kind of ``envelope``."""
    _uint(envelope.schema_version, "schema_version")  # True == 1 would hit 1's cache entry
    try:
        return cached(
            options,
            envelope.source,
            envelope.tenant_id,
            envelope.event_type,
            envelope.schema_version,
            envelope.aggregate_type,
        )
    except TypeError:  # an unhashable value where a string belongs
        for name in ("source", "tenant_id", "event_type", "aggregate_type"):
            _text(getattr(envelope, name), name)
        raise


def _attributes(envelope: EventEnvelope, options: CloudEventOptions) -> dict[str, str]:
    """Every context attribute of ``envelope``, all as strings, in a stable order."""
    shared = dict(_for_kind(_kind_attributes, envelope, options))
    aggregate_id = _text(envelope.aggregate_id, "aggregate_id")
    attributes = {
        "specversion": SPECVERSION,
        "id": _text(envelope.id, "id"),
        "source": shared["source"],
        "type": shared["type"],
        "subject": f"{shared['aggregatetype']}/{aggregate_id}",
        "time": _format_time(envelope.recorded_at),
        "datacontenttype": DATA_CONTENT_TYPE,
        "dataschema": shared["dataschema"],
        "traceparent": traceparent_for(envelope),
        "partitionkey": aggregate_id,
        "sequence": _sequence(envelope.aggregate_sequence),
        "tenantid": shared["tenantid"],
        "aggregatetype": shared["aggregatetype"],
        "aggregateid": aggregate_id,
        "schemaversion": shared["schemaversion"],
        "correlationid": _text(envelope.correlation_id, "correlation_id"),
    }
    if envelope.causation_id is not None:
        attributes["causationid"] = _text(envelope.causation_id, "causation_id")
    if envelope.position is not None:
        attributes["position"] = str(_uint(envelope.position, "position"))
    return attributes


def _payload(envelope: EventEnvelope) -> dict[str, Any]:
    if not isinstance(envelope.payload, dict):
        raise ValidationError("payload must be a JSON object", field="payload")
    return envelope.payload


def to_cloudevent(
    envelope: EventEnvelope, options: CloudEventOptions = DEFAULT_OPTIONS
) -> dict[str, Any]:
    """The JSON structured-mode object of ``envelope``: attributes plus ``data``.

    ``data`` is the envelope's payload dict itself, not a copy.
    """
    event: dict[str, Any] = dict(_attributes(envelope, options))
    event["data"] = _payload(envelope)
    return event


def _payload_json(envelope: EventEnvelope) -> bytes:
    data = envelope.payload_json()
    if not data.lstrip()[:1] == b"{":
        raise ValidationError("payload must be a JSON object", field="payload")
    return data


def to_structured_json(
    envelope: EventEnvelope, options: CloudEventOptions = DEFAULT_OPTIONS
) -> bytes:
    """``envelope`` in the CloudEvents JSON event format (UTF-8), for structured mode.

    Send it with ``content-type: application/cloudevents+json``.
    """
    # The same attributes as :func:`to_cloudevent`, in the same order (a test holds the two
    # together), written straight as JSON text: those an event kind shares come encoded
    # once from a cache, and the payload's JSON goes in as it is (a stored envelope's text
    # is never decoded). A relay in structured mode spends most of its time here.
    source_type, schema, tenant_kind, version = _for_kind(_kind_json, envelope, options)
    aggregate_id = _json_text(_text(envelope.aggregate_id, "aggregate_id"))
    subject = _json_text(f"{envelope.aggregate_type}/{envelope.aggregate_id}")
    head = (
        f'{{"specversion":"{SPECVERSION}","id":{_json_text(_text(envelope.id, "id"))},'
        f'{source_type},"subject":{subject},'
        f'"time":"{_format_time(envelope.recorded_at)}",{schema},'
        f'"traceparent":"{traceparent_for(envelope)}","partitionkey":{aggregate_id},'
        f'"sequence":"{_sequence(envelope.aggregate_sequence)}",{tenant_kind},'
        f'"aggregateid":{aggregate_id},{version},'
        f'"correlationid":{_json_text(_text(envelope.correlation_id, "correlation_id"))}'
    )
    if envelope.causation_id is not None:
        head += f',"causationid":{_json_text(_text(envelope.causation_id, "causation_id"))}'
    if envelope.position is not None:
        head += f',"position":"{_uint(envelope.position, "position")}"'
    return b"".join((head.encode("utf-8"), b',"data":', _payload_json(envelope), b"}"))


def _sequence(value: object) -> str:
    return str(_uint(value, "aggregate_sequence")).zfill(_SEQUENCE_WIDTH)


# JSON strings that need no escaping: no quote, backslash or control character (the rest
# of Unicode goes into UTF-8 JSON as it is).
_JSON_PLAIN: Final = re.compile(r'[^"\\\x00-\x1f]*\Z')


def _json_text(value: str) -> str:
    if _JSON_PLAIN.match(value):
        return f'"{value}"'
    return encode_json(value).decode("utf-8", "surrogatepass")


@lru_cache(maxsize=4096)
def _kind_json(
    options: CloudEventOptions,
    source: str,
    tenant_id: str,
    event_type: str,
    schema_version: int,
    aggregate_type: str,
) -> tuple[str, str, str, str]:
    """The shared attributes of an event kind as JSON members, in four runs placed where
    :func:`_attributes` puts them."""
    shared = dict(
        _kind_attributes(options, source, tenant_id, event_type, schema_version, aggregate_type)
    )

    def members(*names: str) -> str:
        return ",".join(f'"{name}":{_json_text(shared[name])}' for name in names)

    return (
        members("source", "type"),
        f'"datacontenttype":"{DATA_CONTENT_TYPE}",' + members("dataschema"),
        members("tenantid", "aggregatetype"),
        members("schemaversion"),
    )


@overload
def to_binary(
    envelope: EventEnvelope,
    options: CloudEventOptions = ...,
    *,
    binding: Literal["kafka"],
) -> tuple[dict[str, bytes], bytes]: ...


@overload
def to_binary(
    envelope: EventEnvelope,
    options: CloudEventOptions = ...,
    *,
    binding: Literal["http", "nats"],
) -> tuple[dict[str, str], bytes]: ...


@overload
def to_binary(
    envelope: EventEnvelope,
    options: CloudEventOptions = ...,
    *,
    binding: str,
) -> tuple[dict[str, bytes] | dict[str, str], bytes]: ...


def to_binary(
    envelope: EventEnvelope,
    options: CloudEventOptions = DEFAULT_OPTIONS,
    *,
    binding: str,
) -> tuple[dict[str, bytes] | dict[str, str], bytes]:
    """``envelope`` in binary content mode: (headers, body) for ``binding``.

    Kafka header values are UTF-8 bytes; HTTP and NATS values are percent-encoded strings.
    The body is the payload as UTF-8 JSON.
    """
    _check_binding(binding)
    attributes = _attributes(envelope, options)
    body = _payload_json(envelope)
    if binding == "kafka":
        kafka: dict[str, bytes] = {}
        for name, value in attributes.items():
            header = "content-type" if name == "datacontenttype" else "ce_" + name
            kafka[header] = value.encode("utf-8")
        return kafka, body
    headers: dict[str, str] = {}
    for name, value in attributes.items():
        header = "content-type" if binding == "http" and name == "datacontenttype" else "ce-" + name
        # quote() leaves printable ASCII but '"' and '%' alone: skip the call for those.
        headers[header] = value if _HEADER_PLAIN.match(value) else quote(value, safe=_HEADER_SAFE)
    return headers, body


# -- CloudEvent -> envelope ----------------------------------------------------------------


def _check_binding(binding: str) -> None:
    if binding not in BINDINGS:
        raise ValidationError(
            f"binding must be one of {', '.join(BINDINGS)}, got {binding!r}", field="binding"
        )


def _required(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    if value is None:
        raise ValidationError(f"required attribute {name} is missing", field=name)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"attribute {name} must be a non-empty string", field=name)
    return value


def _optional(attributes: Mapping[str, Any], name: str) -> str | None:
    return None if attributes.get(name) is None else _required(attributes, name)


def _check_content_type(value: object, field: str = "datacontenttype") -> None:
    if value is None:
        return  # the JSON event format: absent datacontenttype means application/json
    if not isinstance(value, str) or not _JSON_MEDIA_TYPE.match(value):
        raise ValidationError(f"{field} must be a JSON media type, got {value!r}", field=field)


def _build(
    attributes: Mapping[str, Any], payload: object, options: CloudEventOptions
) -> EventEnvelope:
    specversion = _required(attributes, "specversion")
    if specversion != SPECVERSION:
        raise ValidationError(
            f"specversion must be {SPECVERSION!r}, got {specversion!r}", field="specversion"
        )
    if not isinstance(payload, dict):
        raise ValidationError("data must be a JSON object", field="data")
    _check_content_type(attributes.get("datacontenttype"))

    ce_type = _required(attributes, "type")
    prefix = options.type_prefix
    if not ce_type.startswith(prefix) or len(ce_type) == len(prefix):
        raise ValidationError(f"type must start with {prefix!r}", field="type")
    event_type = ce_type[len(prefix) :]

    tenant_id = _required(attributes, "tenantid")
    primitive, source_tenant = options.parse_source(_required(attributes, "source"))
    if source_tenant != tenant_id:
        raise ValidationError("source names another tenant than tenantid", field="source")

    aggregate_type = _required(attributes, "aggregatetype")
    aggregate_id = _required(attributes, "aggregateid")
    subject = _optional(attributes, "subject")
    if subject is not None and subject != f"{aggregate_type}/{aggregate_id}":
        raise ValidationError("subject must be <aggregatetype>/<aggregateid>", field="subject")
    key = _optional(attributes, "partitionkey")
    if key is not None and key != aggregate_id:
        raise ValidationError("partitionkey must equal aggregateid", field="partitionkey")

    schema_version = _parse_uint(attributes.get("schemaversion"), "schemaversion")
    schema = _optional(attributes, "dataschema")
    if schema is not None and schema != options.dataschema(event_type, schema_version):
        raise ValidationError(
            "dataschema does not match type and schemaversion", field="dataschema"
        )
    position = attributes.get("position")

    return EventEnvelope(
        id=_required(attributes, "id"),
        event_type=event_type,
        schema_version=schema_version,
        payload=payload,
        recorded_at=_parse_time(attributes.get("time")),
        trace_id=_trace_id_from(attributes.get("traceparent")),
        tenant_id=tenant_id,
        source=primitive,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        aggregate_sequence=_parse_uint(attributes.get("sequence"), "sequence"),
        correlation_id=_required(attributes, "correlationid"),
        causation_id=_optional(attributes, "causationid"),
        position=None if position is None else _parse_uint(position, "position"),
    )


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey("an object has a duplicate member name")
    return result


def _load_json(raw: bytes | str, field: str) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ValidationError(f"{field} is not valid UTF-8 JSON: {exc}", field=field) from None


def from_cloudevent(
    event: Mapping[str, Any], options: CloudEventOptions = DEFAULT_OPTIONS
) -> EventEnvelope:
    """The envelope of a JSON-format CloudEvent object (attributes plus ``data``).

    ``data_base64`` holding UTF-8 JSON is accepted in place of ``data``; ``time`` may be an
    RFC 3339 string or an aware datetime.
    """
    if "data" in event:
        payload = event["data"]
    elif "data_base64" in event:
        encoded = event["data_base64"]
        if not isinstance(encoded, str):
            raise ValidationError("data_base64 must be a string", field="data_base64")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValidationError("data_base64 is not base64", field="data_base64") from None
        payload = _load_json(raw, "data_base64")
    else:
        raise ValidationError("the event has no data", field="data")
    return _build(event, payload, options)


def from_structured_json(
    data: bytes | str, options: CloudEventOptions = DEFAULT_OPTIONS
) -> EventEnvelope:
    """The envelope of a CloudEvent in the JSON event format (structured mode)."""
    event = _load_json(data, "body")
    if not isinstance(event, dict):
        raise ValidationError("a structured CloudEvent must be a JSON object", field="body")
    return from_cloudevent(event, options)


def _header_items(headers: Headers) -> dict[str, HeaderValue]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, HeaderValue] = {}
    for name, value in items:
        key = name.lower()
        if key in result:
            raise ValidationError(f"header {name} appears more than once", field=key)
        result[key] = value
    return result


def _unquote_string(value: str, field: str) -> str:
    """Undo RFC 7230 §3.2.6 quoted-string syntax (backslash escapes) if ``value`` uses it."""
    if not value.startswith('"'):
        return value
    out: list[str] = []
    chars = iter(value[1:])
    for ch in chars:
        if ch == "\\":
            escaped = next(chars, None)
            if escaped is None:
                break
            out.append(escaped)
        elif ch == '"':
            if next(chars, None) is not None:
                break
            return "".join(out)
        else:
            out.append(ch)
    raise ValidationError(f"{field} has a malformed quoted string", field=field)


def _header_text(value: HeaderValue, field: str) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"{field} is not UTF-8", field=field) from None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be bytes or str", field=field)
    return value


def _binary_attributes(headers: Headers, binding: str) -> dict[str, str]:
    _check_binding(binding)
    prefix = "ce_" if binding == "kafka" else "ce-"
    attributes: dict[str, str] = {}
    for key, raw in _header_items(headers).items():
        if key.startswith(prefix):
            name = key[len(prefix) :]
        elif key == "content-type" and binding != "nats":
            name = "datacontenttype"
        else:
            continue  # not a CloudEvents header (e.g. Nats-Msg-Id)
        text = _header_text(raw, name)
        if key == "content-type":
            text = text.strip(" \t")
        elif binding != "kafka":
            text = _strict_unquote(_unquote_string(text.strip(" \t"), name), name)
        attributes[name] = text
    return attributes


def from_binary(
    headers: Headers,
    body: bytes,
    binding: str,
    options: CloudEventOptions = DEFAULT_OPTIONS,
) -> EventEnvelope:
    """The envelope of a binary-mode message: ``ce`` headers plus a JSON body.

    ``headers`` is a mapping or a list of (name, value) pairs (as Kafka clients return
    them); values may be bytes or str, names are matched case-insensitively.
    """
    attributes = _binary_attributes(headers, binding)
    if "specversion" not in attributes:
        raise ValidationError("required attribute specversion is missing", field="specversion")
    _check_content_type(attributes.get("datacontenttype"))
    if not body:
        raise ValidationError("the message has no body", field="data")
    return _build(attributes, _load_json(body, "data"), options)


def from_message(
    headers: Headers,
    body: bytes,
    binding: str,
    options: CloudEventOptions = DEFAULT_OPTIONS,
) -> EventEnvelope:
    """Decode a message in either content mode.

    As the bindings prescribe, a ``content-type`` header starting with
    ``application/cloudevents`` (case-insensitive) means structured mode; anything else is
    binary mode.
    """
    _check_binding(binding)
    items = _header_items(headers)
    content_type = items.get("content-type")
    if content_type is not None:
        text = _header_text(content_type, "content-type").strip(" \t").lower()
        if text.startswith("application/cloudevents"):
            if text.split(";", 1)[0].rstrip(" \t") != STRUCTURED_CONTENT_TYPE:
                raise ValidationError(f"unsupported event format {text!r}", field="content-type")
            return from_structured_json(body, options)
    return from_binary(items, body, binding, options)
