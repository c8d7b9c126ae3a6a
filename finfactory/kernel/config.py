"""Typed per-tenant settings: defaults in code, overrides stored as numbered versions.

Each primitive declares a :class:`TenantSettings` subclass with a ``section`` name and
defaults. A change is a command like any other: authorized (``config.write``), idempotent,
audited with the old and new values, and kept as a new version (history is never edited).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeVar, get_args

import attrs
import pydantic
from pydantic import Field
from pydantic_core import PydanticSerializationError, to_jsonable_python

from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.canonical import canonical_json
from finfactory.kernel.clock import Clock, IdGenerator
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import ConfigurationError, ValidationError
from finfactory.kernel.model import Model
from finfactory.kernel.money import Money, money_to_json
from finfactory.kernel.ports import ConfigVersion, Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard


class TenantSettings(Model):
    """Base for a primitive's settings. Subclasses set ``section`` and give every default.

    Secrets do not belong here (settings are stored in plain text and their changes are
    audited with before and after values): a ``SecretStr`` or ``SecretBytes`` field is refused
    when the class is defined. Floats must be finite.
    """

    model_config = pydantic.ConfigDict(allow_inf_nan=False)
    section: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if _mentions_secret(field.annotation):
                raise ConfigurationError(
                    f"{cls.__name__}.{name}: keep secrets in a secret store, not in settings"
                )


def _mentions_secret(annotation: Any) -> bool:
    if annotation in (pydantic.SecretStr, pydantic.SecretBytes):
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


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
    # A setting a later release removed may linger in stored versions: it is ignored, or the
    # section could never be read (nor changed) again.
    known = settings_type.model_fields
    return settings_type.model_validate({k: v for k, v in latest.values.items() if k in known})


def _json_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    def money(value: Any) -> Any:
        if isinstance(value, Money):
            return money_to_json(value)
        raise PydanticSerializationError(f"a setting cannot be {type(value).__name__}")

    found: dict[str, Any] = {}
    for key in sorted(changes):
        try:
            found[key] = to_jsonable_python(changes[key], fallback=money)
            canonical_json(found[key]).encode("utf-8")
        except PydanticSerializationError as err:
            raise ValidationError(f"not a JSON value: {err}", field=f"changes.{key}") from None
        except UnicodeEncodeError:
            raise ValidationError("text must be valid Unicode", field=f"changes.{key}") from None
    return found


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
        unknown = sorted(set(changes) - set(settings_type.model_fields))
        if unknown:
            raise ValidationError(f"unknown setting {unknown[0]!r}", field=f"changes.{unknown[0]}")
        # The request is kept (and fingerprinted for idempotency) in JSON form with sorted
        # keys: the same change given in another order, or as Money rather than its JSON
        # form, is the same request.
        request = UpdateSettings(
            section=settings_type.section, changes=_json_changes(changes), reason=reason
        )

        def handle(scope: CommandScope) -> ConfigChange:
            kernel = scope.uow.kernel
            kernel.lock_config(ctx.tenant_id, settings_type.section)
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

        # Validated in the handler against the tenant's current settings (not the defaults:
        # a rule relating two settings depends on both). A refusal there is raised out of the
        # transaction, so nothing is written, the idempotency key included.
        return self._runner.run(
            ctx,
            UPDATE,
            request,
            handle,
            idempotency_key=idempotency_key,
            resource_id=settings_type.section,
            uow=uow,
        )
