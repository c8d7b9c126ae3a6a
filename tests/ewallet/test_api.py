"""End-to-end through the reference app's HTTP API: the flows and the error contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from examples.ewallet.composition import Ewallet
from examples.ewallet.http import CUSTOMER_ROLE
from examples.ewallet.scenario import TENANT
from finfactory.kernel.context import Actor, ActorKind
from tests.ewallet.conftest import auth, php, verified_wallet

if TYPE_CHECKING:
    from starlette.testclient import TestClient

PROBLEM = "application/problem+json"


def test_onboard_fund_pay_qr_and_transfer(http: TestClient, services: Ewallet) -> None:
    alice = verified_wallet(http, services, "Alice", tier="full")
    bob = verified_wallet(http, services, "Bob")
    shop = verified_wallet(http, services, "Shop", kind="merchant")

    funded = http.post(
        f"/v1/wallets/{alice['id']}/cash-in",
        json={"amount": php("1000.00"), "reference": "CI-1"},
        headers=auth(key="CI-1"),
    )
    assert funded.status_code == 201, funded.text
    qr = http.post(
        f"/v1/wallets/{shop['id']}/qr/dynamic",
        json={"merchant_name": "SHOP", "merchant_city": "MANILA", "amount": php("99.50")},
        headers=auth(),
    ).json()
    image = http.get(f"/v1/qr/{qr['id']}/image", headers=auth())
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    svg = http.get(f"/v1/qr/{qr['id']}/image?format=svg", headers=auth())
    assert svg.headers["content-type"].startswith("image/svg+xml")

    paid = http.post(
        "/v1/qr/payments",
        json={"payload": qr["payload"], "payer_wallet_id": alice["id"]},
        headers=auth(key="PAY-1"),
    ).json()
    assert paid["status"] == "confirmed"
    moved = http.post(
        "/v1/transfers",
        json={
            "from_wallet_id": alice["id"],
            "to_wallet_id": bob["id"],
            "amount": php("400.50"),
            "reference": "T-1",
        },
        headers=auth(),
    )
    assert moved.status_code == 201, moved.text

    balances = {
        name: http.get(f"/v1/wallets/{w['id']}", headers=auth()).json()["posted"]
        for name, w in {"alice": alice, "bob": bob, "shop": shop}.items()
    }
    assert balances == {"alice": php("500.00"), "bob": php("400.50"), "shop": php("99.50")}
    history = http.get(f"/v1/wallets/{alice['id']}/history", headers=auth()).json()
    assert [m["kind"] for m in history] == ["transfer", "merchant_payment", "cash_in"]
    payments = http.get(f"/v1/qr/{qr['id']}/payments", headers=auth()).json()["payments"]
    assert [p["status"] for p in payments] == ["confirmed"]

    events = http.get("/v1/events?limit=500", headers=auth()).json()["events"]
    types = {e["event_type"] for e in events}
    assert {"customer.created", "kyc.verified", "wallet.activated", "qr.payment.confirmed"} <= types
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)


def test_switch_notification_is_idempotent_on_network_reference(
    http: TestClient, services: Ewallet
) -> None:
    shop = verified_wallet(http, services, "Shop", kind="merchant")
    qr = http.post(
        f"/v1/wallets/{shop['id']}/qr/static",
        json={"merchant_name": "SHOP", "merchant_city": "MANILA"},
        headers=auth(),
    ).json()
    notice = {"network_reference": "NET-1", "amount": php("75.00"), "qr_id": qr["id"]}
    first = http.post("/v1/switch/qr-payments", json=notice, headers=auth("switch-token"))
    again = http.post("/v1/switch/qr-payments", json=notice, headers=auth("switch-token"))
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    wallet = http.get(f"/v1/wallets/{shop['id']}", headers=auth()).json()
    assert wallet["posted"] == php("75.00")
    # The switch may only notify: it cannot move money out of wallets.
    denied = http.post(
        f"/v1/wallets/{shop['id']}/cash-out",
        json={"amount": php("1.00"), "reference": "CO-1"},
        headers=auth("switch-token"),
    )
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"


def test_errors_are_problem_details_with_stable_codes(http: TestClient, services: Ewallet) -> None:
    bob = verified_wallet(http, services, "Bob")

    missing_token = http.get(f"/v1/wallets/{bob['id']}")
    assert missing_token.status_code == 401
    assert missing_token.headers["content-type"] == PROBLEM
    assert missing_token.json()["code"] == "ewallet.unauthenticated"

    unknown = http.get("/v1/wallets/nope", headers=auth())
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "wallet.not_found"

    bad_money = http.post(
        f"/v1/wallets/{bob['id']}/cash-in",
        json={"amount": {"amount": "1.005", "currency": "PHP"}, "reference": "X"},
        headers=auth(),
    )
    assert bad_money.status_code == 400
    body = bad_money.json()
    assert body["code"] == "invalid_money"
    assert body["field"] == "amount"

    first = http.post(
        f"/v1/wallets/{bob['id']}/cash-in",
        json={"amount": php("10.00"), "reference": "CI-B"},
        headers=auth(key="k-1"),
    )
    replay = http.post(
        f"/v1/wallets/{bob['id']}/cash-in",
        json={"amount": php("10.00"), "reference": "CI-B"},
        headers=auth(key="k-1"),
    )
    assert replay.json() == first.json()
    conflict = http.post(
        f"/v1/wallets/{bob['id']}/cash-in",
        json={"amount": php("11.00"), "reference": "CI-B"},
        headers=auth(key="k-1"),
    )
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"

    over = http.post(
        f"/v1/wallets/{bob['id']}/cash-in",
        json={"amount": php("5000.01"), "reference": "CI-BIG"},
        headers=auth(),
    )
    assert over.status_code == 422
    assert over.headers["content-type"] == PROBLEM
    assert over.json()["code"] == "wallet.limit_exceeded"
    after = http.get(f"/v1/wallets/{bob['id']}", headers=auth()).json()
    assert after["posted"] == php("10.00")


def test_personal_data_is_masked_for_callers_without_pii_permission(
    http: TestClient, services: Ewallet
) -> None:
    customer = http.post(
        "/v1/customers",
        json={"given_name": "Carmela", "family_name": "Dizon", "birth_date": "1988-08-08"},
        headers=auth(),
    ).json()
    seen = http.get(f"/v1/customers/{customer['id']}", headers=auth("auditor-token")).json()
    assert seen["pii"] == "masked"
    assert "Carmela" not in str(seen)
    events = http.get("/v1/events", headers=auth()).json()["events"]
    assert "Carmela" not in str(events)
    assert "Dizon" not in str(events)


def test_customers_see_and_spend_only_their_own_wallets(
    http: TestClient, services: Ewallet
) -> None:
    alice = verified_wallet(http, services, "Alice")
    bob = verified_wallet(http, services, "Bob")
    tokens = http.app.state.tokens  # type: ignore[attr-defined]
    for name, wallet in (("alice", alice), ("bob", bob)):
        actor = Actor(wallet["customer_id"], ActorKind.USER, frozenset({CUSTOMER_ROLE}))
        tokens.issue(f"{name}-token", TENANT, actor)
    http.post(
        f"/v1/wallets/{alice['id']}/cash-in",
        json={"amount": php("50.00"), "reference": "CI-A"},
        headers=auth(),
    )

    def transfer(token: str, source: str, target: str, ref: str) -> Any:
        return http.post(
            "/v1/transfers",
            json={
                "from_wallet_id": source,
                "to_wallet_id": target,
                "amount": php("5.00"),
                "reference": ref,
            },
            headers=auth(token),
        )

    assert transfer("alice-token", alice["id"], bob["id"], "T-A").status_code == 201
    stolen = transfer("bob-token", alice["id"], bob["id"], "T-B")
    assert stolen.status_code == 403
    assert stolen.json()["code"] == "permission_denied"
    assert http.get(f"/v1/wallets/{alice['id']}", headers=auth("bob-token")).status_code == 403
    own = http.get(f"/v1/wallets/{bob['id']}", headers=auth("bob-token"))
    assert own.json()["posted"] == php("5.00")
    # Customers cannot move money in or out through the EMI's settlement accounts.
    cash_in = http.post(
        f"/v1/wallets/{bob['id']}/cash-in",
        json={"amount": php("1.00"), "reference": "CI-SELF"},
        headers=auth("bob-token"),
    )
    assert cash_in.status_code == 403
    after = http.get(f"/v1/wallets/{alice['id']}", headers=auth()).json()
    assert after["posted"] == php("45.00")


def test_reading_events_needs_permission_and_a_denial_is_audited(
    http: TestClient, services: Ewallet
) -> None:
    denied = http.get("/v1/events", headers=auth("switch-token"))
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"
    with services.storage.read() as uow:
        records = list(uow.kernel.audit_records(TENANT))
    assert (records[-1].actor_id, records[-1].action, records[-1].outcome.value) == (
        "qrph-switch",
        "events.read",
        "denied",
    )
