"""HTTP edges of the reference app: who is calling, and errors as RFC 9457 problem details.

A product would put its own identity provider here; the reference app maps bearer tokens to
actors from a table it is given, which is enough to show per-role permissions at work.
"""

from __future__ import annotations

from typing import Any

import attrs
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from finfactory.kernel.context import Actor, ActorKind, RequestContext
from finfactory.kernel.errors import (
    AlreadyExists,
    ConcurrencyError,
    ConfigurationError,
    DomainError,
    FinFactoryError,
    IdempotencyConflict,
    NotFound,
    PermissionDenied,
    StorageError,
    ValidationError,
)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://finfactory.dev/problems/"

# The first matching class decides the status, so subclasses come before their bases.
_STATUS: tuple[tuple[type[FinFactoryError], int], ...] = (
    (ValidationError, 400),
    (PermissionDenied, 403),
    (NotFound, 404),
    (AlreadyExists, 409),
    (IdempotencyConflict, 409),
    (ConcurrencyError, 409),
    (DomainError, 422),
    (StorageError, 503),
    (ConfigurationError, 500),
)


class Unauthenticated(FinFactoryError):
    code = "ewallet.unauthenticated"


def status_for(error: FinFactoryError) -> int:
    if isinstance(error, Unauthenticated):
        return 401
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
    body["code"] = code
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def problem_from_error(error: FinFactoryError) -> JSONResponse:
    status = status_for(error)
    details = {k: v for k, v in error.details.items() if k != "field"}
    return problem(
        status,
        error.code,
        type(error).__name__,
        error.message,
        field=error.details.get("field"),
        details=details or None,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves the API as problem details carrying the SDK's stable code."""

    async def on_finfactory(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FinFactoryError)
        return problem_from_error(exc)

    async def on_request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return problem(
            400,
            ValidationError.code,
            "ValidationError",
            f"{field}: {first.get('msg', 'invalid')}",
            field=field,
        )

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = "ewallet.not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        return problem(exc.status_code, code, "HTTPException", str(exc.detail))

    app.add_exception_handler(FinFactoryError, on_finfactory)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


CUSTOMER_ROLE = "customer"


@attrs.define
class TokenTable:
    """Bearer token -> (tenant, actor). Tokens are compared as given; keep them secret."""

    entries: dict[str, tuple[str, Actor]] = attrs.field(factory=dict)

    def issue(self, token: str, tenant_id: str, actor: Actor) -> None:
        self.entries[token] = (tenant_id, actor)

    def context(self, authorization: str | None, traceparent: str | None) -> RequestContext:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthenticated("send Authorization: Bearer <token>")
        found = self.entries.get(authorization.removeprefix("Bearer ").strip())
        if found is None:
            raise Unauthenticated("unknown bearer token")
        tenant_id, actor = found
        if traceparent:
            try:
                return RequestContext.from_traceparent(
                    traceparent, tenant_id=tenant_id, actor=actor
                )
            except ValidationError:
                pass  # W3C trace context: an invalid traceparent is ignored, not an error
        return RequestContext(tenant_id=tenant_id, actor=actor)


def acting_customer(ctx: RequestContext) -> str | None:
    """The customer id a self-service caller acts as, or None for operators and services."""
    actor = ctx.actor
    if actor.kind is ActorKind.USER and CUSTOMER_ROLE in actor.roles:
        return actor.id
    return None


def require_own(ctx: RequestContext, customer_id: str, what: str) -> None:
    """A customer may only see and spend what is theirs; the SDK leaves this to the product
    (its permissions say what an actor may do, not whose wallet it is)."""
    me = acting_customer(ctx)
    if me is not None and me != customer_id:
        raise PermissionDenied(f"a customer may only use their own {what}", permission="own")
