"""EMVCo MPM presence rules beyond "mandatory tags": the optional point of initiation, the
tip or convenience indicator and its fee, and the language template."""

from __future__ import annotations

import pytest

from finfactory.primitives.qrph.emv import (
    QrInvalidValue,
    QrMissingTag,
    decode,
    encode,
    read_merchant_qr,
)
from tests.qrph_codec.helpers import COUNTRY, STATIC, STATIC_BODY, seal, tlv


def test_point_of_initiation_is_optional_in_emvco_but_required_by_qr_ph() -> None:
    body = STATIC_BODY.replace(STATIC, "")
    payload = seal(body)
    decoded = decode(payload)
    assert decoded.get("01") is None
    assert encode(decoded) == payload
    with pytest.raises(QrMissingTag) as err:
        read_merchant_qr(payload)
    assert (err.value.tag_path, err.value.position) == ("01", 0)
    with pytest.raises(QrMissingTag):
        _ = decoded.initiation


@pytest.mark.parametrize(
    ("tip", "extra"),
    [
        ("01", ""),
        ("02", tlv("56", "15.00")),
        ("03", tlv("57", "2.5")),
        ("01", tlv("56", "500") + tlv("57", "5")),  # the EMVCo sample: fees without use
    ],
)
def test_tip_indicator_with_what_it_needs(tip: str, extra: str) -> None:
    body = STATIC_BODY.replace(COUNTRY, tlv("55", tip) + extra + COUNTRY)
    payload = seal(body)
    assert decode(payload).tip_indicator == tip
    assert encode(decode(payload)) == payload


@pytest.mark.parametrize(("tip", "fee_tag"), [("02", "56"), ("03", "57")])
def test_tip_indicator_without_its_fee(tip: str, fee_tag: str) -> None:
    piece = tlv("55", tip)
    body = STATIC_BODY.replace(COUNTRY, piece + COUNTRY)
    with pytest.raises(QrMissingTag) as err:
        decode(seal(body))
    assert err.value.code == "qrph.missing_tag"
    assert (err.value.tag_path, err.value.position) == (fee_tag, body.index(piece))


@pytest.mark.parametrize("tip", ["00", "04", "1A"])
def test_unknown_tip_indicator(tip: str) -> None:
    piece = tlv("55", tip)
    body = STATIC_BODY.replace(COUNTRY, piece + COUNTRY)
    with pytest.raises(QrInvalidValue) as err:
        decode(seal(body))
    assert (err.value.tag_path, err.value.position) == ("55", body.index(piece) + 4)


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        (tlv("01", "最佳运输"), "64.00"),
        (tlv("00", "ZH") + tlv("02", "北京"), "64.01"),
    ],
)
def test_language_template_needs_language_and_name(template: str, missing: str) -> None:
    piece = tlv("64", template)
    body = STATIC_BODY + piece
    with pytest.raises(QrMissingTag) as err:
        decode(seal(body))
    assert (err.value.tag_path, err.value.position) == (missing, len(STATIC_BODY) + 4)
    complete = tlv("64", tlv("00", "ZH") + tlv("01", "最佳运输") + tlv("02", "北京"))
    assert decode(seal(STATIC_BODY + complete)).language_template["01"] == "最佳运输"
