"""build_payload / read_merchant_qr: the QR Ph layout we write and the spec validation."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from finfactory.primitives.qrph.emv import (
    Initiation,
    MerchantQrSpec,
    QrKind,
    QrSpecInvalid,
    build_payload,
    decode,
    read_merchant_qr,
)
from tests.qrph_codec.helpers import (
    CITY,
    COUNTRY,
    CURRENCY,
    MCC,
    NAME,
    P2M_ACCOUNT,
    P2P_ACCOUNT,
    PFI,
    STATIC,
    seal,
    tlv,
)

P2M_STATIC = MerchantQrSpec(
    kind=QrKind.P2M,
    initiation=Initiation.STATIC,
    acquirer_id="GXCHPHM2XXX",
    merchant_account="217020000000602433060",
    merchant_name="Gong Cha",
    merchant_city="Makati",
    mcc="5812",
    postal_code="1224",
    reference_label="INV-1",
)
P2P_DYNAMIC = MerchantQrSpec(
    kind=QrKind.P2P,
    initiation=Initiation.DYNAMIC,
    acquirer_id="PAEYPHM2XXX",
    merchant_account="985889386153",
    merchant_name="ENG-19818-ged",
    merchant_city="Manila",
    mcc="6016",
    amount_minor=12345,
)


def test_p2m_static_layout() -> None:
    account = tlv("00", "ph.ppmi.p2m") + tlv("01", "GXCHPHM2XXX")
    account += tlv("03", "217020000000602433060")
    expected = seal(
        tlv("00", "01")
        + tlv("01", "11")
        + tlv("28", account)
        + tlv("52", "5812")
        + tlv("53", "608")
        + tlv("58", "PH")
        + tlv("59", "Gong Cha")
        + tlv("60", "Makati")
        + tlv("61", "1224")
        + tlv("62", tlv("00", "ph.ppmi.qrph") + tlv("05", "INV-1"))
    )
    assert build_payload(P2M_STATIC) == expected


def test_p2p_dynamic_layout_matches_the_published_p2p_samples() -> None:
    account = tlv("00", "com.p2pqrpay") + tlv("01", "PAEYPHM2XXX") + tlv("02", "99964403")
    account += tlv("04", "985889386153")
    expected = seal(
        tlv("00", "01")
        + tlv("01", "12")
        + tlv("27", account)
        + tlv("52", "6016")
        + tlv("53", "608")
        + tlv("54", "123.45")
        + tlv("58", "PH")
        + tlv("59", "ENG-19818-ged")
        + tlv("60", "Manila")
    )
    assert build_payload(P2P_DYNAMIC) == expected
    # The PayMongo sample starts exactly like this up to its merchant mobile number (05).
    assert expected.startswith("00020101021227")


def test_p2p_reference_label_goes_in_tag_62_with_the_p2p_guid() -> None:
    payload = build_payload(attrs.evolve(P2P_DYNAMIC, reference_label="test12"))
    assert decode(payload).additional_data == {"00": "com.p2pqrpay", "05": "test12"}


@pytest.mark.parametrize(
    ("currency", "minor", "written"),
    [("PHP", 12345, "123.45"), ("PHP", 5, "0.05"), ("JPY", 100, "100"), ("KWD", 1234, "1.234")],
)
def test_amounts_use_the_currency_exponent(currency: str, minor: int, written: str) -> None:
    spec = attrs.evolve(P2P_DYNAMIC, currency=currency, amount_minor=minor)
    payload = build_payload(spec)
    assert decode(payload).amount == written
    assert read_merchant_qr(payload) == spec


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"merchant_name": "x" * 26}, "merchant_name"),
        ({"merchant_name": ""}, "merchant_name"),
        ({"merchant_name": "Café Niño"}, "merchant_name"),  # EMVCo 'ans' is ASCII
        ({"merchant_name": "tab\there"}, "merchant_name"),
        ({"merchant_city": "x" * 16}, "merchant_city"),
        ({"merchant_account": "x" * 51}, "merchant_account"),
        ({"acquirer_id": "GXCH"}, "acquirer_id"),
        ({"acquirer_id": "gxchphm2xxx"}, "acquirer_id"),
        ({"mcc": "12a4"}, "mcc"),
        ({"mcc": "123"}, "mcc"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "php"}, "currency"),
        ({"amount_minor": 100}, "amount_minor"),  # static QR with an amount
        ({"reference_label": "x" * 26}, "reference_label"),
        ({"postal_code": "x" * 11}, "postal_code"),
        ({"kind": "p2m"}, "kind"),
    ],
)
def test_invalid_static_spec(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(QrSpecInvalid) as caught:
        build_payload(attrs.evolve(P2M_STATIC, **changes))
    assert caught.value.field == field
    assert caught.value.code == "qrph.invalid_qr_spec"


@pytest.mark.parametrize("amount", [None, 0, -5, True, 10**12 * 10, "100"])
def test_invalid_dynamic_amount(amount: object) -> None:
    with pytest.raises(QrSpecInvalid) as caught:
        build_payload(attrs.evolve(P2P_DYNAMIC, amount_minor=amount))  # type: ignore[arg-type]
    assert caught.value.field == "amount_minor"


def test_a_static_code_with_an_amount_is_read_but_not_built() -> None:
    """EMVCo allows it (its own sample does it); we read it faithfully, we never write it."""
    body = PFI + STATIC + tlv("28", P2M_ACCOUNT) + MCC + CURRENCY + tlv("54", "50.00")
    spec = read_merchant_qr(seal(body + COUNTRY + NAME + CITY))
    assert (spec.initiation, spec.amount_minor) == (Initiation.STATIC, 5000)
    with pytest.raises(QrSpecInvalid):
        build_payload(spec)


def test_the_first_qrph_template_wins_and_guids_ignore_case() -> None:
    foreign = tlv("26", tlv("00", "SG.PAYNOW") + tlv("01", "2"))
    p2p = tlv("30", P2P_ACCOUNT.replace("com.p2pqrpay", "COM.P2PQRPAY"))
    p2m = tlv("45", P2M_ACCOUNT)
    payload = seal(PFI + STATIC + foreign + p2p + p2m + MCC + CURRENCY + COUNTRY + NAME + CITY)
    qr = decode(payload)
    assert [(a.tag, a.kind) for a in qr.merchant_accounts] == [
        ("26", None),
        ("30", QrKind.P2P),
        ("45", QrKind.P2M),
    ]
    spec = read_merchant_qr(payload)
    assert (spec.kind, spec.merchant_account) == (QrKind.P2P, "985889386153")
