"""The reference e-wallet's HTTP API (FastAPI): thin routes over the primitives' public APIs.

Every route turns the caller's bearer token into a RequestContext, passes the
``Idempotency-Key`` header through, and lets the SDK's errors become problem details.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field

from examples.ewallet.composition import Ewallet
from examples.ewallet.http import (
    TokenTable,
    acting_customer,
    install_problem_handlers,
    require_own,
)
from finfactory.kernel.context import RequestContext
from finfactory.kernel.model import Model, PositiveMoney
from finfactory.kernel.reads import ReadGuard
from finfactory.primitives import identity as idn
from finfactory.primitives import qrph, wallet

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="repeat a request safely: the first outcome is returned again",
    ),
]
Traceparent = Annotated[str | None, Header(description="W3C trace context")]
Id = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=500)]
Reference = Annotated[str, Field(min_length=1, max_length=64)]

_bearer = HTTPBearer(auto_error=False, description="a token issued to a customer or operator")


class StartKycBody(Model):
    tier: str
    id_document: idn.IdDocument | None = None


class ReasonBody(Model):
    reason: Text


class OptionalReasonBody(Model):
    reason: Text | None = None


class MoneyMovementBody(Model):
    amount: PositiveMoney
    reference: Reference
    description: Text | None = None


class StaticQrBody(Model):
    merchant_name: str
    merchant_city: str
    mcc: str | None = None
    kind: qrph.QrKind = qrph.QrKind.P2M


class DynamicQrBody(StaticQrBody):
    amount: PositiveMoney
    expires_in_seconds: int | None = None
    reference_label: str | None = None


class EventView(Model):
    position: int
    id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_sequence: int
    recorded_at: str
    payload: dict[str, Any]


class EventPage(Model):
    events: list[EventView]
    next_after: int


def request_context(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    traceparent: Traceparent = None,
) -> RequestContext:
    """Who is calling, for which tenant, in which trace (from the app's token table)."""
    tokens: TokenTable = request.app.state.tokens
    header = f"Bearer {credentials.credentials}" if credentials else None
    return tokens.context(header, traceparent)


Ctx = Annotated[RequestContext, Depends(request_context)]


def create_app(app_services: Ewallet, tokens: TokenTable) -> FastAPI:
    """The HTTP app over ``app_services``; ``tokens`` says who each bearer token is."""
    svc = app_services
    api = FastAPI(
        title="FinFactory reference e-wallet",
        version="1.0.0",
        description="Onboarding with KYC, EMI wallets, QR Ph payments, on FinFactory.",
    )
    api.state.tokens = tokens
    install_problem_handlers(api)
    event_reads = ReadGuard(svc.storage, svc.policy, svc.clock, svc.ids, "events.read")

    def own_wallet(ctx: RequestContext, wallet_id: str) -> None:
        """A self-service customer may only use their own wallets (operators: any)."""
        if acting_customer(ctx) is not None:
            require_own(ctx, svc.wallets.get_wallet(ctx, wallet_id).customer_id, "wallets")

    # -- customers and KYC ------------------------------------------------------------------
    @api.post("/v1/customers", status_code=201, tags=["identity"])
    def onboard_customer(
        body: idn.CreateCustomer, ctx: Ctx, key: IdempotencyKey = None
    ) -> idn.CustomerView:
        return svc.identity.create_customer(ctx, body, idempotency_key=key)

    @api.get("/v1/customers/{customer_id}", tags=["identity"])
    def get_customer(customer_id: str, ctx: Ctx) -> idn.CustomerView:
        require_own(ctx, customer_id, "customer record")
        return svc.identity.get_customer(ctx, customer_id)

    @api.post("/v1/customers/{customer_id}/kyc", status_code=201, tags=["identity"])
    def start_kyc(
        customer_id: str, body: StartKycBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> idn.KycView:
        command = idn.StartKyc(
            customer_id=customer_id, tier=body.tier, id_document=body.id_document
        )
        return svc.identity.start_kyc(ctx, command, idempotency_key=key)

    @api.get("/v1/customers/{customer_id}/kyc", tags=["identity"])
    def list_kyc(customer_id: str, ctx: Ctx) -> list[idn.KycView]:
        require_own(ctx, customer_id, "KYC attempts")
        return svc.identity.list_kyc(ctx, customer_id)

    @api.post("/v1/kyc/callbacks", tags=["identity"])
    def kyc_callback(
        body: idn.ProviderCallback, ctx: Ctx, key: IdempotencyKey = None
    ) -> idn.CallbackResult:
        return svc.identity.handle_provider_callback(ctx, body, idempotency_key=key)

    # -- wallets ----------------------------------------------------------------------------
    @api.post("/v1/wallets", status_code=201, tags=["wallets"])
    def open_wallet(
        body: wallet.OpenWallet, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.WalletView:
        return svc.wallets.open_wallet(ctx, body, idempotency_key=key)

    @api.get("/v1/wallets/{wallet_id}", tags=["wallets"])
    def get_wallet(wallet_id: str, ctx: Ctx) -> wallet.WalletView:
        found = svc.wallets.get_wallet(ctx, wallet_id)
        require_own(ctx, found.customer_id, "wallets")
        return found

    @api.get("/v1/customers/{customer_id}/wallets", tags=["wallets"])
    def list_wallets(customer_id: str, ctx: Ctx) -> list[wallet.WalletView]:
        require_own(ctx, customer_id, "wallets")
        return svc.wallets.list_wallets(ctx, customer_id)

    @api.post("/v1/wallets/{wallet_id}/activate", tags=["wallets"])
    def activate_wallet(
        wallet_id: str, body: OptionalReasonBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.WalletView:
        command = wallet.ActivateWallet(wallet_id=wallet_id, reason=body.reason)
        return svc.wallets.activate_wallet(ctx, command, idempotency_key=key)

    @api.post("/v1/wallets/{wallet_id}/suspend", tags=["wallets"])
    def suspend_wallet(
        wallet_id: str, body: ReasonBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.WalletView:
        command = wallet.SuspendWallet(wallet_id=wallet_id, reason=body.reason)
        return svc.wallets.suspend_wallet(ctx, command, idempotency_key=key)

    @api.post("/v1/wallets/{wallet_id}/close", tags=["wallets"])
    def close_wallet(
        wallet_id: str, body: ReasonBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.WalletView:
        command = wallet.CloseWallet(wallet_id=wallet_id, reason=body.reason)
        return svc.wallets.close_wallet(ctx, command, idempotency_key=key)

    @api.post("/v1/wallets/{wallet_id}/cash-in", status_code=201, tags=["money"])
    def cash_in(
        wallet_id: str, body: MoneyMovementBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.MovementView:
        command = wallet.CashIn(
            wallet_id=wallet_id,
            amount=body.amount,
            source_account_id=svc.settlement(ctx.tenant_id).cash_in,
            reference=body.reference,
            description=body.description,
        )
        return svc.wallets.cash_in(ctx, command, idempotency_key=key)

    @api.post("/v1/wallets/{wallet_id}/cash-out", status_code=201, tags=["money"])
    def cash_out(
        wallet_id: str, body: MoneyMovementBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.MovementView:
        command = wallet.CashOut(
            wallet_id=wallet_id,
            amount=body.amount,
            destination_account_id=svc.settlement(ctx.tenant_id).cash_out,
            reference=body.reference,
            description=body.description,
        )
        return svc.wallets.cash_out(ctx, command, idempotency_key=key)

    @api.post("/v1/transfers", status_code=201, tags=["money"])
    def transfer(
        body: wallet.Transfer, ctx: Ctx, key: IdempotencyKey = None
    ) -> wallet.MovementView:
        own_wallet(ctx, body.from_wallet_id)
        return svc.wallets.transfer(ctx, body, idempotency_key=key)

    @api.get("/v1/wallets/{wallet_id}/history", tags=["money"])
    def history(
        wallet_id: str,
        ctx: Ctx,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        after: Annotated[
            str | None, Query(max_length=64, description="id of the last movement already seen")
        ] = None,
    ) -> list[wallet.MovementView]:
        own_wallet(ctx, wallet_id)
        return svc.wallets.history(ctx, wallet_id, limit=limit, after=after)

    # -- QR Ph ------------------------------------------------------------------------------
    @api.post("/v1/wallets/{wallet_id}/qr/static", status_code=201, tags=["qr"])
    def static_qr(
        wallet_id: str, body: StaticQrBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> qrph.QrView:
        command = qrph.GenerateStaticQr(merchant_wallet_id=wallet_id, **body.model_dump())
        return svc.qr.generate_static_qr(ctx, command, idempotency_key=key)

    @api.post("/v1/wallets/{wallet_id}/qr/dynamic", status_code=201, tags=["qr"])
    def dynamic_qr(
        wallet_id: str, body: DynamicQrBody, ctx: Ctx, key: IdempotencyKey = None
    ) -> qrph.QrView:
        command = qrph.GenerateDynamicQr(merchant_wallet_id=wallet_id, **dict(body))
        return svc.qr.generate_dynamic_qr(ctx, command, idempotency_key=key)

    @api.get("/v1/qr/{qr_id}", tags=["qr"])
    def get_qr(qr_id: str, ctx: Ctx) -> qrph.QrView:
        return svc.qr.get_qr(ctx, qr_id)

    @api.get(
        "/v1/qr/{qr_id}/image",
        tags=["qr"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
    )
    def qr_image(
        qr_id: str,
        ctx: Ctx,
        format: Literal["png", "svg"] = "png",
    ) -> Response:
        if format == "svg":
            svg = svc.qr.get_qr_image(ctx, qr_id, "svg")
            return Response(str(svg), media_type="image/svg+xml")
        png = svc.qr.get_qr_image(ctx, qr_id, "png")
        assert isinstance(png, bytes)
        return Response(png, media_type="image/png")

    @api.post("/v1/qr/payments", status_code=201, tags=["qr"])
    def pay_qr(body: qrph.PayQr, ctx: Ctx, key: IdempotencyKey = None) -> qrph.PaymentView:
        own_wallet(ctx, body.payer_wallet_id)
        return svc.qr.pay_qr(ctx, body, idempotency_key=key)

    @api.post("/v1/switch/qr-payments", status_code=201, tags=["qr"])
    def switch_payment(
        body: qrph.SwitchPayment, ctx: Ctx, key: IdempotencyKey = None
    ) -> qrph.PaymentView:
        return svc.qr.receive_switch_payment(ctx, body, idempotency_key=key)

    @api.get("/v1/qr/{qr_id}/payments", tags=["qr"])
    def qr_payments(qr_id: str, ctx: Ctx) -> qrph.PaymentPage:
        return svc.qr.list_payments(ctx, qr_id=qr_id)

    # -- events (the outbox, read directly) -------------------------------------------------
    @api.get("/v1/events", tags=["events"])
    def events(
        ctx: Ctx,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> EventPage:
        with event_reads.view(ctx, None) as tx:  # checks events.read, audits a denial
            found = tx.kernel.read_events(after, limit, tenant_id=ctx.tenant_id)
        views = [
            EventView(
                position=e.position or 0,
                id=e.id,
                event_type=e.event_type,
                aggregate_type=e.aggregate_type,
                aggregate_id=e.aggregate_id,
                aggregate_sequence=e.aggregate_sequence,
                recorded_at=e.recorded_at.isoformat(),
                payload=e.payload,
            )
            for e in found
        ]
        return EventPage(events=views, next_after=views[-1].position if views else after)

    return api
