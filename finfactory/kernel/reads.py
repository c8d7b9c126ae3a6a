"""Permission checks for queries: reads are tenant-scoped and a denied read is audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from finfactory.kernel.audit import AuditDraft, Outcome, seal
from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator, utc_now
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import PermissionDenied
from finfactory.kernel.ports import Storage, UnitOfWork


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
