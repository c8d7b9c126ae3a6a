"""Typed per-tenant settings: defaults in code, overrides stored as numbered versions.

Each primitive declares a :class:`TenantSettings` subclass with a ``section`` name and
defaults. A change is a command like any other: authorized (``config.write``), idempotent,
audited with the old and new values, and kept as a new version (history is never edited).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import attrs
from pydantic import Field

from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.model import Model
from finfactory.kernel.ports import ConfigVersion, Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard


class TenantSettings(Model):
    """Base for a primitive's settings. Subclasses set ``section`` and give every default."""

    section: ClassVar[str] = ""


S = TypeVar("S", bound=TenantSettings)


class ConfigChange(Model):
    section: str
    version: int
    values: dict[str, Any]
    changed_by: str
    changed_at: datetime
    reason: str


class UpdateSettings(Model):
    section: str
    changes: dict[str, Any]
    reason: str = Field(min_length=1, max_length=500)


def load_settings(uow: UnitOfWork, tenant_id: str, settings_type: type[S]) -> S:
    """Effective settings for a tenant (defaults overlaid with the latest stored version)."""
    latest = uow.kernel.config_latest(tenant_id, settings_type.section)
    if latest is None:
        return settings_type()
    return settings_type.model_validate(latest.values)


def _change(v: ConfigVersion) -> ConfigChange:
    return ConfigChange(
        section=v.section,
        version=v.version,
        values=v.values,
        changed_by=v.changed_by,
        changed_at=v.changed_at,
        reason=v.reason,
    )


UPDATE = CommandSpec("config.update", "config.write", "tenant_config", ConfigChange)


@attrs.define
class TenantConfigService:
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    _runner: CommandRunner = attrs.field(init=False)
    _reads: ReadGuard = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._runner = CommandRunner(self.storage, self.policy, self.clock, self.ids, "config")
        self._reads = ReadGuard(self.storage, self.policy, self.clock, self.ids, "config.read")

    def get(
        self, ctx: RequestContext, settings_type: type[S], *, uow: UnitOfWork | None = None
    ) -> S:
        with self._reads.view(ctx, uow) as tx:
            return load_settings(tx, ctx.tenant_id, settings_type)

    def history(
        self, ctx: RequestContext, settings_type: type[S], *, uow: UnitOfWork | None = None
    ) -> list[ConfigChange]:
        with self._reads.view(ctx, uow) as tx:
            return [
                _change(v) for v in tx.kernel.config_history(ctx.tenant_id, settings_type.section)
            ]

    def update(
        self,
        ctx: RequestContext,
        settings_type: type[S],
        changes: Mapping[str, Any],
        *,
        reason: str,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> ConfigChange:
        request = UpdateSettings(
            section=settings_type.section, changes=dict(changes), reason=reason
        )
        unknown = sorted(set(changes) - set(settings_type.model_fields))
        if unknown:
            raise ValidationError(f"unknown setting {unknown[0]!r}", field=f"changes.{unknown[0]}")

        def handle(scope: CommandScope) -> ConfigChange:
            kernel = scope.uow.kernel
            latest = kernel.config_latest(ctx.tenant_id, settings_type.section)
            current = load_settings(scope.uow, ctx.tenant_id, settings_type)
            merged = {**current.model_dump(mode="json"), **dict(changes)}
            try:
                validated = settings_type.parse(merged)
            except ValidationError as err:
                raise ValidationError(err.message, field=f"changes.{err.field}") from None
            values = validated.model_dump(mode="json")
            entry = ConfigVersion(
                section=settings_type.section,
                version=(latest.version if latest else 0) + 1,
                values=values,
                changed_by=ctx.actor.id,
                changed_at=scope.now,
                reason=reason,
            )
            kernel.config_append(ctx.tenant_id, entry)
            before = current.model_dump(mode="json")
            scope.resource_id = settings_type.section
            scope.summary = {
                "version": entry.version,
                "before": {k: before[k] for k in sorted(changes)},
                "after": {k: values[k] for k in sorted(changes)},
                "reason": reason,
            }
            return _change(entry)

        # Check the merged settings up front too, so malformed input writes nothing.
        try:
            settings_type.parse({**settings_type().model_dump(mode="json"), **dict(changes)})
        except ValidationError as err:
            raise ValidationError(err.message, field=f"changes.{err.field}") from None
        return self._runner.run(
            ctx,
            UPDATE,
            request,
            handle,
            idempotency_key=idempotency_key,
            resource_id=settings_type.section,
            uow=uow,
        )
