"""The command pipeline every primitive uses.

authorize -> (idempotency claim | replay) -> handler -> flush state -> outbox + audit -> commit.
State, idempotency outcome, outbox events and the audit record share one transaction. The
pipeline commits only transactions it opened itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import attrs
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from finfactory.events.envelope import EventEnvelope, PendingEvent
from finfactory.events.registry import EventPayload, event_type_of
from finfactory.kernel.audit import AuditDraft, Outcome, seal
from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.canonical import canonical_json, sha256_hex
from finfactory.kernel.clock import Clock, IdGenerator, utc_now
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import (
    ConcurrencyError,
    DomainError,
    IdempotencyConflict,
    IntegrityViolation,
    PermissionDenied,
    StorageError,
    ValidationError,
    error_from_dict,
)
from finfactory.kernel.ports import Storage, UnitOfWork

R = TypeVar("R", bound=BaseModel)
_MAX_KEY = 200


@attrs.define
class CommandScope:
    """What a handler gets: the transaction, the clock reading, ids, and an event sink."""

    uow: UnitOfWork
    ctx: RequestContext
    now: Any
    ids: IdGenerator
    resource_id: str | None = None
    summary: dict[str, Any] = attrs.field(factory=dict)
    events: list[PendingEvent] = attrs.field(factory=list)
    # Given by the runner in a transaction of its own: sends events handed over early.
    send_events: Callable[[list[PendingEvent]], None] | None = None
    events_sent: bool = False

    def emit(
        self,
        payload_type: type[EventPayload],
        payload: dict[str, Any],
        aggregate_id: str,
        sequence: int,
    ) -> None:
        """Record an event; ``payload`` is JSON-ready data checked against ``payload_type``."""
        if self.events_sent:
            raise RuntimeError("a handler emitted an event after events_complete()")
        self.events.append(PendingEvent(payload_type, payload, aggregate_id, sequence))

    def events_complete(self) -> None:
        """Tell the runner this handler emits nothing more and takes no more row locks.

        In a transaction the runner opened for this command alone, the events then go to
        the outbox at once (the outbox lock is the last lock a transaction may take), and
        the server writes them while the handler builds its result. Elsewhere they wait for
        the end of the transaction, as usual.
        """
        if self.send_events is not None and self.events:
            events, self.events = self.events, []
            self.events_sent = True
            self.send_events(events)


@attrs.frozen
class CommandSpec(Generic[R]):
    action: str
    permission: str
    resource_type: str
    result_model: type[R]
    # The handler sends rows as it goes (store flushes); it then runs inside a savepoint so
    # that a rejection half-way leaves nothing of it behind. Events are still written when
    # the command ends: the outbox lock must be the last lock a transaction takes.
    streaming: bool = False


def request_fingerprint(action: str, request: BaseModel) -> str:
    """Hash of the action and the request's JSON (field order is fixed by the model).

    Fields left at their defaults are left out: a release that adds an optional field does
    not turn a retry sent across the upgrade into an IdempotencyConflict, and a request that
    spells a default out means the same as one that omits it."""
    return sha256_hex(action + "\n" + request.model_dump_json(exclude_defaults=True))


def _check_key(key: str | None) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY or not key.isprintable():
        raise ValidationError(
            f"idempotency key must be 1-{_MAX_KEY} printable characters", field="idempotency_key"
        )


@attrs.define
class CommandRunner:
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    source: str
    attempts: int = 3

    @contextmanager
    def _transaction(self, uow: UnitOfWork | None) -> Iterator[UnitOfWork]:
        # Writes are sent when the block ends: by the savepoint in a caller's transaction,
        # right before the commit in ours (one round trip for the lot).
        if uow is not None:
            # In the caller's transaction, a command that fails unexpectedly is undone alone
            # (its idempotency claim included), leaving the caller's own writes as they were.
            with uow.savepoint():
                yield uow
        else:
            with self.storage.transaction() as own:
                yield own

    def _audit(
        self,
        uow: UnitOfWork,
        ctx: RequestContext,
        spec: CommandSpec[Any],
        now: Any,
        outcome: Outcome,
        reason: str,
        resource_id: str | None,
        summary: dict[str, Any],
    ) -> None:
        draft = AuditDraft(
            id=self.ids.new_id(),
            tenant_id=ctx.tenant_id,
            occurred_at=now,
            actor_id=ctx.actor.id,
            actor_kind=ctx.actor.kind.value,
            action=spec.action,
            resource_type=spec.resource_type,
            resource_id=resource_id,
            outcome=outcome,
            reason=reason,
            trace_id=ctx.trace_id,
            summary=summary,
        )
        uow.kernel.append_audit(draft, seal)

    def _envelopes(self, scope: CommandScope, events: list[PendingEvent]) -> list[EventEnvelope]:
        ctx = scope.ctx
        out = []
        for pending in events:
            etype = event_type_of(pending.payload_type)
            # Validation only: the payload must match its declared schema exactly.
            etype.payload_model.__pydantic_validator__.validate_python(pending.payload)
            out.append(
                EventEnvelope(
                    id=self.ids.new_id(),
                    event_type=etype.name,
                    schema_version=etype.version,
                    payload=pending.payload,
                    recorded_at=scope.now,
                    trace_id=ctx.trace_id,
                    tenant_id=ctx.tenant_id,
                    source=self.source,
                    aggregate_type=etype.aggregate_type,
                    aggregate_id=pending.aggregate_id,
                    aggregate_sequence=pending.aggregate_sequence,
                    correlation_id=ctx.effective_correlation_id,
                    causation_id=ctx.causation_id,
                )
            )
        return out

    def run(
        self,
        ctx: RequestContext,
        spec: CommandSpec[R],
        request: BaseModel,
        handler: Callable[[CommandScope], R],
        *,
        idempotency_key: str | None = None,
        resource_id: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> R:
        _check_key(idempotency_key)
        decision = self.policy.decide(ctx, spec.permission)
        if not decision.allowed:
            with self._transaction(uow) as tx:
                self._audit(
                    tx,
                    ctx,
                    spec,
                    utc_now(self.clock),
                    Outcome.DENIED,
                    decision.reason,
                    resource_id,
                    {},
                )
            raise PermissionDenied(decision.reason, permission=spec.permission)

        # A transaction we own that loses a race (a unique key taken by a concurrent commit,
        # a deadlock victim) is run again from the start: the domain checks then see the
        # winner's rows and answer with the proper, audited rejection. A caller-owned
        # transaction is the caller's to retry.
        attempts = 1 if uow is not None else self.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(
                    ctx,
                    spec,
                    request,
                    handler,
                    idempotency_key,
                    resource_id,
                    uow,
                    decision.reason,
                )
            except (IntegrityViolation, ConcurrencyError):
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        ctx: RequestContext,
        spec: CommandSpec[R],
        request: BaseModel,
        handler: Callable[[CommandScope], R],
        idempotency_key: str | None,
        resource_id: str | None,
        uow: UnitOfWork | None,
        reason: str,
    ) -> R:
        failure: Exception | None = None
        with self._transaction(uow) as tx:
            now = utc_now(self.clock)
            if idempotency_key is not None:
                fingerprint = request_fingerprint(spec.action, request)
                stored = tx.kernel.claim_idempotency(
                    ctx.tenant_id, idempotency_key, spec.action, fingerprint, now
                )
                if stored is not None:
                    replayed = self._replay(tx, ctx, spec, now, stored, fingerprint, resource_id)
                    if isinstance(replayed, Exception):
                        failure = replayed
                    else:
                        return replayed
            if failure is None:
                scope = CommandScope(tx, ctx, now, self.ids, resource_id)
                if uow is None:
                    scope.send_events = lambda events: tx.kernel.append_events(
                        self._envelopes(scope, events), last=True
                    )
                try:
                    if spec.streaming:
                        # Not settled: the server finishes the handler's last writes while
                        # the result and events are built. A write it then refuses fails
                        # the whole command anyway, at the savepoint or transaction that
                        # _transaction opened around it.
                        with tx.savepoint(settle=False):
                            result = handler(scope)
                    else:
                        result = handler(scope)
                except DomainError as err:
                    if scope.events_sent:
                        # Its events are in the outbox already: a rejection now would commit
                        # them with it. A handler bug; undo the whole transaction instead.
                        raise RuntimeError(
                            f"{spec.action} rejected the command after events_complete()"
                        ) from err
                    failure = err
                    if idempotency_key is not None:
                        tx.kernel.complete_idempotency(
                            ctx.tenant_id, idempotency_key, False, canonical_json(err.to_dict())
                        )
                    self._audit(
                        tx,
                        ctx,
                        spec,
                        now,
                        Outcome.REJECTED,
                        f"{err.code}: {err.message}",
                        scope.resource_id,
                        scope.summary,
                    )
                else:
                    if idempotency_key is not None:
                        tx.kernel.complete_idempotency(
                            ctx.tenant_id, idempotency_key, True, result.model_dump_json()
                        )
                    # Events before the audit record: on PostgreSQL the outbox lock is then
                    # always taken before the tenant's audit head (one lock order, no deadlock).
                    if scope.events:
                        tx.kernel.append_events(self._envelopes(scope, scope.events))
                    self._audit(
                        tx,
                        ctx,
                        spec,
                        now,
                        Outcome.SUCCEEDED,
                        reason,
                        scope.resource_id,
                        scope.summary,
                    )
                    return result
        # Rejections, replays of rejections and conflicts are committed (audit record and
        # idempotency outcome) before they are raised.
        assert failure is not None
        raise failure

    def _replay(
        self,
        tx: UnitOfWork,
        ctx: RequestContext,
        spec: CommandSpec[R],
        now: Any,
        stored: Any,
        fingerprint: str,
        resource_id: str | None,
    ) -> R | Exception:
        if stored.command != spec.action or stored.request_hash != fingerprint:
            self._audit(
                tx, ctx, spec, now, Outcome.CONFLICT, "idempotency key reused", resource_id, {}
            )
            return IdempotencyConflict(
                "idempotency key was used with a different request", command=stored.command
            )
        self._audit(tx, ctx, spec, now, Outcome.REPLAYED, "idempotent replay", resource_id, {})
        if stored.succeeded:
            try:
                return spec.result_model.model_validate(stored.response)
            except (PydanticValidationError, ValidationError) as err:
                # Stored by a release whose result model differs: not the caller's input.
                return StorageError(
                    f"the stored result of this idempotency key cannot be read: {err}",
                    command=stored.command,
                )
        return error_from_dict(stored.response)
