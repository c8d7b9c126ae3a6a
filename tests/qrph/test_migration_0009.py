"""Migration 0009 on a database that already has QR codes: the merchants keep the account
their printed codes carry, and the payers' names are gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from finfactory.adapters.sqlalchemy.migrate import migrate
from finfactory.adapters.sqlalchemy.storage import SqlStorage, create_engine
from finfactory.kernel.authz import default_policy
from finfactory.primitives.qrph import (
    Initiation,
    MerchantQrSpec,
    PaymentStatus,
    QrKind,
    QrPaymentService,
    SwitchPayment,
    build_payload,
)
from finfactory.testing import ManualClock, SequentialIds
from finfactory.testing.qrph import RecordingMerchantSettlement
from tests.conftest import PG_URL, _ensure_pg_database
from tests.qrph.conftest import ACQUIRER, TENANT, actor_ctx, configure, dynamic_qr, php

LEGACY_WALLET = "wallet-legacy-1"
AT = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def old_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        url = sa.make_url(PG_URL)
        url = url.set(database=f"{url.database}_0009")
        _ensure_pg_database(url.render_as_string(hide_password=False))
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    migrate(engine, "0008_qrph")
    yield engine
    engine.dispose()


def _legacy_rows(engine: sa.Engine) -> str:
    """A static code of the 0008 era (its account is the wallet id) and a payment to it
    that kept the payer's name."""
    spec = MerchantQrSpec(
        kind=QrKind.P2M,
        initiation=Initiation.STATIC,
        acquirer_id=ACQUIRER,
        merchant_account=LEGACY_WALLET,
        merchant_name="Old Shop",
        merchant_city="Makati",
    )
    payload = build_payload(spec)
    code = {
        "id": "qr-legacy",
        "tenant_id": TENANT,
        "merchant_wallet_id": LEGACY_WALLET,
        "kind": "p2m",
        "initiation": "static",
        "status": "active",
        "payload": payload,
        "acquirer_id": ACQUIRER,
        "merchant_account": LEGACY_WALLET,
        "merchant_name": "Old Shop",
        "merchant_city": "Makati",
        "mcc": "0000",
        "currency": "PHP",
        "created_at": AT,
    }
    payment = {
        "id": "pay-legacy",
        "tenant_id": TENANT,
        "qr_id": "qr-legacy",
        "merchant_wallet_id": LEGACY_WALLET,
        "initiation": "static",
        "network_reference": "OLD-1",
        "channel": "switch",
        "amount": 500,
        "currency": "PHP",
        "payer_name": "Maria Clara",
        "status": "confirmed",
        "journal_id": "j-1",
        "received_at": AT,
        "resolved_at": AT,
        "version": 2,
    }
    with engine.begin() as conn:
        meta = sa.MetaData()
        meta.reflect(conn, only=["qrph_codes", "qrph_payments"])
        conn.execute(meta.tables["qrph_codes"].insert(), [code])
        conn.execute(meta.tables["qrph_payments"].insert(), [payment])
    return payload


def test_existing_merchants_keep_their_account(old_engine: sa.Engine) -> None:
    payload = _legacy_rows(old_engine)
    migrate(old_engine)
    with old_engine.connect() as conn:
        accounts = conn.execute(sa.text("SELECT * FROM qrph_merchant_accounts")).all()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("qrph_payments")}
        text = str(conn.execute(sa.text("SELECT * FROM qrph_payments")).all())
    assert [(a.tenant_id, a.merchant_wallet_id, a.account_number) for a in accounts] == [
        (TENANT, LEGACY_WALLET, LEGACY_WALLET)
    ]
    assert "payer_name" not in columns
    assert "Maria" not in text

    storage = SqlStorage(old_engine)
    clock = ManualClock()
    service = QrPaymentService(
        storage, default_policy(), clock, SequentialIds(), RecordingMerchantSettlement()
    )
    configure(storage, clock)
    ctx = actor_ctx("qrph.operator")
    # The printed code is still paid, and the merchant's new codes carry the same account.
    note = SwitchPayment(network_reference="NEW-1", payload=payload, amount=php("2.00"))
    paid = service.receive_switch_payment(ctx, note)
    assert (paid.status, paid.qr_id) == (PaymentStatus.CONFIRMED, "qr-legacy")
    assert service.get_payment(ctx, "pay-legacy").status is PaymentStatus.CONFIRMED
    fresh = service.generate_dynamic_qr(ctx, dynamic_qr(wallet=LEGACY_WALLET))
    assert fresh.merchant_account == LEGACY_WALLET
