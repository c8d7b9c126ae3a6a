"""A scripted day of the reference e-wallet, driven through its HTTP API.

Onboards and verifies two customers and a merchant, funds wallets, generates the merchant's
QR codes and pays them (on-us and through the switch), transfers, runs into two limits, and
prints balances and the events emitted. Every step checks what it got; exit status 0 means
everything went as expected.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from examples.ewallet.api import create_app
from examples.ewallet.composition import Ewallet, build
from examples.ewallet.http import CUSTOMER_ROLE, TokenTable
from examples.ledger_demo import fresh_engine, print_table
from finfactory.events.relay import OutboxRelay
from finfactory.kernel.audit_trail import AuditTrail
from finfactory.kernel.context import Actor, ActorKind
from finfactory.testing import InMemoryBroker, InMemoryPublisher, ManualClock, SequentialIds

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

TENANT = "demo-ewallet"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TOKENS = {
    "ops-token": (
        "ewallet-ops",
        ActorKind.USER,
        ("identity.operator", "wallet.operator", "qrph.operator", "ledger.viewer", "auditor"),
    ),
    "auditor-token": ("ewallet-auditor", ActorKind.USER, ("auditor",)),
    "switch-token": ("qrph-switch", ActorKind.SERVICE, ("qr.switch",)),
    "kyc-token": ("kyc-vendor", ActorKind.SERVICE, ("kyc.webhook",)),
}


class ScenarioFailure(Exception):
    """A step did not do what the scenario expects."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise ScenarioFailure(what)


def token_table(tenant_id: str = TENANT) -> TokenTable:
    return TokenTable(
        {
            token: (tenant_id, Actor(actor_id, kind, frozenset(roles)))
            for token, (actor_id, kind, roles) in TOKENS.items()
        }
    )


def php(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "PHP"}


def in_process_client(app: FastAPI) -> TestClient:
    """An HTTP client calling ``app`` in-process (no socket)."""
    with warnings.catch_warnings():
        # Starlette deprecates its own httpx-based transport; it still works for this.
        warnings.filterwarnings("ignore", message=".*httpx.*")
        from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=True)


class Client:
    """The scenario's HTTP client: one bearer token per caller, problem details checked."""

    def __init__(self, http: TestClient) -> None:
        self.http = http

    def call(
        self,
        method: str,
        path: str,
        *,
        as_: str = "ops-token",
        json: Any = None,
        key: str | None = None,
        expect_status: int | Sequence[int] = (200, 201),
    ) -> Any:
        headers = {"Authorization": f"Bearer {as_}", "traceparent": TRACEPARENT}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = self.http.request(method, path, json=json, headers=headers)
        wanted = (expect_status,) if isinstance(expect_status, int) else tuple(expect_status)
        expect(
            response.status_code in wanted,
            f"{method} {path}: HTTP {response.status_code} {response.text[:300]}",
        )
        if response.headers.get("content-type", "").startswith("image/"):
            return response.content
        return response.json()


def money_text(money: dict[str, str]) -> str:
    return f"{grouped(money['amount'])} {money['currency']}"


def grouped(amount: str) -> str:
    """An amount with thousands separators (exact: Decimal, never float)."""
    return f"{Decimal(amount):,}"


def onboard(
    client: Client,
    tokens: TokenTable,
    given: str,
    family: str,
    born: date,
    document: str,
    tier: str,
    step: Callable[[str], None],
) -> str:
    customer = client.call(
        "POST",
        "/v1/customers",
        json={
            "given_name": given,
            "family_name": family,
            "birth_date": born.isoformat(),
            "email": f"{given.lower()}@example.ph",
            "id_document": {
                "type": "national_id",
                "number": document,
                "issuing_country": "PH",
                "expires_on": "2031-06-30",
            },
        },
        key=f"onboard:{document}",
    )
    expect(customer["pii"] == "clear", "the onboarding operator sees what it entered")
    # The customer's own app token: a self-service actor whose id is the customer id.
    tokens.issue(
        f"{given.lower()}-token",
        TENANT,
        Actor(customer["id"], ActorKind.USER, frozenset({CUSTOMER_ROLE})),
    )
    masked = client.call("GET", f"/v1/customers/{customer['id']}", as_="auditor-token")
    expect(
        masked["pii"] == "masked" and masked["given_name"] != given,
        "a caller without identity.pii.read sees masked personal data",
    )
    kyc = client.call(
        "POST", f"/v1/customers/{customer['id']}/kyc", json={"tier": tier}, key=f"kyc:{document}"
    )
    expect(kyc["status"] == "started", "KYC starts")
    step(f"{given} {family[0]}.: customer …{customer['id'][-6:]}, KYC {tier} started")
    return str(customer["id"])


def run(database_url: str, *, deterministic: bool = False, qr_png: Path | None = None) -> Ewallet:
    clock = ManualClock(datetime(2026, 11, 21, 1, 0, tzinfo=UTC)) if deterministic else None
    ids = SequentialIds() if deterministic else None
    services = build(engine=fresh_engine(database_url, "finfactory_ewallet"), clock=clock, ids=ids)
    services.bootstrap_tenant(TENANT)
    tokens = token_table()
    client = Client(in_process_client(create_app(services, tokens)))
    count = iter(range(1, 100))

    def step(text: str) -> None:
        print(f"{next(count):>2}. {text}")

    print(f"FinFactory reference e-wallet on {services.engine.url.render_as_string()}")
    alice = onboard(client, tokens, "Alice", "Reyes", date(1990, 4, 2), "PH-NID-0001", "full", step)
    bob = onboard(client, tokens, "Bob", "Santos", date(1995, 9, 14), "PH-NID-0002", "basic", step)
    maria = onboard(
        client, tokens, "Maria", "Cruz", date(1980, 1, 23), "PH-NID-0003", "basic", step
    )
    for customer in (alice, bob, maria):
        callback = services.kyc_provider.callback(customer)
        result = client.call(
            "POST",
            "/v1/kyc/callbacks",
            as_="kyc-token",
            json=callback.model_dump(mode="json"),
        )
        expect(result["kyc"]["status"] == "verified", "the provider approves")
    step("KYC provider approved all three (callbacks ingested through the webhook)")

    def open_wallet(customer: str, kind: str = "personal") -> str:
        opened = client.call(
            "POST",
            "/v1/wallets",
            json={"customer_id": customer, "currency": "PHP", "kind": kind},
            key=f"wallet:{customer}:{kind}",
        )
        client.call("POST", f"/v1/wallets/{opened['id']}/activate", json={})
        return str(opened["id"])

    wallets = {
        "Alice": open_wallet(alice),
        "Bob": open_wallet(bob),
        "Sari-Sari Store": open_wallet(maria, "merchant"),
    }
    step("wallets opened and activated: Alice, Bob, and Maria's store (merchant)")

    def cash_in(name: str, amount: str, ref: str) -> None:
        client.call(
            "POST",
            f"/v1/wallets/{wallets[name]}/cash-in",
            json={"amount": php(amount), "reference": ref},
            key=ref,
        )

    cash_in("Alice", "20000.00", "CI-ALICE-1")
    cash_in("Bob", "3000.00", "CI-BOB-1")
    step("cash-in: Alice 20,000.00 and Bob 3,000.00 from the bank settlement account")

    store = wallets["Sari-Sari Store"]
    static = client.call(
        "POST",
        f"/v1/wallets/{store}/qr/static",
        json={"merchant_name": "SARI-SARI STORE", "merchant_city": "QUEZON CITY", "mcc": "5411"},
        key="qr:static:store",
    )
    png = client.call("GET", f"/v1/qr/{static['id']}/image?format=png")
    expect(png[:8] == b"\x89PNG\r\n\x1a\n", "the QR image is a PNG")
    if qr_png is not None:
        qr_png.write_bytes(png)
    step(f"static merchant QR generated ({len(static['payload'])} chars, PNG {len(png)} bytes)")
    print(f"    {static['payload']}")
    dynamic = client.call(
        "POST",
        f"/v1/wallets/{store}/qr/dynamic",
        json={
            "merchant_name": "SARI-SARI STORE",
            "merchant_city": "QUEZON CITY",
            "amount": php("250.00"),
            "expires_in_seconds": 900,
        },
        key="qr:dynamic:1",
    )
    step("dynamic QR for 250.00 generated, valid 15 minutes")

    paid = client.call(
        "POST",
        "/v1/qr/payments",
        as_="alice-token",
        json={"payload": dynamic["payload"], "payer_wallet_id": wallets["Alice"]},
        key="pay:alice:dynamic",
    )
    expect(paid["status"] == "confirmed", "Alice's QR payment is confirmed")
    again = client.call(
        "POST",
        "/v1/qr/payments",
        as_="bob-token",
        json={"payload": dynamic["payload"], "payer_wallet_id": wallets["Bob"]},
        key="pay:bob:dynamic",
    )
    expect(again["status"] == "failed", "a dynamic QR is paid once")
    step(f"Alice paid the dynamic QR; Bob's second try failed: {again['failure_reason']}")
    client.call(
        "POST",
        "/v1/qr/payments",
        as_="bob-token",
        json={
            "payload": static["payload"],
            "payer_wallet_id": wallets["Bob"],
            "amount": php("120.00"),
        },
        key="pay:bob:static",
    )
    notice = {"network_reference": "INSTAPAY-20261121-000123", "amount": php("500.00")}
    notice["payload"] = static["payload"]
    first = client.call("POST", "/v1/switch/qr-payments", as_="switch-token", json=notice)
    dup = client.call("POST", "/v1/switch/qr-payments", as_="switch-token", json=notice)
    expect(first["id"] == dup["id"], "a repeated switch notification has no second effect")
    step("Bob paid the static QR 120.00; an InstaPay payer paid it 500.00 (notified twice)")

    client.call(
        "POST",
        "/v1/transfers",
        as_="alice-token",
        json={
            "from_wallet_id": wallets["Alice"],
            "to_wallet_id": wallets["Bob"],
            "amount": php("1500.00"),
            "reference": "TR-ALICE-BOB-1",
        },
        key="TR-ALICE-BOB-1",
    )
    step("Alice sent Bob 1,500.00 (with her own customer token)")

    refusals = []
    not_hers = client.call(
        "POST",
        "/v1/transfers",
        as_="bob-token",
        json={
            "from_wallet_id": wallets["Alice"],
            "to_wallet_id": wallets["Bob"],
            "amount": php("100.00"),
            "reference": "TR-BOB-STEALS-1",
        },
        expect_status=403,
    )
    refusals.append(["Bob spends from Alice's wallet", not_hers["code"], not_hers["detail"]])
    too_big = client.call(
        "POST",
        "/v1/transfers",
        as_="bob-token",
        json={
            "from_wallet_id": wallets["Bob"],
            "to_wallet_id": wallets["Alice"],
            "amount": php("6000.00"),
            "reference": "TR-BOB-ALICE-1",
        },
        key="TR-BOB-ALICE-1",
        expect_status=422,
    )
    refusals.append(["Bob -> Alice 6,000.00", too_big["code"], too_big["detail"]])
    for n in range(2, 5):
        cash_in("Bob", "5000.00", f"CI-BOB-{n}")
    over_daily = client.call(
        "POST",
        f"/v1/wallets/{wallets['Bob']}/cash-in",
        json={"amount": php("5000.00"), "reference": "CI-BOB-5"},
        key="CI-BOB-5",
        expect_status=422,
    )
    refusals.append(["4th cash-in Bob 5,000.00", over_daily["code"], over_daily["detail"]])
    expect(
        too_big["code"] == over_daily["code"] == "wallet.limit_exceeded",
        "limits refuse with wallet.limit_exceeded",
    )
    step("Bob cashed in 3 x 5,000.00; three refusals (nothing moved):")
    print_table("Refused", ["request", "code", "detail"], refusals)

    report(services, client, wallets)
    return services


def report(services: Ewallet, client: Client, wallets: dict[str, str]) -> None:
    rows = []
    for name, wallet_id in wallets.items():
        view = client.call("GET", f"/v1/wallets/{wallet_id}")
        rows.append([name, view["kind"], view["status"], grouped(view["posted"]["amount"])])
    print_table("Wallet balances (PHP)", ["wallet", "kind", "status", "balance"], rows)
    expected = {"Alice": "18250.00", "Bob": "19380.00", "Sari-Sari Store": "870.00"}
    got = {r[0]: r[3].replace(",", "") for r in rows}
    expect(got == expected, f"balances {got} == {expected}")

    history = client.call("GET", f"/v1/wallets/{wallets['Bob']}/history")
    print_table(
        "Bob's history",
        ["kind", "reference", "amount"],
        [[m["kind"], m["reference"], money_text(m["amount"])] for m in history],
    )

    page = client.call("GET", "/v1/events?limit=500")
    events = page["events"]
    counts = Counter(e["event_type"] for e in events)
    print_table(
        f"Events emitted ({len(events)} in the outbox)",
        ["event type", "count"],
        [[name, str(n)] for name, n in sorted(counts.items())],
    )
    for wanted in (
        "customer.created",
        "kyc.started",
        "kyc.verified",
        "wallet.created",
        "wallet.activated",
        "qr.generated",
        "qr.payment.received",
        "qr.payment.confirmed",
        "qr.payment.failed",
        "journal.posted",
    ):
        expect(counts[wanted] > 0, f"{wanted} was emitted")
    # balance.updated follows every journal (one per account it touches); the counts above
    # show them.
    print_table(
        "Event log (without balance.updated)",
        ["#", "event type", "aggregate", "what"],
        [
            [str(e["position"]), e["event_type"], e["aggregate_type"], summary(e["payload"])]
            for e in events
            if e["event_type"] != "balance.updated"
        ],
    )
    broker = InMemoryBroker()
    relay = OutboxRelay(services.storage, InMemoryPublisher(broker, "ewallet-demo"))
    relayed = asyncio.run(relay.run_once())
    expect(relayed == len(events), "the relay publishes every committed event")
    expect(len(broker.unique_events()) == len(events), "each event reaches the broker")
    print(f"\nrelay: {relayed} events published to the broker, in per-aggregate order")
    verification = AuditTrail(services.storage, services.policy, services.clock, services.ids)
    result = verification.verify(
        services.operator(TENANT).delegate(
            Actor("ewallet-auditor", ActorKind.USER, frozenset({"auditor"}))
        )
    )
    expect(result.ok, "the audit chain verifies")
    print(f"\naudit chain: {result.records_checked} records, verified intact")


SUMMARY_FIELDS = (
    "code",
    "tier",
    "kind",
    "initiation",
    "channel",
    "reason",
    "amount",
    "reference",
    "network_reference",
)


def summary(payload: dict[str, Any]) -> str:
    """A short line of an event's telling fields (no payload carries personal data)."""
    parts = []
    for key in SUMMARY_FIELDS:
        value = payload.get(key)
        if isinstance(value, dict) and "amount" in value:
            parts.append(money_text(value))
        elif isinstance(value, str | int) and value != "":
            text = str(value)
            parts.append(f"{key} {text if len(text) <= 30 else text[:29] + '…'}")
    return ", ".join(parts)
