"""One error tree for the whole SDK.

Every error carries a stable machine-readable ``code`` that products may put in API responses
and match on; messages are for humans and may change. ``details`` is JSON-safe.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

_BY_CODE: dict[str, type[FinFactoryError]] = {}


class FinFactoryError(Exception):
    """Base of every error the SDK raises on purpose."""

    code: ClassVar[str] = "finfactory_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            if cls.code in _BY_CODE:
                raise TypeError(f"error code {cls.code!r} is declared twice")
            _BY_CODE[cls.code] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


_BY_CODE[FinFactoryError.code] = FinFactoryError


def error_from_dict(data: dict[str, Any]) -> FinFactoryError:
    """Rebuild a stored error (used to replay an idempotent rejection). A code no class in
    this process declares (retired, renamed, or from a module not imported here) comes back
    as a :class:`ReplayedRejection` that keeps the stored code."""
    code = str(data["code"])
    cls = _BY_CODE.get(code)
    err = (cls or ReplayedRejection).__new__(cls or ReplayedRejection)
    FinFactoryError.__init__(err, str(data["message"]), **dict(data.get("details") or {}))
    if cls is None:
        object.__setattr__(err, "code", code)  # this instance only; the class keeps its own
    return err


def error_class_for(code: str) -> type[FinFactoryError] | None:
    return _BY_CODE.get(code)


class ValidationError(FinFactoryError):
    """Input was malformed; nothing was written. ``field`` names the offending input."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class MoneyError(ValidationError):
    code = "invalid_money"


class DomainError(FinFactoryError):
    """A well-formed command the domain refuses (insufficient funds, wrong state...).

    Domain rejections are stored under the idempotency key and replay identically.
    """

    code = "domain_rejected"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        # Stored under an idempotency key and replayed: a detail JSON cannot hold would
        # otherwise fail only the commands that carry a key, when the rejection is stored.
        try:
            json.dumps(details, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{type(self).__name__} details must be JSON-safe: {err}") from None


class ReplayedRejection(DomainError):
    """A stored domain rejection replayed under a code no class here declares: ``code`` is
    the stored one. Match it by ``code``; it is a :class:`DomainError` like the original."""


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class PermissionDenied(FinFactoryError):
    code = "permission_denied"


class IdempotencyConflict(FinFactoryError):
    """The idempotency key was used before with a different request."""

    code = "idempotency_conflict"


class ConcurrencyError(FinFactoryError):
    """A transaction lost a race the storage could not serialize; safe to retry."""

    code = "concurrency_conflict"


class StorageError(FinFactoryError):
    """The storage failed in a way the caller cannot fix by changing the request."""

    code = "storage_error"


class IntegrityViolation(StorageError):
    """The database refused a write because it breaks an invariant it enforces itself."""

    code = "integrity_violation"


class ConfigurationError(FinFactoryError):
    code = "configuration_error"
