"""The kernel every primitive shares: money, request context, authorization, idempotent
commands, audit chain, tenant configuration, clock and id ports, and the error tree."""

from finfactory.kernel.audit import (
    AuditAnchor,
    AuditRecord,
    ChainVerification,
    Outcome,
    verify_chain,
)
from finfactory.kernel.audit_trail import AuditTrail
from finfactory.kernel.authz import (
    DEFAULT_ROLES,
    AllowAll,
    AuthorizationPolicy,
    Decision,
    RoleBasedPolicy,
    default_policy,
)
from finfactory.kernel.clock import Clock, IdGenerator, SystemClock, UuidGenerator
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.config import (
    ConfigChange,
    TenantConfigService,
    TenantSettings,
    load_settings,
)
from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import (
    AlreadyExists,
    ConcurrencyError,
    ConfigurationError,
    DomainError,
    FinFactoryError,
    IdempotencyConflict,
    IntegrityViolation,
    MoneyError,
    NotFound,
    PermissionDenied,
    ReplayedRejection,
    StorageError,
    ValidationError,
    error_class_for,
    error_from_dict,
)
from finfactory.kernel.model import Model, MoneyAmount, PositiveMoney
from finfactory.kernel.money import (
    Money,
    from_minor,
    money_from_json,
    money_to_json,
    to_minor,
)
from finfactory.kernel.ports import KernelStore, Storage, UnitOfWork
from finfactory.kernel.retention import purge_idempotency_keys

__all__ = [
    "DEFAULT_ROLES",
    "Actor",
    "ActorKind",
    "AllowAll",
    "AlreadyExists",
    "AuditAnchor",
    "AuditRecord",
    "AuditTrail",
    "AuthorizationPolicy",
    "ChainVerification",
    "Clock",
    "CommandRunner",
    "CommandScope",
    "CommandSpec",
    "ConcurrencyError",
    "ConfigChange",
    "ConfigurationError",
    "Decision",
    "DomainError",
    "FinFactoryError",
    "IdGenerator",
    "IdempotencyConflict",
    "IntegrityViolation",
    "KernelStore",
    "Model",
    "Money",
    "MoneyAmount",
    "MoneyError",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "PositiveMoney",
    "ReplayedRejection",
    "RequestContext",
    "RoleBasedPolicy",
    "Storage",
    "StorageError",
    "SystemClock",
    "TenantConfigService",
    "TenantSettings",
    "UnitOfWork",
    "UuidGenerator",
    "ValidationError",
    "default_policy",
    "error_class_for",
    "error_from_dict",
    "from_minor",
    "load_settings",
    "money_from_json",
    "money_to_json",
    "purge_idempotency_keys",
    "to_minor",
    "verify_chain",
]
