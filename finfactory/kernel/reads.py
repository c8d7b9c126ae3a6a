"""Permission checks for queries: reads are tenant-scoped and a denied read is audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from finfactory.kernel.audit import AuditDraft, Outcome, seal
from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator, utc_now
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import PermissionDenied, ValidationError
from finfactory.kernel.ports import Storage, UnitOfWork


def page_limit(limit: object, maximum: int, field: str = "limit") -> int:
    """A query's page size: a whole number from 1; above ``maximum`` it means ``maximum``.
    Checked before any read, the same way on every store (a store would otherwise fail on a
    string or a float in its own way, or return a page of one for 0)."""
    if type(limit) is not int or limit < 1:
        raise ValidationError(f"{field} must be a whole number from 1 to {maximum}", field=field)
    return min(limit, maximum)


@attrs.define
class ReadGuard:
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    permission: str

    @contextmanager
    def view(self, ctx: RequestContext, uow: UnitOfWork | None) -> Iterator[UnitOfWork]:
        decision = self.policy.decide(ctx, self.permission)
        if not decision.allowed:
            self._audit_denial(ctx, uow, decision.reason)
            raise PermissionDenied(decision.reason, permission=self.permission)
        if uow is not None:
            yield uow
            return
        with self.storage.read() as tx:
            yield tx

    def _audit_denial(self, ctx: RequestContext, uow: UnitOfWork | None, reason: str) -> None:
        draft = AuditDraft(
            id=self.ids.new_id(),
            tenant_id=ctx.tenant_id,
            occurred_at=utc_now(self.clock),
            actor_id=ctx.actor.id,
            actor_kind=ctx.actor.kind.value,
            action=self.permission,
            resource_type="query",
            resource_id=None,
            outcome=Outcome.DENIED,
            reason=reason,
            trace_id=ctx.trace_id,
            summary={},
        )
        if uow is not None:
            uow.kernel.append_audit(draft, seal)
            uow.flush()
            return
        with self.storage.transaction() as tx:
            tx.kernel.append_audit(draft, seal)
