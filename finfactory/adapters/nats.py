"""NATS JetStream adapters: a :class:`Publisher` for the outbox relay and a durable consumer.

Install with ``pip install finfactory[nats]`` (nats-py).

Subjects
--------
An event goes to ``<prefix>.<tenant>.<event type>``, for example
``finfactory.tenant-a.journal.posted``. The dots of the event type stay token separators on
purpose, so ``finfactory.*.journal.>`` or ``finfactory.tenant-a.>`` filter naturally.

Subject tokens cannot hold ``.``, ``*``, ``>`` or whitespace, and tenant ids may contain any
of them, so every token is escaped reversibly: ``%``, ``.``, ``*``, ``>`` and every character
outside printable ASCII (space, controls, non-ASCII) become ``%XX`` per UTF-8 byte, upper-case
hex. Everything else stays as it is, so ordinary ids read unchanged::

    tenant "acme.ph"   -> token "acme%2Eph"     subject finfactory.acme%2Eph.journal.posted
    tenant "a b*>%"    -> token "a%20b%2A%3E%25"

:func:`encode_token` / :func:`decode_token` do one token, :func:`subject_for` /
:func:`parse_subject` a whole subject, and :func:`subject_filter` builds consumer filters.
Event type tokens (between dots) are escaped the same way and must not be empty.

Messages
--------
Each event is a CloudEvent (see :mod:`finfactory.events.cloudevents`): in ``structured`` mode
(the default) ``content-type: application/cloudevents+json`` and the JSON event format as the
body; in ``binary`` mode the NATS binding's ``ce-<attribute>`` headers plus the payload as
the JSON body. Structured is the default because every version of the NATS binding defines
it (binary mode arrived in v1.0.3) and because it is much cheaper to send: nats-py encodes
headers one by one in Python, and the 18 headers of a binary-mode message cost the relay
about a third of its throughput. Either way the ``Nats-Msg-Id`` header is the event id
(percent-encoded like the ``ce-id`` header, which leaves UUIDs unchanged), so JetStream drops
a re-published event inside the stream's duplicate window.

Delivery
--------
:meth:`NatsPublisher.publish` sends a whole batch with JetStream async publish (every
message carries a reply subject; nothing waits between messages) and then waits for all the
acks together, up to ``ack_timeout``. An event is reported ``ok`` only after its ack. The
acks are matched here rather than with nats-py's ``publish_async``, whose ack handler leaves
the future pending forever when JetStream answers with an error (nats-py 2.16), which would
turn a definite refusal into a timeout.

A missing or failed ack is ``ok=False, retryable=True``; an event the server would refuse
for its size (larger than the server's ``max_payload`` or the stream's
``max_msg_size``) is ``retryable=False`` and is not sent. After an event of an aggregate
fails, the later events of that aggregate in the batch are not sent (when the failure is
known before sending) or not reported ``ok`` (when it is known only from the acks); a
re-publish of one that did reach the stream is dropped as a duplicate.

Per-aggregate order in the stream therefore holds whenever failures are known before
sending or hit a suffix of the batch. Two cases can still store a later event of an
aggregate before an earlier one: the server refuses the earlier one only when acking (a
stream limit lowered under a running publisher), or the earlier one is lost with a dropped
connection while the later one goes out over the new one. Consumers that must be strict
can check the ``sequence`` attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, Literal
from urllib.parse import quote, unquote_to_bytes

import attrs
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from finfactory.events.cloudevents import (
    DEFAULT_OPTIONS,
    STRUCTURED_CONTENT_TYPE,
    CloudEventOptions,
    from_message,
    to_binary,
    to_structured_json,
)
from finfactory.events.consuming import (
    EventHandler,
    SubscriberStats,
    aggregate_key,
    call_handler,
    hold_order,
    positive_seconds,
    sleep_unless,
)
from finfactory.events.envelope import EventEnvelope
from finfactory.events.publishing import PublishOutcome
from finfactory.kernel.errors import ConfigurationError, ValidationError

__all__ = [
    "EventHandler",
    "NatsPublisher",
    "NatsSubscriber",
    "SubscriberStats",
    "decode_token",
    "encode_token",
    "parse_subject",
    "subject_filter",
    "subject_for",
]

log = logging.getLogger(__name__)

Mode = Literal["binary", "structured"]

MSG_ID_HEADER: Final = "Nats-Msg-Id"
# JetStream API error code for "message size exceeds maximum allowed".
_JS_ERR_MSG_TOO_LARGE: Final = 10054
# JetStream API error code for "stream name already in use" (a concurrent creation).
_JS_ERR_STREAM_NAME_IN_USE: Final = 10058

_TOKEN_SAFE: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - set("%.*>")
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")

# nats-py frames headers as "NATS/1.0\r\n" + "name: value\r\n"... + "\r\n".
_HEADER_FRAME: Final = len(b"NATS/1.0\r\n\r\n")

_SUBJECT_CACHE: Final = 4096  # (tenant, event type) pairs whose subject is remembered

_DEFAULT_CONNECT: Final[dict[str, Any]] = {
    "max_reconnect_attempts": -1,  # a relay outlives broker restarts
    "reconnect_time_wait": 1,
    "connect_timeout": 2,
}


# -- subjects ------------------------------------------------------------------------------


def encode_token(value: str) -> str:
    """Escape ``value`` into one NATS subject token (see the module docstring)."""
    if not isinstance(value, str) or not value:
        raise ValidationError("a subject token must be a non-empty string", field="subject")
    out: list[str] = []
    for ch in value:
        if ch in _TOKEN_SAFE:
            out.append(ch)
            continue
        try:
            raw = ch.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                "a subject token cannot hold an unpaired surrogate", field="subject"
            ) from None
        out.extend(f"%{byte:02X}" for byte in raw)
    return "".join(out)


def decode_token(token: str) -> str:
    """Undo :func:`encode_token`; malformed escapes and invalid UTF-8 are refused."""
    if not token:
        raise ValidationError("empty subject token", field="subject")
    if _BAD_ESCAPE.search(token):
        raise ValidationError(f"malformed escape in subject token {token!r}", field="subject")
    try:
        return unquote_to_bytes(token).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(
            f"subject token {token!r} decodes to invalid UTF-8", field="subject"
        ) from None


def _event_type_tokens(event_type: str) -> str:
    if not isinstance(event_type, str) or not event_type:
        raise ValidationError("event_type must be a non-empty string", field="event_type")
    parts = event_type.split(".")
    if any(not part for part in parts):
        raise ValidationError(
            f"event type {event_type!r} has an empty dot-separated part", field="event_type"
        )
    return ".".join(encode_token(part) for part in parts)


def _check_prefix(prefix: str) -> str:
    tokens = prefix.split(".") if isinstance(prefix, str) else [""]
    if any(not t or any(ch not in _TOKEN_SAFE for ch in t) for t in tokens):
        raise ConfigurationError(
            f"subject_prefix must be dot-separated tokens of printable ASCII without "
            f"'*', '>' or '%', got {prefix!r}",
            setting="subject_prefix",
        )
    return prefix


def subject_for(prefix: str, tenant_id: str, event_type: str) -> str:
    """``<prefix>.<encoded tenant>.<encoded event type tokens>``."""
    return f"{prefix}.{encode_token(tenant_id)}.{_event_type_tokens(event_type)}"


def parse_subject(prefix: str, subject: str) -> tuple[str, str]:
    """Split a subject built by :func:`subject_for` into (tenant id, event type)."""
    head = prefix + "."
    if not subject.startswith(head):
        raise ValidationError(f"subject does not start with {head!r}", field="subject")
    tokens = subject[len(head) :].split(".")
    if len(tokens) < 2:
        raise ValidationError("subject has no event type", field="subject")
    tenant = decode_token(tokens[0])
    return tenant, ".".join(decode_token(t) for t in tokens[1:])


def subject_filter(
    prefix: str = "finfactory", tenant_id: str | None = None, event_type: str | None = None
) -> str:
    """A consumer filter: one tenant or all (``*``), one event type or all (``>``).

    ``event_type`` may end in ``.>`` or be a prefix like ``"journal.>"``.
    """
    tenant = "*" if tenant_id is None else encode_token(tenant_id)
    if event_type is None:
        return f"{prefix}.{tenant}.>"
    if event_type.endswith(".>"):
        return f"{prefix}.{tenant}.{_event_type_tokens(event_type[:-2])}.>"
    return f"{prefix}.{tenant}.{_event_type_tokens(event_type)}"


def _covers(pattern: str, subject_space: str) -> bool:
    """Whether the stream subject ``pattern`` captures every subject in ``subject_space``.

    ``subject_space`` is ``<literal tokens>.>``.
    """
    wanted = subject_space.split(".")[:-1]
    tokens = pattern.split(".")
    for index, part in enumerate(tokens):
        if part == ">":
            return True
        if index >= len(wanted) or part not in ("*", wanted[index]):
            return False
    return False


def _msg_id(event_id: str) -> str:
    return quote(event_id, safe=_HEADER_SAFE)


def _wire_size(headers: Mapping[str, str], body: bytes) -> int:
    # Header names and the percent-encoded values are ASCII: characters are bytes.
    size = _HEADER_FRAME + len(body)
    for name, value in headers.items():
        size += len(name) + len(value) + 4  # ": " and "\r\n"
    return size


# -- publisher -----------------------------------------------------------------------------


@attrs.frozen
class _Ack:
    ok: bool
    error: str | None = None
    retryable: bool = True
    duplicate: bool = False


class _AckBatch:
    """The acks one :meth:`NatsPublisher.publish` call waits for, with one future for the
    whole batch rather than one per message (a relay handles thousands a second)."""

    def __init__(self, events: Sequence[EventEnvelope]) -> None:
        self.events = events
        self.acks: dict[int, _Ack | None] = {}  # index of a sent message -> its ack
        self.tokens: list[str] = []
        self._missing = 0
        self._done: asyncio.Future[None] | None = None

    def event_id(self, index: int) -> str:
        return self.events[index].id

    def expect(self, index: int, token: str) -> None:
        if index not in self.acks:  # its ack may already be in, on a fast server
            self.acks[index] = None
            self._missing += 1
        self.tokens.append(token)

    def settle(self, index: int, ack: _Ack) -> None:
        if self.acks.get(index) is not None:
            return
        if index in self.acks:
            self._missing -= 1
        self.acks[index] = ack
        if self._missing == 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def wait(self, timeout: float) -> None:
        if self._missing > 0:
            self._done = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._done], timeout=timeout)


class NatsPublisher:
    """Publishes outbox events to a JetStream stream as CloudEvents (see the module docs).

    Build it with :meth:`connect`, which also checks (or creates) the stream. The
    constructor takes an existing connection for products that manage their own.
    """

    def __init__(
        self,
        client: NatsClient,
        *,
        subject_prefix: str = "finfactory",
        stream: str = "FINFACTORY",
        mode: Mode = "structured",
        options: CloudEventOptions = DEFAULT_OPTIONS,
        channel: str = "nats",
        ack_timeout: timedelta | float = 5.0,
        owns_client: bool = False,
    ) -> None:
        if mode not in ("binary", "structured"):
            raise ConfigurationError(
                f"mode must be 'binary' or 'structured', got {mode!r}", setting="mode"
            )
        if not stream or any(ch in stream for ch in ".*> \t\r\n"):
            raise ConfigurationError(f"invalid stream name {stream!r}", setting="stream")
        self.subject_prefix = _check_prefix(subject_prefix)
        self.stream = stream
        self.mode: Mode = mode
        self.options = options
        self.ack_timeout = positive_seconds(ack_timeout, "ack_timeout")
        self._channel = channel
        self._client = client
        self._subjects: dict[tuple[str, str], str] = {}
        self._reply_prefix: str | None = None
        self._inbox_lock = asyncio.Lock()
        self._acks: dict[str, tuple[_AckBatch, int]] = {}  # reply token -> batch, index
        self._ack_head = b'{"stream":' + json.dumps(stream).encode() + b',"seq":'
        self._next_token = 0
        self._owns_client = owns_client
        self._max_msg_size: int | None = None

    @classmethod
    async def connect(
        cls,
        url: str | list[str] = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "finfactory",
        stream: str = "FINFACTORY",
        duplicate_window: timedelta = timedelta(minutes=2),
        create_stream: bool = True,
        mode: Mode = "structured",
        options: CloudEventOptions = DEFAULT_OPTIONS,
        channel: str = "nats",
        ack_timeout: timedelta | float = 5.0,
        storage: Literal["file", "memory"] = "file",
        replicas: int = 1,
        connect_options: Mapping[str, Any] | None = None,
    ) -> NatsPublisher:
        """Connect, check the stream (creating it when missing and allowed), and return.

        ``connect_options`` go to :func:`nats.connect` (by default the client reconnects
        forever, one second apart). Raises :class:`ConfigurationError` when the stream is
        missing and ``create_stream`` is False, or exists without covering
        ``<subject_prefix>.>`` or with a duplicate window shorter than ``duplicate_window``.
        """
        client = await nats.connect(url, **{**_DEFAULT_CONNECT, **(connect_options or {})})
        try:
            publisher = cls(
                client,
                subject_prefix=subject_prefix,
                stream=stream,
                mode=mode,
                options=options,
                channel=channel,
                ack_timeout=ack_timeout,
                owns_client=True,
            )
            await publisher.ensure_stream(
                duplicate_window=duplicate_window,
                create=create_stream,
                storage=storage,
                replicas=replicas,
            )
        except BaseException:
            await client.close()
            raise
        return publisher

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def client(self) -> NatsClient:
        return self._client

    def subject(self, event: EventEnvelope) -> str:
        """The subject ``event`` is published on."""
        key = (event.tenant_id, event.event_type)
        subject = self._subjects.get(key)
        if subject is None:
            subject = subject_for(self.subject_prefix, event.tenant_id, event.event_type)
            if len(self._subjects) >= _SUBJECT_CACHE:
                self._subjects.clear()
            self._subjects[key] = subject
        return subject

    async def ensure_stream(
        self,
        *,
        duplicate_window: timedelta = timedelta(minutes=2),
        create: bool = True,
        storage: Literal["file", "memory"] = "file",
        replicas: int = 1,
    ) -> StreamInfo:
        """Check the stream exists, covers ``<prefix>.>`` and de-duplicates long enough."""
        window = positive_seconds(duplicate_window, "duplicate_window")
        wanted = f"{self.subject_prefix}.>"
        jsm = self._client.jsm()
        try:
            try:
                info = await jsm.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                if not create:
                    raise ConfigurationError(
                        f"JetStream stream {self.stream!r} does not exist; create it with "
                        f"subjects [{wanted!r}] and a duplicate window of at least "
                        f"{window:g}s, or allow the publisher to create it",
                        setting="stream",
                    ) from None
                info = await self._create_stream(wanted, window, storage, replicas)
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError) as exc:
            raise ConfigurationError(
                f"JetStream does not answer on this server ({type(exc).__name__}); "
                "is it enabled (nats-server -js)?",
                setting="stream",
            ) from exc
        except nats.errors.TimeoutError as exc:
            raise ConfigurationError(
                "JetStream did not answer the stream lookup in time", setting="stream"
            ) from exc
        config = info.config
        subjects = list(config.subjects or [])
        if not any(_covers(pattern, wanted) for pattern in subjects):
            raise ConfigurationError(
                f"JetStream stream {self.stream!r} has subjects {subjects!r}, "
                f"which do not cover {wanted!r}",
                setting="stream",
            )
        actual = float(config.duplicate_window or 0)
        if actual + 1e-9 < window:
            raise ConfigurationError(
                f"JetStream stream {self.stream!r} drops duplicates within {actual:g}s, "
                f"shorter than the {window:g}s required; raise its duplicate_window",
                setting="duplicate_window",
            )
        size = config.max_msg_size
        self._max_msg_size = size if size is not None and size > 0 else None
        return info

    async def _create_stream(
        self, subject: str, window: float, storage: str, replicas: int
    ) -> StreamInfo:
        config = StreamConfig(
            name=self.stream,
            subjects=[subject],
            duplicate_window=window,
            storage=StorageType.MEMORY if storage == "memory" else StorageType.FILE,
            num_replicas=replicas,
        )
        jsm = self._client.jsm()
        try:
            info = await jsm.add_stream(config)
        except nats.js.errors.APIError as exc:
            if exc.err_code == _JS_ERR_STREAM_NAME_IN_USE:  # someone created it meanwhile
                return await jsm.stream_info(self.stream)
            raise ConfigurationError(
                f"cannot create JetStream stream {self.stream!r}: {exc.description}",
                setting="stream",
            ) from exc
        log.info("created JetStream stream %s for %s", self.stream, subject)
        return info

    def _message(self, event: EventEnvelope) -> tuple[str, dict[str, str], bytes]:
        subject = self.subject(event)
        if self.mode == "binary":
            headers, body = to_binary(event, self.options, binding="nats")
            headers[MSG_ID_HEADER] = headers["ce-id"]
        else:
            body = to_structured_json(event, self.options)
            headers = {"content-type": STRUCTURED_CONTENT_TYPE, MSG_ID_HEADER: _msg_id(event.id)}
        return subject, headers, body

    def _size_limit(self) -> int:
        limit = self._client.max_payload
        if self._max_msg_size is not None:
            limit = min(limit, self._max_msg_size)
        return limit

    async def _ack_inbox(self) -> str:
        """The reply-subject prefix JetStream acks come back on (one subscription for all)."""
        async with self._inbox_lock:  # the relay publishes several batches at once
            if self._reply_prefix is None:
                inbox = self._client.new_inbox()
                await self._client.subscribe(f"{inbox}.*", cb=self._on_ack)
                self._reply_prefix = inbox + "."
            return self._reply_prefix

    async def _on_ack(self, msg: Msg) -> None:
        slot = self._acks.pop(msg.subject.rpartition(".")[2], None)
        if slot is not None:  # else a late ack of a message already reported as timed out
            batch, index = slot
            batch.settle(index, self._read_ack(msg))

    def _read_ack(self, msg: Msg) -> _Ack:
        data = msg.data
        # The usual answer, {"stream":"<name>","seq":<n>[,"duplicate":true]}, needs no JSON
        # parse; anything else (an error, a domain field) takes the general path below.
        if data.startswith(self._ack_head) and b'"error"' not in data:
            return _Ack(ok=True, duplicate=b'"duplicate":true' in data)
        if msg.headers and msg.headers.get("Status") == "503":
            return _Ack(ok=False, error="no JetStream stream listens on the subject")
        try:
            reply = json.loads(data)
        except ValueError:
            return _Ack(ok=False, error=f"unreadable JetStream ack {data[:80]!r}")
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(error, dict):
            code = error.get("err_code")
            return _Ack(
                ok=False,
                error=f"JetStream refused it: {error.get('description')} (code {code})",
                retryable=code != _JS_ERR_MSG_TOO_LARGE,
            )
        if isinstance(reply, dict) and reply.get("stream") == self.stream and "seq" in reply:
            return _Ack(ok=True, duplicate=bool(reply.get("duplicate")))
        return _Ack(ok=False, error=f"unexpected JetStream ack {reply!r}")

    def _refusal(self, event: EventEnvelope) -> PublishOutcome | tuple[str, dict[str, str], bytes]:
        """The message for ``event``, or the outcome of an event that cannot be sent."""
        try:
            subject, headers, body = self._message(event)
        except ValidationError as exc:
            return PublishOutcome(
                event.id, ok=False, error=f"not publishable: {exc.message}", retryable=False
            )
        size = _wire_size(headers, body)
        limit = self._size_limit()
        if size > limit:
            return PublishOutcome(
                event.id,
                ok=False,
                error=f"message of {size} bytes exceeds the {limit} bytes NATS accepts",
                retryable=False,
            )
        return subject, headers, body

    async def _send(
        self,
        batch: _AckBatch,
        index: int,
        reply_prefix: str,
        message: tuple[str, dict[str, str], bytes],
    ) -> PublishOutcome | None:
        """Send one message whose ack ``batch`` awaits; an outcome if sending failed."""
        subject, headers, body = message
        self._next_token += 1
        token = str(self._next_token)
        self._acks[token] = (batch, index)
        try:
            await self._client.publish(subject, body, reply=reply_prefix + token, headers=headers)
        except (nats.errors.Error, OSError) as exc:
            del self._acks[token]
            if isinstance(exc, nats.errors.MaxPayloadError):
                error, retryable = "message exceeds max_payload", False
            else:
                error, retryable = f"send failed: {type(exc).__name__} {exc}", True
            return PublishOutcome(batch.event_id(index), ok=False, error=error, retryable=retryable)
        batch.expect(index, token)
        return None

    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        """Publish ``events`` in order; one outcome each, ``ok`` only after its JetStream ack.

        The whole batch is written to the connection first (JetStream async publish), then
        the acks are awaited together, for at most ``ack_timeout``.
        """
        if not events:
            return []
        if not self._client.is_connected:
            state = "closed" if self._client.is_closed else "reconnecting"
            return [
                PublishOutcome(e.id, ok=False, error=f"not connected to NATS ({state})")
                for e in events
            ]
        outcomes: list[PublishOutcome | None] = [None] * len(events)
        failed: set[tuple[str, str, str]] = set()
        batch = _AckBatch(events)
        reply_prefix = await self._ack_inbox()
        try:
            for index, event in enumerate(events):
                key = aggregate_key(event)
                if key in failed:
                    continue  # reported below, never sent
                prepared = self._refusal(event)
                outcome = (
                    prepared
                    if isinstance(prepared, PublishOutcome)
                    else await self._send(batch, index, reply_prefix, prepared)
                )
                if outcome is not None:
                    outcomes[index] = outcome
                    failed.add(key)
            await batch.wait(self.ack_timeout)
        finally:
            for token in batch.tokens:  # acks still missing are reported as timed out
                self._acks.pop(token, None)
        for index, ack in batch.acks.items():
            outcomes[index] = (
                PublishOutcome(
                    events[index].id,
                    ok=False,
                    error=f"no JetStream ack within {self.ack_timeout:g}s",
                )
                if ack is None
                else PublishOutcome(
                    events[index].id, ok=ack.ok, error=ack.error, retryable=ack.retryable
                )
            )
        return hold_order(events, outcomes)

    async def close(self) -> None:
        """Wait for nothing further; close the connection if this publisher opened it."""
        if self._owns_client and not self._client.is_closed:
            await self._client.close()

    async def __aenter__(self) -> NatsPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# -- subscriber ----------------------------------------------------------------------------


class NatsSubscriber:
    """A durable JetStream pull consumer that hands decoded events to ``handler``.

    For each fetched message, in order: decode the CloudEvent back to an
    :class:`EventEnvelope`, call ``handler`` (a coroutine function is awaited; a plain
    function runs in a worker thread so its database transaction does not block the event
    loop), and ack only after the handler returned, that is after its own transaction
    committed. A handler exception naks the message with ``nak_delay`` so JetStream
    redelivers it; later messages of the same aggregate in the batch are naked too, so they
    do not overtake it. A message that is not a valid CloudEvent can never succeed: it is
    terminated (no redelivery) and logged.

    Delivery is at least once (a crash between commit and ack redelivers), so handlers
    should be idempotent; the consumer inbox helper makes them so.
    """

    def __init__(
        self,
        client: NatsClient,
        subscription: JetStreamContext.PullSubscription,
        *,
        handler: EventHandler,
        durable: str,
        stream: str,
        options: CloudEventOptions = DEFAULT_OPTIONS,
        batch_size: int = 100,
        fetch_timeout: timedelta | float = 1.0,
        nak_delay: timedelta | float = 1.0,
        sync_handler_in_thread: bool = True,
        owns_client: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1", setting="batch_size")
        self.durable = durable
        self.stream = stream
        self.options = options
        self.batch_size = batch_size
        self.fetch_timeout = positive_seconds(fetch_timeout, "fetch_timeout")
        self.nak_delay = positive_seconds(nak_delay, "nak_delay")
        self.stats = SubscriberStats()
        self._client = client
        self._sub = subscription
        self._handler = handler
        self._in_thread = sync_handler_in_thread
        self._owns_client = owns_client

    @classmethod
    async def connect(
        cls,
        url: str | list[str] = "nats://127.0.0.1:4222",
        *,
        durable: str,
        subjects: str | Sequence[str],
        handler: EventHandler,
        stream: str | None = None,
        options: CloudEventOptions = DEFAULT_OPTIONS,
        batch_size: int = 100,
        fetch_timeout: timedelta | float = 1.0,
        nak_delay: timedelta | float = 1.0,
        ack_wait: timedelta | float = 30.0,
        max_deliver: int = -1,
        max_ack_pending: int = 1000,
        sync_handler_in_thread: bool = True,
        connect_options: Mapping[str, Any] | None = None,
    ) -> NatsSubscriber:
        """Connect, create or update the durable consumer, and bind to it.

        ``subjects`` are filter subjects (see :func:`subject_filter`); several need NATS
        server 2.10 or later. ``stream`` defaults to the stream that captures the first one.
        """
        filters = [subjects] if isinstance(subjects, str) else list(subjects)
        if not filters:
            raise ConfigurationError("subjects must not be empty", setting="subjects")
        if not durable or any(ch in durable for ch in ".*> \t\r\n"):
            raise ConfigurationError(f"invalid durable name {durable!r}", setting="durable")
        client = await nats.connect(url, **{**_DEFAULT_CONNECT, **(connect_options or {})})
        try:
            jsm = client.jsm()
            if stream is None:
                try:
                    stream = await jsm.find_stream_name_by_subject(filters[0])
                except nats.js.errors.NotFoundError:
                    raise ConfigurationError(
                        f"no JetStream stream captures {filters[0]!r}", setting="stream"
                    ) from None
            config = ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=positive_seconds(ack_wait, "ack_wait"),
                max_deliver=max_deliver,
                max_ack_pending=max_ack_pending,
                filter_subject=filters[0] if len(filters) == 1 else None,
                filter_subjects=filters if len(filters) > 1 else None,
            )
            try:
                await jsm.add_consumer(stream, config)
            except nats.js.errors.APIError as exc:
                raise ConfigurationError(
                    f"cannot create or update consumer {durable!r} on stream {stream!r}: "
                    f"{exc.description}",
                    setting="durable",
                ) from exc
            js = client.jetstream()
            subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
        except BaseException:
            await client.close()
            raise
        return cls(
            client,
            subscription,
            handler=handler,
            durable=durable,
            stream=stream,
            options=options,
            batch_size=batch_size,
            fetch_timeout=fetch_timeout,
            nak_delay=nak_delay,
            sync_handler_in_thread=sync_handler_in_thread,
            owns_client=True,
        )

    @property
    def client(self) -> NatsClient:
        return self._client

    async def run_once(self) -> int:
        """Fetch one batch (waiting up to ``fetch_timeout``) and handle it; handled count."""
        try:
            messages = await self._sub.fetch(self.batch_size, timeout=self.fetch_timeout)
        except nats.errors.TimeoutError:
            return 0
        handled = 0
        failed: set[tuple[str, str, str]] = set()
        for msg in messages:
            if await self._handle(msg, failed):
                handled += 1
        await self._client.flush()  # the acks and naks are on the wire before we go on
        return handled

    async def _handle(self, msg: Msg, failed: set[tuple[str, str, str]]) -> bool:
        try:
            event = from_message(msg.headers or {}, msg.data, "nats", self.options)
        except ValidationError as exc:
            self.stats.invalid += 1
            log.error(
                "terminating undecodable message on %s (stream seq %s): %s",
                msg.subject,
                msg.metadata.sequence.stream,
                exc.message,
            )
            await msg.term()
            return False
        key = aggregate_key(event)
        if key in failed:
            # Held back behind the failed one: come back later than it does. JetStream does
            # not order redeliveries with equal delays; handlers that need a strict order
            # check aggregate_sequence (the inbox records what was handled).
            await msg.nak(delay=2 * self.nak_delay)
            return False
        try:
            await call_handler(self._handler, event, in_thread=self._in_thread)
        except Exception:
            self.stats.failed += 1
            failed.add(key)
            log.exception(
                "handler failed for %s %s (delivery %s); redelivering in %gs",
                event.event_type,
                event.id,
                msg.metadata.num_delivered,
                self.nak_delay,
            )
            await msg.nak(delay=self.nak_delay)
            return False
        await msg.ack()
        self.stats.handled += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until ``stop`` is set; connection trouble backs off and retries."""
        backoff = 0.1
        while not stop.is_set():
            try:
                await self.run_once()
                backoff = 0.1
            except (nats.errors.Error, OSError) as exc:
                log.warning("NATS consumer %s: %s; retrying in %.1fs", self.durable, exc, backoff)
                await sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        """Stop fetching; the durable consumer and its position stay on the server."""
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()
        if self._owns_client and not self._client.is_closed:
            await self._client.close()

    async def __aenter__(self) -> NatsSubscriber:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
