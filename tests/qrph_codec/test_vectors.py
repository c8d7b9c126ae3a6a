"""Real published payloads: the shared vectors and the ones collected in published_vectors.tsv."""

from __future__ import annotations

import pytest

from finfactory.primitives.qrph.emv import (
    Initiation,
    QrCrcMismatch,
    QrKind,
    QrNotQrPh,
    crc16_ccitt_false,
    decode,
    encode,
    read_merchant_qr,
)
from tests.qrph_codec.helpers import OWN_VECTORS, SHARED_VECTORS, read_vectors, seal

SHARED = read_vectors(SHARED_VECTORS)
OWN = read_vectors(OWN_VECTORS)


def test_there_are_vectors_to_test() -> None:
    assert len(SHARED) >= 3
    assert len(OWN) >= 25


def test_crc_check_values() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1  # XMODEM (init 0) would give 0x31C3
    assert crc16_ccitt_false(b"00020101021127770012com.p2pqrpay0111EAWR") == 0x6CBA
    assert crc16_ccitt_false(b"") == 0xFFFF


@pytest.mark.parametrize(("verdict", "source", "payload"), SHARED, ids=lambda v: v[:40])
def test_shared_vectors(verdict: str, source: str, payload: str) -> None:
    if verdict.upper() == "OK":
        assert encode(decode(payload)) == payload, source
    else:
        with pytest.raises(QrCrcMismatch):
            decode(payload)


@pytest.mark.parametrize(("verdict", "kind", "source", "payload"), OWN, ids=lambda v: v[:40])
def test_published_vectors(verdict: str, kind: str, source: str, payload: str) -> None:
    if verdict == "BAD_CRC":
        with pytest.raises(QrCrcMismatch) as caught:
            decode(payload)
        assert caught.value.tag_path == "63"
        assert caught.value.position == len(payload) - 4
        return
    assert verdict == "OK"
    qr = decode(payload)
    assert encode(qr) == payload, source
    if kind == "not_qrph":
        with pytest.raises(QrNotQrPh):
            read_merchant_qr(payload)
    else:
        spec = read_merchant_qr(payload)
        assert spec.kind == QrKind(kind)
        assert qr.qrph_account is not None
        assert qr.qrph_account.acquirer_id == spec.acquirer_id


def _shared(fragment: str) -> str:
    return next(row[-1] for row in SHARED if fragment in row[1])


def test_gcash_p2m_sample_fields() -> None:
    payload = _shared("Gong Cha")
    qr = decode(payload)
    assert qr.initiation is Initiation.STATIC
    (account,) = qr.merchant_accounts
    assert (account.tag, account.guid, account.kind) == ("28", "ph.ppmi.p2m", QrKind.P2M)
    assert account.field("05") == "000"
    assert (qr.mcc, qr.currency_numeric, qr.country) == ("5812", "608", "PH")
    assert (qr.merchant_name, qr.merchant_city, qr.postal_code) == ("Gong Cha", "762", "1224")
    assert qr.amount is None
    assert qr.additional_data == {
        "00": "ph.ppmi.qrph",
        "03": "GCRD00001",
        "05": "217050000067003962068",
        "07": "GEN00008",
    }
    assert qr.crc == "9B84"
    spec = read_merchant_qr(payload)
    assert spec.acquirer_id == "GXCHPHM2XXX"
    assert spec.merchant_account == "217020000000602433060"
    assert spec.reference_label == "217050000067003962068"
    assert spec.amount_minor is None
    assert spec.currency == "PHP"


def test_paymongo_p2p_dynamic_sample_fields() -> None:
    payload = _shared("PayMongo")
    qr = decode(payload)
    assert qr.initiation is Initiation.DYNAMIC
    assert qr.amount == "123.45"
    assert qr.additional_data["02"] == "+63-9913729862"
    spec = read_merchant_qr(payload)
    assert spec.kind is QrKind.P2P
    assert (spec.acquirer_id, spec.merchant_account) == ("PAEYPHM2XXX", "985889386153")
    assert (spec.amount_minor, spec.currency, spec.mcc) == (12345, "PHP", "6016")
    assert spec.reference_label == "test12"


def test_emvco_sample_counts_lengths_in_characters() -> None:
    payload = _shared("EMVCo")
    qr = decode(payload)
    assert qr.language_template == {"00": "ZH", "01": "最佳运输", "02": "北京"}
    language = qr.get("64")
    assert language is not None
    assert language.children is not None
    assert language.children[1].encoded() == "0104最佳运输"
    # Two foreign merchant account templates, neither of them QR Ph.
    assert [(a.tag, a.guid, a.kind) for a in qr.merchant_accounts] == [
        ("29", "D15600000000", None),
        ("31", "D15600000001", None),
    ]
    assert qr.qrph_account is None
    assert (qr.amount, qr.tip_indicator) == ("23.72", "01")
    unreserved = qr.get("91")
    assert unreserved is not None
    assert unreserved.children is not None
    assert [(c.tag, c.value) for c in unreserved.children] == [
        ("00", "A011223344998877"),
        ("07", "12345678"),
    ]
    # The CRC runs over UTF-8 bytes, which are more than the characters here.
    assert len(payload.encode("utf-8")) > len(payload)
    with pytest.raises(QrNotQrPh) as caught:
        read_merchant_qr(payload)
    assert caught.value.code == "qrph.not_qrph"


@pytest.mark.parametrize(
    ("fragment", "slot", "kind"), [("Gong Cha", "51", "p2m"), ("PayMongo", "26", "p2p")]
)
def test_templates_are_found_by_guid_not_by_tag(fragment: str, slot: str, kind: str) -> None:
    """The samples use 28 (P2M) and 27 (P2P); any slot 26-51 must work, told apart by GUID."""
    payload = _shared(fragment)
    assert payload[12:14] in ("27", "28")  # the template follows "000201" "010211|12"
    moved = seal(payload[:12] + slot + payload[14 : payload.rindex("6304")])
    qr = decode(moved)
    assert qr.qrph_account is not None
    assert (qr.qrph_account.tag, qr.qrph_account.kind) == (slot, QrKind(kind))
    assert read_merchant_qr(moved) == read_merchant_qr(payload)
    assert encode(qr) == moved
