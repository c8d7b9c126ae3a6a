"""Authorization: every command names a permission; a policy port decides.

The default :class:`RoleBasedPolicy` maps roles to permissions, with per-tenant overrides.
Permissions are dotted strings (``ledger.journal.post``); a grant may end in ``*`` to cover a
whole subtree (``ledger.*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import attrs

from finfactory.kernel.context import RequestContext


@attrs.frozen
class Decision:
    allowed: bool
    reason: str


class AuthorizationPolicy(Protocol):
    def decide(self, ctx: RequestContext, permission: str) -> Decision: ...


def _grants(patterns: Iterable[str], permission: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == permission:
            return True
        if pattern.endswith(".*") and permission.startswith(pattern[:-1]):
            return True
    return False


@attrs.define
class RoleBasedPolicy:
    """Role -> permission patterns, optionally replaced per tenant.

    ``tenant_roles[tenant][role]`` replaces ``roles[role]`` for that tenant, so one tenant can
    narrow or widen a role without affecting the others.
    """

    roles: Mapping[str, frozenset[str]]
    tenant_roles: Mapping[str, Mapping[str, frozenset[str]]] = attrs.field(factory=dict)

    def decide(self, ctx: RequestContext, permission: str) -> Decision:
        overrides = self.tenant_roles.get(ctx.tenant_id, {})
        for role in sorted(ctx.actor.roles):
            patterns = overrides.get(role, self.roles.get(role, frozenset()))
            if _grants(patterns, permission):
                return Decision(True, f"role {role} grants {permission}")
        return Decision(False, f"no role of actor {ctx.actor.id} grants {permission}")


class AllowAll:
    """For tests and single-user tools only: every request is allowed."""

    def decide(self, ctx: RequestContext, permission: str) -> Decision:
        return Decision(True, "allow-all policy")


DEFAULT_ROLES: Mapping[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "ledger.operator": frozenset({"ledger.*"}),
    "ledger.viewer": frozenset({"ledger.read"}),
    "identity.operator": frozenset({"identity.*"}),
    "wallet.operator": frozenset({"wallet.*"}),
    "qrph.operator": frozenset({"qrph.*"}),
    # Roles of the service actors primitives use when they call each other's public API.
    "wallet.service": frozenset({"ledger.*", "identity.read"}),
    "qrph.service": frozenset({"wallet.*", "identity.read"}),
    "auditor": frozenset(
        {"audit.read", "ledger.read", "events.read", "identity.read", "wallet.read", "qrph.read"}
    ),
    "config.admin": frozenset({"config.*"}),
}


def default_policy() -> RoleBasedPolicy:
    return RoleBasedPolicy(roles=DEFAULT_ROLES)
