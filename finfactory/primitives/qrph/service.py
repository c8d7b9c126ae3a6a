"""The QR Ph public API. Every command: validated, authorized, idempotent, audited, and
written with its outbox events in one transaction (the merchant's credit included)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypeVar, overload

import attrs
from pydantic import BaseModel

from finfactory.kernel.authz import AuthorizationPolicy
from finfactory.kernel.canonical import sha256_hex
from finfactory.kernel.clock import Clock, IdGenerator, utc_now
from finfactory.kernel.commands import CommandRunner, CommandScope, CommandSpec
from finfactory.kernel.config import load_settings
from finfactory.kernel.context import RequestContext
from finfactory.kernel.errors import ValidationError
from finfactory.kernel.money import minor_to_json, to_minor
from finfactory.kernel.paging import page_limit
from finfactory.kernel.ports import Storage, UnitOfWork
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives.qrph import commands as cmd
from finfactory.primitives.qrph import events as ev
from finfactory.primitives.qrph.checks import acquirer_for, expiry_for, on_us_amount, same_static
from finfactory.primitives.qrph.emv import (
    Initiation,
    MerchantQrSpec,
    build_payload,
    read_merchant_qr,
    render_png,
    render_svg,
)
from finfactory.primitives.qrph.errors import (
    AmountAboveMaximum,
    CurrencyNotSupported,
    DuplicateReferenceLabel,
    PaymentNotFound,
    QrNotFound,
    StaticQrConflict,
)
from finfactory.primitives.qrph.model import (
    PaymentChannel,
    QrCode,
    QrStatus,
    account_number,
    generated_label,
)
from finfactory.primitives.qrph.payments import Incoming, receive
from finfactory.primitives.qrph.ports import MerchantSettlement, QrStore
from finfactory.primitives.qrph.settings import QrPhSettings
from finfactory.primitives.qrph.stores import default_store_factory
from finfactory.primitives.qrph.views import payment_view, qr_view

R = TypeVar("R", bound=BaseModel)
StoreFactory = Callable[[UnitOfWork], QrStore]


def _spec(action: str, permission: str, resource: str, result: type[R]) -> CommandSpec[R]:
    return CommandSpec(f"qrph.{action}", f"qrph.{permission}", resource, result)


STATIC = _spec("generate_static_qr", "generate", "qr_code", cmd.QrView)
DYNAMIC = _spec("generate_dynamic_qr", "generate", "qr_code", cmd.QrView)
RECEIVE = _spec("receive_switch_payment", "switch.receive", "qr_payment", cmd.PaymentView)
PAY = _spec("pay_qr", "pay", "qr_payment", cmd.PaymentView)


@attrs.define
class QrPaymentService:
    """QR Ph for merchants: issue static and dynamic QR codes, take payments to them.

    ``settlement`` credits the merchant's wallet when a payment is confirmed, inside the
    same transaction (``qrph.wallet_settlement.WalletMerchantSettlement`` does it with the
    EMI Wallet primitive).
    """

    storage: Storage
    policy: AuthorizationPolicy
    clock: Clock
    ids: IdGenerator
    settlement: MerchantSettlement
    store_factory: StoreFactory = default_store_factory
    _runner: CommandRunner = attrs.field(init=False)
    _reads: ReadGuard = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._runner = CommandRunner(self.storage, self.policy, self.clock, self.ids, "qrph")
        self._reads = ReadGuard(self.storage, self.policy, self.clock, self.ids, "qrph.read")

    # -- QR codes -------------------------------------------------------------------------
    def generate_static_qr(
        self,
        ctx: RequestContext,
        command: cmd.GenerateStaticQr,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.QrView:
        """The merchant's static QR code. Asking again with the same details returns the
        same code; other details are refused (a printed code must not change silently)."""

        def handle(scope: CommandScope) -> cmd.QrView:
            store = self.store_factory(scope.uow)
            settings = load_settings(scope.uow, ctx.tenant_id, QrPhSettings)
            account = store.account_number(ctx.tenant_id, command.merchant_wallet_id)
            existing_id = None if account is None else store.static_qr_id(ctx.tenant_id, account)
            if existing_id is not None:
                existing = store.get_qr(ctx.tenant_id, existing_id)
                assert existing is not None
                scope.resource_id = existing.id
                if not same_static(existing, command):
                    raise StaticQrConflict(
                        "the merchant already has a static QR code with other details",
                        qr_id=existing.id,
                    )
                scope.summary = {"existing": True}
                return qr_view(existing, scope.now)
            spec = MerchantQrSpec(
                kind=command.kind,
                initiation=Initiation.STATIC,
                acquirer_id=acquirer_for(command, settings),
                merchant_account=self._merchant_account(
                    scope, store, command, settings.currency, account
                ),
                merchant_name=command.merchant_name,
                merchant_city=command.merchant_city,
                mcc=command.mcc or settings.default_mcc,
                currency=settings.currency,
                postal_code=command.postal_code,
            )
            return self._issue(scope, store, command.merchant_wallet_id, spec, None)

        return self._runner.run(
            ctx, STATIC, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def generate_dynamic_qr(
        self,
        ctx: RequestContext,
        command: cmd.GenerateDynamicQr,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.QrView:
        """A one-time QR code for an amount, valid until it expires."""
        amount, currency = to_minor(command.amount, allow_zero=False)

        def handle(scope: CommandScope) -> cmd.QrView:
            store = self.store_factory(scope.uow)
            settings = load_settings(scope.uow, ctx.tenant_id, QrPhSettings)
            if currency != settings.currency:
                raise CurrencyNotSupported(
                    f"QR codes of this tenant are in {settings.currency}", field="amount"
                )
            if amount > to_minor(settings.max_amount)[0]:
                raise AmountAboveMaximum(
                    f"amount exceeds the tenant's maximum of {settings.max_amount.amount}",
                    field="amount",
                )
            expires_at = expiry_for(command, settings, scope.now)
            qr_id = scope.ids.new_id()
            label = command.reference_label or generated_label(qr_id)
            account = store.account_number(ctx.tenant_id, command.merchant_wallet_id)
            if (
                account is not None
                and store.dynamic_qr_id(ctx.tenant_id, account, label) is not None
            ):
                raise DuplicateReferenceLabel(
                    f"the merchant already has a QR code labelled {label}",
                    field="reference_label",
                )
            spec = MerchantQrSpec(
                kind=command.kind,
                initiation=Initiation.DYNAMIC,
                acquirer_id=acquirer_for(command, settings),
                merchant_account=self._merchant_account(scope, store, command, currency, account),
                merchant_name=command.merchant_name,
                merchant_city=command.merchant_city,
                mcc=command.mcc or settings.default_mcc,
                currency=currency,
                amount_minor=amount,
                reference_label=label,
                postal_code=command.postal_code,
            )
            return self._issue(scope, store, command.merchant_wallet_id, spec, expires_at, qr_id)

        return self._runner.run(
            ctx, DYNAMIC, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def _merchant_account(
        self,
        scope: CommandScope,
        store: QrStore,
        command: cmd.GenerateStaticQr | cmd.GenerateDynamicQr,
        currency: str,
        account: str | None,
    ) -> str:
        """Check (through the settlement) that the wallet can be paid by this code, then
        return the merchant's account number, drawing it with the merchant's first code.
        Nothing is written before the check passes."""
        self.settlement.check_merchant(
            scope.ctx,
            merchant_wallet_id=command.merchant_wallet_id,
            kind=command.kind,
            currency=currency,
            uow=scope.uow,
        )
        if account is None:
            account = account_number(scope.ids.new_id())
            store.add_account_number(
                scope.ctx.tenant_id, command.merchant_wallet_id, account, scope.now
            )
        return account

    def _issue(
        self,
        scope: CommandScope,
        store: QrStore,
        merchant_wallet_id: str,
        spec: MerchantQrSpec,
        expires_at: datetime | None,
        qr_id: str | None = None,
    ) -> cmd.QrView:
        qr = QrCode(
            id=qr_id or scope.ids.new_id(),
            tenant_id=scope.ctx.tenant_id,
            merchant_wallet_id=merchant_wallet_id,
            kind=spec.kind,
            initiation=spec.initiation,
            status=QrStatus.ACTIVE,
            payload=build_payload(spec),
            acquirer_id=spec.acquirer_id,
            merchant_account=spec.merchant_account,
            merchant_name=spec.merchant_name,
            merchant_city=spec.merchant_city,
            mcc=spec.mcc,
            currency=spec.currency,
            amount=spec.amount_minor,
            reference_label=spec.reference_label,
            postal_code=spec.postal_code,
            expires_at=expires_at,
            created_at=scope.now,
        )
        scope.resource_id = qr.id
        store.add_qr(qr)
        store.flush()
        amount = None if qr.amount is None else minor_to_json(qr.amount, qr.currency)
        scope.emit(
            ev.QrGenerated,
            dict(
                qr_id=qr.id,
                merchant_wallet_id=qr.merchant_wallet_id,
                kind=qr.kind.value,
                initiation=qr.initiation.value,
                amount=amount,
                reference_label=qr.reference_label,
                expires_at=None if expires_at is None else expires_at.isoformat(),
            ),
            qr.id,
            1,
        )
        scope.summary = {
            "kind": qr.kind.value,
            "initiation": qr.initiation.value,
            "amount": amount,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
        }
        return qr_view(qr, scope.now)

    # -- payments -------------------------------------------------------------------------
    def receive_switch_payment(
        self,
        ctx: RequestContext,
        command: cmd.SwitchPayment,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.PaymentView:
        """A payment the acquirer or switch notifies: recorded once per network reference
        (a repeat returns the first result), then confirmed or failed."""

        def handle(scope: CommandScope) -> cmd.PaymentView:
            # Parsed here, after the permission check: a caller without it is denied (and
            # audited) whatever it sent.
            amount, currency = to_minor(command.amount, allow_zero=False)
            decoded = None if command.payload is None else read_merchant_qr(command.payload)
            incoming = Incoming(
                network_reference=command.network_reference,
                channel=PaymentChannel.SWITCH,
                amount=amount,
                currency=currency,
                qr_id=command.qr_id,
                decoded=decoded,
                payer_institution=command.payer_institution,
            )
            return receive(scope, self.store_factory(scope.uow), self.settlement, incoming)

        return self._runner.run(
            ctx, RECEIVE, command, handle, idempotency_key=idempotency_key, uow=uow
        )

    def pay_qr(
        self,
        ctx: RequestContext,
        command: cmd.PayQr,
        *,
        idempotency_key: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> cmd.PaymentView:
        """An on-us payment: ``payer_wallet_id`` pays the QR code it scanned.

        The caller must have checked that the payer may spend from that wallet.
        """
        if command.reference is not None:
            reference: str | None = cmd.ON_US_PREFIX + command.reference
        elif idempotency_key is not None:
            reference = cmd.ON_US_PREFIX + sha256_hex(idempotency_key)[:40]
        else:
            reference = None

        def handle(scope: CommandScope) -> cmd.PaymentView:
            decoded = read_merchant_qr(command.payload)
            amount, currency = on_us_amount(command, decoded)
            incoming = Incoming(
                network_reference=reference or cmd.ON_US_PREFIX + scope.ids.new_id(),
                channel=PaymentChannel.ON_US,
                amount=amount,
                currency=currency,
                decoded=decoded,
                payer_wallet_id=command.payer_wallet_id,
            )
            return receive(scope, self.store_factory(scope.uow), self.settlement, incoming)

        return self._runner.run(ctx, PAY, command, handle, idempotency_key=idempotency_key, uow=uow)

    # -- queries --------------------------------------------------------------------------
    def get_qr(
        self, ctx: RequestContext, qr_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.QrView:
        with self._reads.view(ctx, uow) as tx:
            qr = self.store_factory(tx).get_qr(ctx.tenant_id, qr_id)
        if qr is None:
            raise QrNotFound(f"QR code {qr_id} not found", field="qr_id")
        return qr_view(qr, utc_now(self.clock))

    @overload
    def get_qr_image(
        self,
        ctx: RequestContext,
        qr_id: str,
        format: Literal["png"] = "png",
        *,
        scale: int | None = None,
        border: int = 4,
        uow: UnitOfWork | None = None,
    ) -> bytes: ...

    @overload
    def get_qr_image(
        self,
        ctx: RequestContext,
        qr_id: str,
        format: Literal["svg"],
        *,
        scale: int | None = None,
        border: int = 4,
        uow: UnitOfWork | None = None,
    ) -> str: ...

    def get_qr_image(
        self,
        ctx: RequestContext,
        qr_id: str,
        format: Literal["png", "svg"] = "png",
        *,
        scale: int | None = None,
        border: int = 4,
        uow: UnitOfWork | None = None,
    ) -> bytes | str:
        """The QR code as a PNG (bytes) or SVG (text) image, ready to print or show."""
        if format not in ("png", "svg"):
            raise ValidationError("format must be 'png' or 'svg'", field="format")
        if scale is not None and not (isinstance(scale, int) and 1 <= scale <= 64):
            raise ValidationError("scale must be a whole number from 1 to 64", field="scale")
        if not (isinstance(border, int) and 0 <= border <= 64):
            raise ValidationError("border must be a whole number from 0 to 64", field="border")
        payload = self.get_qr(ctx, qr_id, uow=uow).payload
        if format == "png":
            return render_png(payload, scale=scale or 8, border=border)
        return render_svg(payload, scale=scale or 4, border=border)

    def get_payment(
        self, ctx: RequestContext, payment_id: str, *, uow: UnitOfWork | None = None
    ) -> cmd.PaymentView:
        with self._reads.view(ctx, uow) as tx:
            payment = self.store_factory(tx).get_payment(ctx.tenant_id, payment_id)
        if payment is None:
            raise PaymentNotFound(f"payment {payment_id} not found", field="payment_id")
        return payment_view(payment)

    def list_payments(
        self,
        ctx: RequestContext,
        *,
        qr_id: str | None = None,
        merchant_wallet_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
        uow: UnitOfWork | None = None,
    ) -> cmd.PaymentPage:
        """Payments in the order they were received, to one QR code, to one merchant's
        wallet, or (with neither) to the whole tenant; pass ``next_after`` back as
        ``after`` for the next page."""
        limit = page_limit(limit, 1000)
        with self._reads.view(ctx, uow) as tx:
            store = self.store_factory(tx)
            cursor = None
            if after is not None:
                last = store.get_payment(ctx.tenant_id, after)
                if last is None:
                    raise PaymentNotFound(f"payment {after} not found", field="after")
                cursor = (last.received_at, last.id)
            rows = store.list_payments(
                ctx.tenant_id,
                qr_id=qr_id,
                merchant_wallet_id=merchant_wallet_id,
                after=cursor,
                limit=limit + 1,
            )
        page = [payment_view(p) for p in rows[:limit]]
        more = len(rows) > limit
        return cmd.PaymentPage.model_construct(
            payments=page, next_after=page[-1].id if more else None
        )
