"""Reading and verifying a tenant's audit trail, behind the ``audit.read`` permission."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from finfactory.kernel.audit import (
    GENESIS_HASH,
    AuditAnchor,
    AuditRecord,
    ChainVerification,
    verify_chain,
)
from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.paging import page_limit, sequence_cursor
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard


@attrs.define
class AuditTrail:
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    _reads: ReadGuard = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._reads = ReadGuard(self.storage, self.policy, self.clock, self.ids, "audit.read")

    def records(
        self,
        ctx: RequestContext,
        *,
        after_sequence: int = 0,
        limit: int = 100,
        uow: UnitOfWork | None = None,
    ) -> list[AuditRecord]:
        """The caller's tenant's records with ``sequence > after_sequence``, oldest first."""
        sequence_cursor(after_sequence, "after_sequence")
        limit = page_limit(limit, 10_000)
        with self._reads.view(ctx, uow) as tx:
            page = tx.kernel.audit_records(
                ctx.tenant_id, after_sequence=after_sequence, limit=limit
            )
            return list(page)

    def verify(
        self,
        ctx: RequestContext,
        *,
        anchors: Iterable[AuditAnchor] = (),
        uow: UnitOfWork | None = None,
    ) -> ChainVerification:
        """Walk the caller's tenant's whole chain and report the first break, if any. With
        ``anchors`` taken earlier by :meth:`anchor`, a chain rewritten or cut short since
        then fails too."""
        anchors = list(anchors)
        for index, anchor in enumerate(anchors):
            if not isinstance(anchor, AuditAnchor):
                raise ValidationError("expected an AuditAnchor", field=f"anchors.{index}")
            if anchor.tenant_id != ctx.tenant_id:
                raise ValidationError(
                    "the anchor belongs to another tenant", field=f"anchors.{index}.tenant_id"
                )
        with self._reads.view(ctx, uow) as tx:
            return verify_chain(
                tx.kernel.audit_records(ctx.tenant_id),
                tx.kernel.audit_head(ctx.tenant_id),
                anchors,
            )

    def anchor(self, ctx: RequestContext, *, uow: UnitOfWork | None = None) -> AuditAnchor:
        """The caller's tenant's head now, to keep outside the database (see AuditAnchor)."""
        with self._reads.view(ctx, uow) as tx:
            head = tx.kernel.audit_head(ctx.tenant_id)
        sequence, last_hash = head if head is not None else (0, GENESIS_HASH)
        return AuditAnchor(ctx.tenant_id, sequence, last_hash)
