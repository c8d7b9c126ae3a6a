"""The identity primitive's public API: customers with encrypted personal data, tiered KYC
through a provider port, expiry, and risk flags. Every command is validated, authorized,
idempotent under a key, audited, and written with its outbox events in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs
from pydantic import BaseModel

from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator, utc_now
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.config import load_settings
from finfactory.kernel.context import RequestContext
from finfactory.kernel.model import Model
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives.identity import commands as cmd
from finfactory.primitives.identity import events as ev
from finfactory.primitives.identity import lifecycle as lc
from finfactory.primitives.identity import pii as p
from finfactory.primitives.identity.errors import (
    CustomerNotFound,
    DuplicateDocument,
    InvalidIdentityInput,
    UnknownProviderReference,
    UnknownTier,
)
from finfactory.primitives.identity.model import (
    CallbackEffect,
    CallbackRecord,
    Customer,
    ExpiryKind,
    KycCase,
    RiskSource,
)
from finfactory.primitives.identity.ports import KycProvider, PiiCipher
from finfactory.primitives.identity.queries import READ, IdentityQueries, StoreFactory
from finfactory.primitives.identity.sessions import SessionOpener
from finfactory.primitives.identity.settings import IdentitySettings
from finfactory.primitives.identity.stores import default_store_factory
from finfactory.primitives.identity.views import kyc_view, risk_flag_view

R = TypeVar("R", bound=BaseModel)


class CustomerRef(Model):
    """What ``create_customer`` stores under its idempotency key: no personal data."""

    customer_id: str


class _Fingerprint(Model):
    digest: str


def _spec(action: str, permission: str, resource: str, result: type[R]) -> CommandSpec[R]:
    # Streaming: the handler writes as it goes inside a savepoint, so a rejection half-way
    # leaves nothing behind.
    return CommandSpec(
        f"identity.{action}", f"identity.{permission}", resource, result, streaming=True
    )


CREATE = _spec("create_customer", "customer.create", "customer", CustomerRef)
START = _spec("start_kyc", "kyc.start", "kyc", cmd.KycView)
CALLBACK = _spec("provider_callback", "kyc.callback", "kyc", cmd.CallbackResult)
EXPIRE = _spec("expire_due", "kyc.expire", "kyc", cmd.ExpiredKyc)
UPDATE = _spec("update_contact", "customer.update", "customer", CustomerRef)
FLAG = _spec("flag_risk", "risk.flag", "customer", cmd.RiskFlagView)
ROTATE = _spec("rotate_keys", "pii.rotate", "customer", cmd.KeyRotation)


@attrs.define
class IdentityService(IdentityQueries):
    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    keyring: PiiCipher
    provider: KycProvider
    store_factory: StoreFactory = default_store_factory
    _runner: CommandRunner = attrs.field(init=False)
    _reads: ReadGuard = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._runner = CommandRunner(self.storage, self.policy, self.clock, self.ids, "identity")
        self._reads = ReadGuard(self.storage, self.policy, self.clock, self.ids, READ)

    def _run(
        self,
        ctx: RequestContext,
        spec: CommandSpec[R],
        command: BaseModel,
        handler: Callable[[CommandScope], R],
        idempotency_key: str | None,
        uow: UnitOfWork | None,
        resource_id: str | None = None,
    ) -> R:
        # The idempotency record keeps a keyed digest of the request, not a plain hash: a
        # plain hash of a name and a birth date could be confirmed by guessing.
        digest = p.request_digest(
            self.keyring, ctx.tenant_id, spec.action, command.model_dump_json()
        )
        return self._runner.run(
            ctx,
            spec,
            _Fingerprint(digest=digest),
            handler,
            idempotency_key=idempotency_key,
            resource_id=resource_id,
            uow=uow,
        )

    def _events(self, scope: CommandScope, customer_id: str) -> lc.CustomerEvents:
        store = self.store_factory(scope.uow)
        customer = store.lock_customer(scope.ctx.tenant_id, customer_id)
        if customer is None:
            raise CustomerNotFound(f"customer {customer_id} not found", field="customer_id")
        return lc.CustomerEvents(scope, store, customer)

    # -- customers ------------------------------------------------------------------------
    def create_customer(
        self,
        ctx: RequestContext,
        command: cmd.CreateCustomer,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.CustomerView:
        """Create a customer; personal data is encrypted before it is written. The result
        shows it in clear only to callers allowed ``identity.pii.read``."""
        if command.birth_date > utc_now(self.clock).date():
            raise InvalidIdentityInput("birth_date is in the future", field="birth_date")
        record = p.PiiRecord.from_command(command)

        def handle(scope: CommandScope) -> CustomerRef:
            tenant = ctx.tenant_id
            store = self.store_factory(scope.uow)
            doc_hash = None
            if command.id_document is not None:
                doc_hash = p.document_hash(self.keyring, tenant, command.id_document)
                if store.customer_by_document(tenant, doc_hash) is not None:
                    raise DuplicateDocument(
                        "another customer of this tenant holds this identity document",
                        field="id_document",
                    )
            customer_id = scope.ids.new_id()
            sealed = p.seal(self.keyring, tenant, customer_id, record)
            customer = Customer(
                id=customer_id,
                tenant_id=tenant,
                created_at=scope.now,
                pii=sealed,
                document_hash=doc_hash,
                email_hash=None
                if command.email is None
                else p.email_hash(self.keyring, tenant, command.email),
                phone_hash=None
                if command.phone is None
                else p.phone_hash(self.keyring, tenant, command.phone),
            )
            store.add_customer(customer)
            scope.resource_id = customer_id
            scope.summary = {"fields": sorted(sealed.fields), "key_version": sealed.key_version}
            scope.emit(
                ev.CustomerCreated,
                dict(customer_id=customer_id, created_at=scope.now.isoformat()),
                customer_id,
                customer.version,
            )
            return CustomerRef(customer_id=customer_id)

        ref = self._run(ctx, CREATE, command, handle, idempotency_key, uow)
        return self._present(ctx, ref.customer_id, uow)

    def update_contact(
        self,
        ctx: RequestContext,
        command: cmd.UpdateContact,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.CustomerView:
        """Change or remove a customer's e-mail and phone. The personal data is sealed again
        under the current key and the lookup hashes follow. The seed defines no event for
        it: the change is recorded in the audit log (field names only)."""

        def handle(scope: CommandScope) -> CustomerRef:
            tenant = ctx.tenant_id
            events = self._events(scope, command.customer_id)
            customer = events.customer
            record = p.unseal(self.keyring, customer)
            email = None if command.remove_email else (command.email or record.email)
            phone = None if command.remove_phone else (command.phone or record.phone)
            record = attrs.evolve(record, email=email, phone=phone)
            sealed = p.seal(self.keyring, tenant, customer.id, record)
            events.update(
                pii=sealed,
                email_hash=None if email is None else p.email_hash(self.keyring, tenant, email),
                phone_hash=None if phone is None else p.phone_hash(self.keyring, tenant, phone),
            )
            events.save()
            given = [f for f in ("email", "phone") if getattr(command, f) is not None]
            removed = [f for f in ("email", "phone") if getattr(command, f"remove_{f}")]
            scope.summary = {
                "changed": given,
                "removed": removed,
                "key_version": sealed.key_version,
            }
            return CustomerRef(customer_id=customer.id)

        ref = self._run(
            ctx, UPDATE, command, handle, idempotency_key, uow, resource_id=command.customer_id
        )
        return self._present(ctx, ref.customer_id, uow)

    def flag_risk(
        self,
        ctx: RequestContext,
        command: cmd.FlagRisk,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.RiskFlagView:
        def handle(scope: CommandScope) -> cmd.RiskFlagView:
            events = self._events(scope, command.customer_id)
            flag = lc.raise_flag(events, command.reason, command.severity, RiskSource.API, None)
            events.save()
            scope.summary = {"flag_id": flag.id, "reason": flag.reason.value}
            return risk_flag_view(flag)

        return self._run(
            ctx, FLAG, command, handle, idempotency_key, uow, resource_id=command.customer_id
        )

    def rotate_keys(
        self,
        ctx: RequestContext,
        command: cmd.RotateKeys | None = None,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.KeyRotation:
        """Re-encrypt up to ``limit`` of the tenant's customers under the keyring's current
        key; run again until ``remaining`` is 0. Lookup hashes do not change."""
        command = command or cmd.RotateKeys()
        current = self.keyring.current_version

        def handle(scope: CommandScope) -> cmd.KeyRotation:
            tenant = ctx.tenant_id
            store = self.store_factory(scope.uow)
            rotated = 0
            for customer_id in store.customers_not_on_key(tenant, current, command.limit):
                customer = store.lock_customer(tenant, customer_id)
                if customer is None or customer.pii.key_version == current:
                    continue
                resealed = p.reseal(self.keyring, customer)
                store.save_customer(attrs.evolve(customer, pii=resealed))
                rotated += 1
            remaining = store.count_not_on_key(tenant, current)
            scope.summary = {"key_version": current, "rotated": rotated, "remaining": remaining}
            return cmd.KeyRotation(key_version=current, rotated=rotated, remaining=remaining)

        return self._run(ctx, ROTATE, command, handle, idempotency_key, uow)

    # -- KYC ------------------------------------------------------------------------------
    def start_kyc(
        self,
        ctx: RequestContext,
        command: cmd.StartKyc,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.KycView:
        """Open a provider session for a KYC attempt at ``command.tier``. A session the call
        does not keep (its transaction failed) is cancelled if the provider can cancel."""
        sessions = SessionOpener(self.provider)

        def handle(scope: CommandScope) -> cmd.KycView:
            settings = load_settings(scope.uow, ctx.tenant_id, IdentitySettings)
            tier = settings.tier(command.tier)
            if tier is None:
                raise UnknownTier(f"tier {command.tier} is not configured", field="tier")
            events = self._events(scope, command.customer_id)
            case = lc.start(events, command, tier, settings, self.keyring, sessions)
            scope.resource_id = case.id
            scope.summary = {
                "customer_id": case.customer_id,
                "tier": case.tier,
                "attempt": case.attempt,
                "document_replaced": command.id_document is not None,
            }
            return kyc_view(case)

        try:
            view = self._run(
                ctx, START, command, handle, idempotency_key, uow, resource_id=command.customer_id
            )
        except BaseException:
            sessions.release(None)
            raise
        sessions.release(view.id)
        return view

    def handle_provider_callback(
        self,
        ctx: RequestContext,
        command: cmd.ProviderCallback,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.CallbackResult:
        """Ingest a provider's verdict. Idempotent on the provider's reference: the same
        callback again has no effect (``duplicate``); a callback for a case already decided
        or expired changes nothing (``ignored``) except that a watch-list hit still raises a
        risk flag."""

        def handle(scope: CommandScope) -> cmd.CallbackResult:
            tenant = ctx.tenant_id
            store = self.store_factory(scope.uow)
            found = store.case_by_reference(tenant, command.reference)
            if found is None:
                raise UnknownProviderReference(
                    "no KYC session with this provider reference", field="reference"
                )
            scope.resource_id = found.id
            events = self._events(scope, found.customer_id)
            key = lc.callback_key(self.keyring, tenant, command)
            if store.callback_seen(tenant, command.reference, key):
                case = store.get_case(tenant, found.id) or found
                scope.summary = {"kyc_id": case.id, "effect": "duplicate"}
                return cmd.CallbackResult(
                    effect=CallbackEffect.DUPLICATE, kyc=kyc_view(case), risk_flag_ids=[]
                )
            lc.settle(events)
            case = store.get_case(tenant, found.id) or found
            settings = load_settings(scope.uow, tenant, IdentitySettings)
            verdict = lc.apply_verdict(events, case, command, settings, self.keyring)
            store.add_callback(
                CallbackRecord(
                    tenant_id=tenant,
                    provider_reference=command.reference,
                    callback_key=key,
                    kyc_id=case.id,
                    outcome=command.outcome.value,
                    effect=verdict.effect,
                    received_at=scope.now,
                )
            )
            events.save()
            scope.summary = {
                "kyc_id": case.id,
                "outcome": command.outcome.value,
                "effect": verdict.effect.value,
                "status": verdict.case.status.value,
                "risk_flags": [f.id for f in verdict.flags],
            }
            return cmd.CallbackResult(
                effect=verdict.effect,
                kyc=kyc_view(verdict.case),
                risk_flag_ids=[f.id for f in verdict.flags],
            )

        return self._run(ctx, CALLBACK, command, handle, idempotency_key, uow)

    def expire_due(
        self,
        ctx: RequestContext,
        command: cmd.ExpireDue | None = None,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.ExpiredKyc:
        """For a scheduler: expire open sessions past their timeout and verifications past
        their validity end, as of the clock (``kyc.expired`` for each)."""
        command = command or cmd.ExpireDue()

        def handle(scope: CommandScope) -> cmd.ExpiredKyc:
            tenant, now = ctx.tenant_id, scope.now
            store = self.store_factory(scope.uow)
            sessions = store.overdue_sessions(tenant, now, command.limit)
            lapsed = store.lapsed_verifications(tenant, now, command.limit)
            # Customers in id order: the same lock order as every other command takes.
            due = sorted({k.customer_id for k in sessions} | set(lapsed))
            expired: list[KycCase] = []
            for customer_id in due:
                if len(expired) >= command.limit:
                    break
                events = self._events(scope, customer_id)
                expired.extend(lc.settle(events))
                events.save()
            kinds = [k.expiry for k in expired]
            result = cmd.ExpiredKyc(
                kyc_ids=[k.id for k in expired],
                sessions=kinds.count(ExpiryKind.SESSION),
                validity=kinds.count(ExpiryKind.VALIDITY),
            )
            scope.summary = {"sessions": result.sessions, "validity": result.validity}
            return result

        return self._run(ctx, EXPIRE, command, handle, idempotency_key, uow)
