"""Kafka adapters: a :class:`Publisher` for the outbox relay and a consumer-group helper.

Install with ``pip install finfactory[kafka]`` (confluent-kafka).

Records
-------
* Topic: ``"finfactory.events"`` by default, or a template with any of the placeholders
  ``{event_type}``, ``{source}``, ``{aggregate_type}``, ``{tenant_id}``,
  ``{schema_version}`` (for example ``"finfactory.{event_type}"``). A name the template
  produces that Kafka would not accept (``[A-Za-z0-9._-]``, at most 249 characters) makes
  that event fail for good (``retryable=False``).
* Key: the aggregate id (:func:`~finfactory.events.cloudevents.partition_key`, UTF-8), with
  the Java client's murmur2 partitioner, so every event of an aggregate lands in one
  partition whichever client produced it, and Kafka keeps them in order there.
* Value and headers: a CloudEvent per the Kafka protocol binding. ``binary`` mode (default):
  ``ce_<attribute>`` headers (UTF-8), ``content-type: application/json`` and the payload as
  the value. ``structured`` mode: ``content-type: application/cloudevents+json`` and the
  JSON event format as the value.

Delivery
--------
The producer is idempotent (``enable.idempotence=true``) and waits for all in-sync replicas
(``acks=all``): librdkafka retries internally without duplicating or reordering.
:meth:`KafkaPublisher.publish` produces the whole batch, then flushes in a worker thread
(never blocking the event loop for more than a moment) until every delivery report is in,
and only then returns. A report can take up to ``delivery_timeout``; an event without a
successful report is ``ok=False`` (``retryable=False`` only for a record Kafka refuses for
its size or shape), and later events of its aggregate in the batch are not sent (failure
known at produce time) or not reported ``ok``.

Consuming
---------
:class:`KafkaSubscriber` reads with a consumer group and ``enable.auto.commit=false``. It
commits offsets synchronously, and only for messages whose handler returned (after the
handler's own transaction committed). When a handler raises, that offset is not committed:
the consumer seeks back to it, pauses the partition for ``retry_delay`` and redelivers it;
later messages of the partition wait behind it, so order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import string
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any, Final, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from finfactory.events.cloudevents import (
    DEFAULT_OPTIONS,
    STRUCTURED_CONTENT_TYPE,
    CloudEventOptions,
    from_message,
    partition_key,
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
    "DEFAULT_TOPIC",
    "EventHandler",
    "KafkaPublisher",
    "KafkaSubscriber",
    "SubscriberStats",
    "create_topics",
]

log = logging.getLogger(__name__)

Mode = Literal["binary", "structured"]
HeaderValue = str | bytes | None

DEFAULT_TOPIC: Final = "finfactory.events"
TOPIC_FIELDS: Final = frozenset(
    {"event_type", "source", "aggregate_type", "tenant_id", "schema_version"}
)
_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$", re.ASCII)

# Errors that no retry can cure: the record itself is refused.
_FINAL_ERRORS: Final = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.TOPIC_EXCEPTION,
    }
)

_PRODUCER_DEFAULTS: Final[dict[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",  # the Java client's: same key, same partition
    "linger.ms": 5,
    "compression.type": "none",
}
_CONSUMER_DEFAULTS: Final[dict[str, Any]] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}
_MISSING: Final = object()


def _error_text(error: KafkaError) -> str:
    return f"Kafka {error.name()}: {error.str()}"


def _topic_template(topic: str) -> tuple[str, bool]:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(topic) if name is not None}
    except ValueError as exc:
        raise ConfigurationError(f"bad topic template {topic!r}: {exc}", setting="topic") from None
    unknown = fields - TOPIC_FIELDS
    if unknown:
        raise ConfigurationError(
            f"topic template {topic!r} uses unknown fields {sorted(unknown)}; "
            f"known: {sorted(TOPIC_FIELDS)}",
            setting="topic",
        )
    if not fields and not _LEGAL_TOPIC.match(topic):
        raise ConfigurationError(f"{topic!r} is not a legal Kafka topic name", setting="topic")
    return topic, bool(fields)


# -- publisher -----------------------------------------------------------------------------


class KafkaPublisher:
    """Publishes outbox events to Kafka as CloudEvents (see the module docs).

    ``config`` adds or overrides librdkafka producer settings (``bootstrap.servers`` comes
    from ``bootstrap_servers``); turning off idempotence or ``acks=all`` is refused.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = DEFAULT_TOPIC,
        mode: Mode = "binary",
        options: CloudEventOptions = DEFAULT_OPTIONS,
        channel: str = "kafka",
        delivery_timeout: timedelta | float = 30.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("binary", "structured"):
            raise ConfigurationError(
                f"mode must be 'binary' or 'structured', got {mode!r}", setting="mode"
            )
        self.topic, self._templated = _topic_template(topic)
        self.mode: Mode = mode
        self.options = options
        self._channel = channel
        extra = dict(config or {})
        # librdkafka calls it message.timeout.ms too; one given in config wins.
        given = extra.pop("delivery.timeout.ms", extra.pop("message.timeout.ms", None))
        if given is not None:
            delivery_timeout = float(given) / 1000
        self.delivery_timeout = positive_seconds(delivery_timeout, "delivery_timeout")
        settings: dict[str, Any] = {
            **_PRODUCER_DEFAULTS,
            **extra,
            "delivery.timeout.ms": int(self.delivery_timeout * 1000),
            "bootstrap.servers": bootstrap_servers,
            "error_cb": self._on_error,
            "logger": extra.get("logger", log),  # librdkafka's own log lines, not stderr
        }
        if str(settings["enable.idempotence"]).lower() not in ("true", "1"):
            raise ConfigurationError(
                "the publisher needs enable.idempotence=true", setting="enable.idempotence"
            )
        if str(settings["acks"]).lower() not in ("all", "-1"):
            raise ConfigurationError("the publisher needs acks=all", setting="acks")
        self._settings = settings
        self._producer = Producer(settings)
        self._fatal: KafkaError | None = None
        self._lock = asyncio.Lock()

    @property
    def channel(self) -> str:
        return self._channel

    def _on_error(self, error: KafkaError) -> None:
        # Called from librdkafka's poll/flush with client-wide errors (brokers down, ...).
        if error.fatal():
            self._fatal = error
            log.error("Kafka producer fatal error: %s", _error_text(error))
        else:
            log.warning("Kafka producer: %s", _error_text(error))

    def topic_for(self, event: EventEnvelope) -> str:
        """The topic ``event`` goes to; ValidationError when the template makes no legal name."""
        if not self._templated:
            return self.topic
        name = self.topic.format(
            event_type=event.event_type,
            source=event.source,
            aggregate_type=event.aggregate_type,
            tenant_id=event.tenant_id,
            schema_version=event.schema_version,
        )
        if not _LEGAL_TOPIC.match(name) or name in (".", ".."):
            raise ValidationError(f"{name!r} is not a legal Kafka topic name", field="topic")
        return name

    def _record(self, event: EventEnvelope) -> tuple[str, list[tuple[str, HeaderValue]], bytes]:
        topic = self.topic_for(event)
        headers: list[tuple[str, HeaderValue]]
        if self.mode == "binary":
            ce_headers, value = to_binary(event, self.options, binding="kafka")
            headers = list(ce_headers.items())
        else:
            value = to_structured_json(event, self.options)
            headers = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
        return topic, headers, value

    async def publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        """Produce ``events`` in order; return once every delivery report is in."""
        if not events:
            return []
        async with self._lock:  # one batch at a time: flush() waits for the whole queue
            if self._fatal is not None:
                self._renew_producer()
            return await self._publish(events)

    def _renew_producer(self) -> None:
        # An idempotent producer that hit a fatal error (e.g. a sequence gap) is unusable.
        log.warning("replacing the Kafka producer after %s", self._fatal)
        with contextlib.suppress(KafkaException, RuntimeError):
            self._producer.purge()
        self._producer = Producer(self._settings)
        self._fatal = None

    async def _publish(self, events: Sequence[EventEnvelope]) -> list[PublishOutcome]:
        outcomes: list[PublishOutcome | None] = [None] * len(events)
        reports: dict[int, KafkaError | None] = {}
        failed: set[tuple[str, str, str]] = set()
        sent: list[int] = []
        for index, event in enumerate(events):
            key = aggregate_key(event)
            if key in failed:
                continue
            outcome = await self._produce(index, event, reports)
            if outcome is None:
                sent.append(index)
            else:
                outcomes[index] = outcome
                failed.add(key)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery_timeout + 5.0
        while len(reports) < len(sent) and loop.time() < deadline:
            # flush() serves delivery callbacks; in a thread so the event loop runs on.
            await asyncio.to_thread(self._producer.flush, 0.5)
        for index in sent:
            event = events[index]
            report = reports.get(index, _MISSING)
            if report is None:
                outcomes[index] = PublishOutcome(event.id, ok=True)
            elif isinstance(report, KafkaError):
                outcomes[index] = self._failure(event, report)
            else:
                outcomes[index] = PublishOutcome(
                    event.id, ok=False, error="no delivery report in time"
                )
        return hold_order(events, outcomes)

    async def _produce(
        self, index: int, event: EventEnvelope, reports: dict[int, KafkaError | None]
    ) -> PublishOutcome | None:
        try:
            topic, headers, value = self._record(event)
        except ValidationError as exc:
            return PublishOutcome(
                event.id, ok=False, error=f"not publishable: {exc.message}", retryable=False
            )
        on_delivery = partial(_record_report, reports, index)
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=partition_key(event).encode("utf-8"),
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return None
            except BufferError:  # the local queue is full: let reports drain, then retry
                await asyncio.to_thread(self._producer.poll, 0.1)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError):
                    return self._failure(event, error)
                return PublishOutcome(event.id, ok=False, error=f"produce failed: {exc}")

    def _failure(self, event: EventEnvelope, error: KafkaError) -> PublishOutcome:
        if error.fatal():
            self._fatal = error
        return PublishOutcome(
            event.id,
            ok=False,
            error=_error_text(error),
            retryable=error.code() not in _FINAL_ERRORS,
        )

    async def close(self, timeout: float = 10.0) -> None:
        """Deliver what is still queued (up to ``timeout``) and release the producer."""
        async with self._lock:
            await asyncio.to_thread(self._producer.flush, timeout)

    async def __aenter__(self) -> KafkaPublisher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _record_report(
    reports: dict[int, KafkaError | None],
    index: int,
    error: KafkaError | None,
    message: Message,
) -> None:
    reports[index] = error


async def create_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    timeout: float = 10.0,
) -> None:
    """Create ``topics`` with ``partitions`` each; topics that exist already are left as is."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    futures = admin.create_topics(
        [
            NewTopic(t, num_partitions=partitions, replication_factor=replication_factor)
            for t in topics
        ],
        request_timeout=timeout,
    )

    def wait() -> None:
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    continue
                raise ConfigurationError(
                    f"cannot create topic {name!r}: {exc}", setting="topic"
                ) from exc

    await asyncio.to_thread(wait)


# -- subscriber ----------------------------------------------------------------------------


class KafkaSubscriber:
    """A consumer-group reader that hands decoded events to ``handler`` (see the module docs).

    A coroutine-function handler is awaited; a plain function runs in a worker thread so its
    database transaction does not block the event loop. Offsets are committed after each
    batch, for the messages whose handler returned; a crash before that commit redelivers
    them, so handlers should be idempotent (the consumer inbox makes them so). A message that
    is not a valid CloudEvent can never succeed: it is logged and skipped.
    """

    def __init__(
        self,
        consumer: Consumer,
        *,
        handler: EventHandler,
        group_id: str,
        options: CloudEventOptions = DEFAULT_OPTIONS,
        batch_size: int = 100,
        poll_timeout: timedelta | float = 1.0,
        retry_delay: timedelta | float = 1.0,
        sync_handler_in_thread: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1", setting="batch_size")
        self.group_id = group_id
        self.options = options
        self.batch_size = batch_size
        self.poll_timeout = positive_seconds(poll_timeout, "poll_timeout")
        self.retry_delay = positive_seconds(retry_delay, "retry_delay")
        self.stats = SubscriberStats()
        self._consumer = consumer
        self._handler = handler
        self._in_thread = sync_handler_in_thread
        self._paused: dict[tuple[str, int], float] = {}

    @classmethod
    async def connect(
        cls,
        bootstrap_servers: str,
        *,
        group_id: str,
        topics: str | Sequence[str],
        handler: EventHandler,
        assign: bool = False,
        options: CloudEventOptions = DEFAULT_OPTIONS,
        batch_size: int = 100,
        poll_timeout: timedelta | float = 1.0,
        retry_delay: timedelta | float = 1.0,
        sync_handler_in_thread: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> KafkaSubscriber:
        """Create the consumer and subscribe it to ``topics`` as a member of ``group_id``.

        With ``assign=True`` it takes every partition of the topics itself instead of
        joining the group's rebalancing (one consumer per group; starts at once), still
        committing its offsets under ``group_id``. ``config`` adds librdkafka consumer
        settings, e.g. a short ``session.timeout.ms``; ``enable.auto.commit`` stays off.
        """
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names:
            raise ConfigurationError("topics must not be empty", setting="topics")
        settings: dict[str, Any] = {
            **_CONSUMER_DEFAULTS,
            "logger": log,
            **dict(config or {}),
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
        }
        for name in ("enable.auto.commit", "enable.auto.offset.store"):
            if str(settings[name]).lower() not in ("false", "0"):
                raise ConfigurationError(f"the subscriber needs {name}=false", setting=name)
        consumer = Consumer(settings)
        subscriber = cls(
            consumer,
            handler=handler,
            group_id=group_id,
            options=options,
            batch_size=batch_size,
            poll_timeout=poll_timeout,
            retry_delay=retry_delay,
            sync_handler_in_thread=sync_handler_in_thread,
        )
        try:
            if assign:
                partitions = await asyncio.to_thread(_all_partitions, consumer, names)
                consumer.assign(partitions)
            else:
                consumer.subscribe(names, on_revoke=subscriber._on_revoke)
        except BaseException:
            await asyncio.to_thread(consumer.close)
            raise
        return subscriber

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic is not None:
                self._paused.pop((tp.topic, tp.partition), None)

    def _resume_due(self) -> None:
        now = time.monotonic()
        due = [tp for tp, at in self._paused.items() if at <= now]
        for topic, partition in due:
            del self._paused[(topic, partition)]
            try:
                self._consumer.resume([TopicPartition(topic, partition)])
            except KafkaException as exc:  # revoked meanwhile
                log.info("not resuming %s[%s]: %s", topic, partition, exc)

    def _rewind(self, topic: str, partition: int, offset: int) -> None:
        """Go back to ``offset`` and hold the partition for ``retry_delay``."""
        try:
            self._consumer.seek(TopicPartition(topic, partition, offset))
            self._consumer.pause([TopicPartition(topic, partition)])
        except KafkaException as exc:  # revoked: the next owner starts at the commit
            log.warning("cannot rewind %s[%s] to %s: %s", topic, partition, offset, exc)
            return
        self._paused[(topic, partition)] = time.monotonic() + self.retry_delay

    async def run_once(self) -> int:
        """Poll one batch (waiting up to ``poll_timeout``), handle it, commit; handled count."""
        self._resume_due()
        messages = await asyncio.to_thread(
            self._consumer.consume, self.batch_size, self.poll_timeout
        )
        handled = 0
        commits: dict[tuple[str, int], int] = {}
        held: set[tuple[str, int]] = set()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consumer %s: %s", self.group_id, _error_text(error))
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            place = (topic, partition)
            if place in held:
                continue  # behind a failed message: read again after the rewind
            result = await self._handle(message, topic, partition, offset)
            if result == "failed":
                held.add(place)
                continue
            commits[place] = offset + 1  # handled, or undecodable and skipped for good
            if result == "handled":
                handled += 1
        if commits:
            await self._commit(commits)
        return handled

    async def _handle(
        self, message: Message, topic: str, partition: int, offset: int
    ) -> Literal["handled", "skipped", "failed"]:
        raw = message.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = [(k, v) for k, v in pairs if v is not None]
        try:
            event = from_message(headers, message.value() or b"", "kafka", self.options)
        except ValidationError as exc:
            self.stats.invalid += 1
            log.error(
                "skipping undecodable message %s[%s]@%s: %s", topic, partition, offset, exc.message
            )
            return "skipped"
        try:
            await call_handler(self._handler, event, in_thread=self._in_thread)
        except Exception:
            self.stats.failed += 1
            log.exception(
                "handler failed for %s %s at %s[%s]@%s; redelivering in %gs",
                event.event_type,
                event.id,
                topic,
                partition,
                offset,
                self.retry_delay,
            )
            self._rewind(topic, partition, offset)
            return "failed"
        self.stats.handled += 1
        return "handled"

    async def _commit(self, commits: Mapping[tuple[str, int], int]) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in commits.items()]

        def commit() -> list[TopicPartition]:
            return self._consumer.commit(offsets=offsets, asynchronous=False)

        try:
            result = await asyncio.to_thread(commit)
        except KafkaException as exc:
            log.warning("offset commit failed (%s); those messages will come again", exc)
            return
        for tp in result or []:
            if tp.error is not None:
                log.warning("offset commit failed for %s[%s]: %s", tp.topic, tp.partition, tp.error)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and handle until ``stop`` is set; broker trouble backs off and retries."""
        backoff = 0.1
        while not stop.is_set():
            try:
                await self.run_once()
                backoff = 0.1
            except KafkaException as exc:
                log.warning("Kafka consumer %s: %s; retrying in %.1fs", self.group_id, exc, backoff)
                await sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        """Leave the group (committed offsets stay) and release the consumer."""
        await asyncio.to_thread(self._consumer.close)

    async def __aenter__(self) -> KafkaSubscriber:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _all_partitions(consumer: Consumer, topics: Sequence[str]) -> list[TopicPartition]:
    metadata = consumer.list_topics(timeout=10)
    partitions: list[TopicPartition] = []
    for name in topics:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            raise ConfigurationError(f"topic {name!r} does not exist", setting="topics")
        partitions.extend(TopicPartition(name, p) for p in sorted(topic.partitions))
    return partitions
