"""The reference e-wallet on a fresh SQLite file, with a verified customer set-up helper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from examples.ewallet.api import create_app
from examples.ewallet.composition import Ewallet, build
from examples.ewallet.scenario import TENANT, in_process_client, token_table

if TYPE_CHECKING:
    from starlette.testclient import TestClient


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Ewallet]:
    app = build(f"sqlite:///{tmp_path / 'ewallet.db'}")
    app.bootstrap_tenant(TENANT)
    yield app
    app.engine.dispose()


@pytest.fixture
def http(services: Ewallet) -> TestClient:
    return in_process_client(create_app(services, token_table()))


def auth(token: str = "ops-token", key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def php(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "PHP"}


def verified_wallet(
    http: TestClient, services: Ewallet, name: str, *, tier: str = "basic", kind: str = "personal"
) -> dict[str, Any]:
    """Onboard ``name``, pass KYC at ``tier`` and open an active PHP wallet."""
    customer = http.post(
        "/v1/customers",
        json={
            "given_name": name,
            "family_name": "Tester",
            "birth_date": "1991-02-03",
            "id_document": {
                "type": "passport",
                "number": f"P{name.upper()}1",
                "issuing_country": "PH",
            },
        },
        headers=auth(),
    ).json()
    http.post(f"/v1/customers/{customer['id']}/kyc", json={"tier": tier}, headers=auth())
    callback = services.kyc_provider.callback(customer["id"]).model_dump(mode="json")
    verdict = http.post("/v1/kyc/callbacks", json=callback, headers=auth("kyc-token")).json()
    assert verdict["kyc"]["status"] == "verified"
    wallet = http.post(
        "/v1/wallets",
        json={"customer_id": customer["id"], "currency": "PHP", "kind": kind},
        headers=auth(),
    ).json()
    activated = http.post(f"/v1/wallets/{wallet['id']}/activate", json={}, headers=auth())
    assert activated.status_code == 200, activated.text
    return dict(activated.json())
