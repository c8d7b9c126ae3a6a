"""The identity primitive's queries, and how personal data is shown: in clear to callers
allowed ``identity.pii.read`` (each disclosure audited), masked to everyone else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from finfactory.kernel.audit import AuditDraft, Outcome
from finfactory.kernel.audit import seal as seal_audit
from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.clock import Clock, IdGenerator, utc_now
from finfactory.kernel.context import RequestContext
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives.identity import commands as cmd
from finfactory.primitives.identity import pii as p
from finfactory.primitives.identity.errors import (
    CustomerNotFound,
    InvalidIdentityInput,
    KycNotFound,
)
from finfactory.primitives.identity.model import Customer
from finfactory.primitives.identity.ports import IdentityStore, PiiCipher
from finfactory.primitives.identity.views import customer_view, kyc_view, risk_flag_view

StoreFactory = Callable[[UnitOfWork], IdentityStore]
READ = "identity.read"
PII_READ = "identity.pii.read"
MAX_MATCHES = 50


class IdentityQueries:
    """Read side of :class:`~.service.IdentityService` (which supplies these attributes)."""

    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    keyring: PiiCipher
    store_factory: StoreFactory
    _reads: ReadGuard

    def verified_tier(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> str | None:
        """The KYC tier the customer holds now (verified, not expired at the clock's time),
        or None: unknown customer in this tenant, never verified, rejected, or expired."""
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            customer = store.get_customer(ctx.tenant_id, customer_id)
            if customer is None or customer.verified_kyc_id is None:
                return None
            case = store.get_case(ctx.tenant_id, customer.verified_kyc_id)
        if case is None or not case.holds_verification(utc_now(self.clock)):
            return None
        return case.tier

    def get_customer(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.CustomerView:
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            customer = store.get_customer(ctx.tenant_id, customer_id)
            if customer is None:
                raise CustomerNotFound(f"customer {customer_id} not found", field="customer_id")
            view = self._view(ctx, store, customer)
        self._audit_clear_read(ctx, uow, [view])
        return view

    def find_customer_by_document(
        self,
        ctx: RequestContext,
        document_type: str,
        issuing_country: str,
        number: str,
        *,
        uow: UnitOfWork | None = None,
    ) -> cmd.CustomerView:
        """The customer holding this identity document (matched by keyed hash)."""
        doc = cmd.IdDocument(type=document_type, issuing_country=issuing_country, number=number)
        doc_hash = p.document_hash(self.keyring, ctx.tenant_id, doc)
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            customer = store.customer_by_document(ctx.tenant_id, doc_hash)
            if customer is None:
                raise CustomerNotFound("no customer holds this identity document", field="number")
            view = self._view(ctx, store, customer)
        self._audit_clear_read(ctx, uow, [view])
        return view

    def find_customers_by_contact(
        self,
        ctx: RequestContext,
        *,
        email: str | None = None,
        phone: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> list[cmd.CustomerView]:
        """Customers with this e-mail and/or phone (keyed hash match), oldest first."""
        field = "email"
        try:
            email = None if email is None else cmd.normalise_email(email)
            field = "phone"
            phone = None if phone is None else cmd.normalise_phone(phone)
        except ValueError as err:
            raise InvalidIdentityInput(f"{field} {err}", field=field) from None
        if email is None and phone is None:
            raise InvalidIdentityInput("give an email or a phone", field="email")
        tenant = ctx.tenant_id
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            found = store.customers_by_contact(
                tenant,
                None if email is None else p.email_hash(self.keyring, tenant, email),
                None if phone is None else p.phone_hash(self.keyring, tenant, phone),
                MAX_MATCHES,
            )
            views = [self._view(ctx, store, c) for c in found]
        self._audit_clear_read(ctx, uow, views)
        return views

    def get_kyc(
        self, ctx: RequestContext, kyc_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.KycView:
        with self._reads.view(ctx, uow) as tx:
            case = self.store_factory(tx).get_case(ctx.tenant_id, kyc_id)
        if case is None:
            raise KycNotFound(f"KYC {kyc_id} not found", field="kyc_id")
        return kyc_view(case)

    def list_kyc(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> list[cmd.KycView]:
        """A customer's KYC attempts, oldest first."""
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            if store.get_customer(ctx.tenant_id, customer_id) is None:
                raise CustomerNotFound(f"customer {customer_id} not found", field="customer_id")
            cases = store.cases_of(ctx.tenant_id, customer_id)
        return [kyc_view(k) for k in cases]

    def list_risk_flags(
        self, ctx: RequestContext, customer_id: str, *, uow: UnitOfWork | None = None
    ) -> list[cmd.RiskFlagView]:
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            if store.get_customer(ctx.tenant_id, customer_id) is None:
                raise CustomerNotFound(f"customer {customer_id} not found", field="customer_id")
            flags = store.risk_flags(ctx.tenant_id, customer_id)
        return [risk_flag_view(f) for f in flags]

    # -- presenting personal data ---------------------------------------------------------
    def _view(
        self, ctx: RequestContext, store: IdentityStore, customer: Customer
    ) -> cmd.CustomerView:
        tenant = ctx.tenant_id
        latest = (
            None
            if customer.latest_kyc_id is None
            else store.get_case(tenant, customer.latest_kyc_id)
        )
        verified = (
            None
            if customer.verified_kyc_id is None
            else store.get_case(tenant, customer.verified_kyc_id)
        )
        return customer_view(
            customer,
            p.unseal(self.keyring, customer),
            clear=self.policy.decide(ctx, PII_READ).allowed,
            latest=latest,
            verified=verified,
            now=utc_now(self.clock),
        )

    def _present(
        self, ctx: RequestContext, customer_id: str, uow: UnitOfWork | None
    ) -> cmd.CustomerView:
        """The view a command returns (its permission covers reading what it wrote)."""
        with self._tx(uow, read_only=True) as tx:
            store = self.store_factory(tx)
            customer = store.get_customer(ctx.tenant_id, customer_id)
            if customer is None:  # pragma: no cover - the command just wrote it
                raise CustomerNotFound(f"customer {customer_id} not found", field="customer_id")
            view = self._view(ctx, store, customer)
        self._audit_clear_read(ctx, uow, [view])
        return view

    @contextmanager
    def _tx(self, uow: UnitOfWork | None, *, read_only: bool) -> Iterator[UnitOfWork]:
        if uow is not None:
            yield uow
            return
        opener = self.storage.read if read_only else self.storage.transaction
        with opener() as tx:
            yield tx

    def _audit_clear_read(
        self, ctx: RequestContext, uow: UnitOfWork | None, views: list[cmd.CustomerView]
    ) -> None:
        """Every disclosure of personal data in clear leaves an audit record."""
        shown = [v for v in views if v.pii == "clear"]
        if not shown:
            return
        now = utc_now(self.clock)
        with self._tx(uow, read_only=False) as tx:
            for view in shown:
                tx.kernel.append_audit(
                    AuditDraft(
                        id=self.ids.new_id(),
                        tenant_id=ctx.tenant_id,
                        occurred_at=now,
                        actor_id=ctx.actor.id,
                        actor_kind=ctx.actor.kind.value,
                        action=PII_READ,
                        resource_type="customer",
                        resource_id=view.id,
                        outcome=Outcome.SUCCEEDED,
                        reason="personal data disclosed in clear",
                        trace_id=ctx.trace_id,
                        summary={},
                    ),
                    seal_audit,
                )
            if uow is not None:
                tx.flush()
