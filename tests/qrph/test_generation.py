"""Static and dynamic QR codes: what is issued, what the payload says, what is refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from finfactory.kernel.errors import IdempotencyConflict, ValidationError
from finfactory.kernel.money import Money
from finfactory.primitives.qrph import (
    AcquirerNotConfigured,
    AmountAboveMaximum,
    CurrencyNotSupported,
    DuplicateReferenceLabel,
    Initiation,
    InvalidExpiry,
    MerchantQrSpec,
    QrKind,
    QrNotFound,
    QrStatus,
    StaticQrConflict,
    read_merchant_qr,
)
from tests.qrph.conftest import ACQUIRER, TENANT, QrEnv, actor_ctx, configure, dynamic_qr, php
from tests.qrph.conftest import static_qr as static_command


def test_static_qr_payload_decodes_back_to_its_data(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_command(postal_code="1200"))
    assert (qr.kind, qr.initiation, qr.status) == (QrKind.P2M, Initiation.STATIC, QrStatus.ACTIVE)
    assert qr.amount is None
    assert qr.expires_at is None
    assert qr.reference_label is None
    # The payload carries the merchant's opaque account number, not its wallet id.
    assert re.fullmatch("[0-9]{16}", qr.merchant_account)
    assert "merchant-1" not in qr.payload
    assert read_merchant_qr(qr.payload) == MerchantQrSpec(
        kind=QrKind.P2M,
        initiation=Initiation.STATIC,
        acquirer_id=ACQUIRER,
        merchant_account=qr.merchant_account,
        merchant_name="Sari-Sari Store",
        merchant_city="Makati",
        mcc="5411",
        currency="PHP",
        postal_code="1200",
    )
    assert env.service.get_qr(env.ctx, qr.id) == qr
    assert env.events() == [
        (
            "qr.generated",
            {
                "qr_id": qr.id,
                "merchant_wallet_id": "merchant-1",
                "kind": "p2m",
                "initiation": "static",
                "amount": None,
                "reference_label": None,
                "expires_at": None,
            },
        )
    ]


def test_a_merchant_has_one_static_qr(env: QrEnv) -> None:
    first = env.service.generate_static_qr(env.ctx, static_command())
    again = env.service.generate_static_qr(env.ctx, static_command())
    # Omitted optional details match whatever the code has.
    without_mcc = env.service.generate_static_qr(env.ctx, static_command(mcc=None))
    assert again == first
    assert without_mcc == first
    assert env.event_types() == ["qr.generated"]
    with pytest.raises(StaticQrConflict) as err:
        env.service.generate_static_qr(env.ctx, static_command(merchant_name="Other Name"))
    assert err.value.details["qr_id"] == first.id
    with pytest.raises(StaticQrConflict):
        env.service.generate_static_qr(env.ctx, static_command(kind="p2p"))
    other = env.service.generate_static_qr(env.ctx, static_command("merchant-2"))
    assert other.id != first.id
    outcomes = [r.outcome.value for r in env.audit()]
    assert outcomes == ["succeeded", "succeeded", "succeeded", "rejected", "rejected", "succeeded"]


def test_p2p_static_qr(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_command("person-1", kind="p2p"))
    decoded = read_merchant_qr(qr.payload)
    assert decoded.kind is QrKind.P2P
    assert decoded.merchant_account == qr.merchant_account
    assert "person-1" not in qr.payload


def test_dynamic_qr_carries_amount_label_and_default_expiry(env: QrEnv) -> None:
    now = env.clock.now()
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr("250.50"))
    assert qr.initiation is Initiation.DYNAMIC
    assert qr.amount == php("250.50")
    assert qr.expires_at == now + timedelta(seconds=900)
    assert qr.reference_label is not None
    assert len(qr.reference_label) == 25
    decoded = read_merchant_qr(qr.payload)
    assert decoded.initiation is Initiation.DYNAMIC
    assert (decoded.amount_minor, decoded.currency) == (25050, "PHP")
    assert decoded.reference_label == qr.reference_label
    assert decoded.merchant_account == qr.merchant_account
    assert decoded.mcc == "0000"
    [(name, payload)] = env.events()
    assert name == "qr.generated"
    assert payload["amount"] == {"amount": "250.50", "currency": "PHP"}
    assert payload["expires_at"] == qr.expires_at.isoformat()
    assert payload["reference_label"] == qr.reference_label


def test_dynamic_qr_expiry_choices(env: QrEnv) -> None:
    now = env.clock.now()
    short = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_in_seconds=60))
    assert short.expires_at == now + timedelta(seconds=60)
    at = now + timedelta(hours=2)
    fixed = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_at=at))
    assert fixed.expires_at == at
    with pytest.raises(InvalidExpiry):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_at=now - timedelta(1)))
    with pytest.raises(InvalidExpiry):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_in_seconds=86_401))
    with pytest.raises(InvalidExpiry):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_at=now + timedelta(days=2)))
    with pytest.raises(ValidationError):
        dynamic_qr(expires_in_seconds=60, expires_at=at)
    with pytest.raises(ValidationError):
        dynamic_qr(expires_at=datetime(2026, 1, 1, 12))  # naive


def test_dynamic_qr_status_turns_expired(env: QrEnv) -> None:
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_in_seconds=60))
    env.clock.advance(timedelta(seconds=59))
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.ACTIVE
    env.clock.advance(timedelta(seconds=1))
    assert env.service.get_qr(env.ctx, qr.id).status is QrStatus.EXPIRED


def test_dynamic_qr_refusals(env: QrEnv) -> None:
    with pytest.raises(CurrencyNotSupported):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr(Money("5.00", "USD")))
    with pytest.raises(AmountAboveMaximum):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr("50000.01"))
    env.service.generate_dynamic_qr(env.ctx, dynamic_qr("50000.00", reference_label="INV-1"))
    with pytest.raises(DuplicateReferenceLabel):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr(reference_label="INV-1"))
    # Labels are per merchant.
    env.service.generate_dynamic_qr(
        env.ctx, dynamic_qr(wallet="merchant-2", reference_label="INV-1")
    )
    with pytest.raises(ValidationError):
        dynamic_qr("0.00")
    with pytest.raises(ValidationError):
        dynamic_qr("1.005")
    assert env.event_types() == ["qr.generated", "qr.generated"]


def test_settings_drive_acquirer_mcc_and_limits(env: QrEnv) -> None:
    other = actor_ctx("qrph.operator", tenant="shop-b")
    with pytest.raises(AcquirerNotConfigured):
        env.service.generate_static_qr(other, static_command())
    named = env.service.generate_static_qr(other, static_command(acquirer_id="OTHRPHM2"))
    assert read_merchant_qr(named.payload).acquirer_id == "OTHRPHM2"
    configure(
        env.storage,
        env.clock,
        "shop-b",
        default_mcc="5812",
        max_amount={"amount": "100.00", "currency": "PHP"},
        default_dynamic_ttl_seconds=30,
    )
    qr = env.service.generate_dynamic_qr(other, dynamic_qr("100.00", mcc=None))
    assert qr.mcc == "5812"
    assert qr.acquirer_id == ACQUIRER
    assert qr.expires_at == env.clock.now() + timedelta(seconds=30)
    with pytest.raises(AmountAboveMaximum):
        env.service.generate_dynamic_qr(other, dynamic_qr("100.01"))


def test_invalid_merchant_details_are_refused_before_anything_is_written(env: QrEnv) -> None:
    for bad in (
        {"merchant_name": "A" * 26},
        {"merchant_city": "Quezon City Metro"},
        {"merchant_name": "Café"},  # EMVCo "ans": printable ASCII only
        {"mcc": "541"},
        {"acquirer_id": "not-a-bic"},
    ):
        with pytest.raises(ValidationError):
            static_command(**bad)
    assert env.event_types() == []


def test_idempotent_generation(env: QrEnv) -> None:
    first = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(), idempotency_key="k-1")
    replay = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(), idempotency_key="k-1")
    assert replay == first
    with pytest.raises(IdempotencyConflict):
        env.service.generate_dynamic_qr(env.ctx, dynamic_qr("1.00"), idempotency_key="k-1")
    assert env.event_types() == ["qr.generated"]


def test_qr_images(env: QrEnv) -> None:
    qr = env.service.generate_static_qr(env.ctx, static_command())
    png = env.service.get_qr_image(env.ctx, qr.id)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = env.service.get_qr_image(env.ctx, qr.id, "svg")
    assert "<svg" in svg
    with pytest.raises(ValidationError):
        env.service.get_qr_image(env.ctx, qr.id, "gif")  # type: ignore[call-overload]
    with pytest.raises(QrNotFound):
        env.service.get_qr_image(env.ctx, "missing")
    small = env.service.get_qr_image(env.ctx, qr.id, scale=1, border=0)
    assert small.startswith(b"\x89PNG")
    assert len(small) < len(png)
    for bad in ({"scale": 0}, {"border": -1}):
        with pytest.raises(ValidationError):
            env.service.get_qr_image(env.ctx, qr.id, **bad)  # type: ignore[call-overload]


def test_generated_events_carry_no_merchant_name(env: QrEnv) -> None:
    env.service.generate_static_qr(env.ctx, static_command("person-1", kind="p2p"))
    env.service.generate_dynamic_qr(env.ctx, dynamic_qr())
    for _, payload in env.events():
        assert "Sari-Sari" not in str(payload)
    for record in env.audit(TENANT):
        assert "Sari-Sari" not in str(record.summary)


def test_expires_at_is_kept_in_utc(env: QrEnv) -> None:
    from zoneinfo import ZoneInfo

    at = datetime(2026, 1, 1, 9, 30, tzinfo=ZoneInfo("Asia/Manila"))
    qr = env.service.generate_dynamic_qr(env.ctx, dynamic_qr(expires_at=at))
    assert qr.expires_at == at
    assert qr.expires_at.tzinfo is UTC
    assert env.service.get_qr(env.ctx, qr.id).expires_at == at
