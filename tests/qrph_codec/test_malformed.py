"""One test per malformation: the error class, its stable code, the position and the tag path.

Each broken payload is built by hand and re-sealed with a correct CRC, so the fault under test
is the only one in it.
"""

from __future__ import annotations

import json

import pytest

from finfactory.kernel.errors import ValidationError, error_from_dict
from finfactory.primitives.qrph.emv import (
    MpmPayload,
    QrAmountFormat,
    QrCrcMismatch,
    QrDuplicateTag,
    QrFormatError,
    QrInvalidValue,
    QrLengthError,
    QrMissingTag,
    QrTagError,
    QrTagOrder,
    decode,
    encode,
    read_merchant_qr,
)
from tests.qrph_codec.helpers import (
    ACCOUNT,
    ADDITIONAL,
    CITY,
    COUNTRY,
    CURRENCY,
    DYNAMIC,
    MCC,
    NAME,
    PFI,
    STATIC,
    STATIC_BODY,
    seal,
    tlv,
)

VALID = seal(STATIC_BODY)


def rejects(payload: object, error: type[QrFormatError], code: str) -> QrFormatError:
    with pytest.raises(error) as caught:
        decode(payload)  # type: ignore[arg-type]
    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.field == "payload"
    return caught.value


def test_the_base_payload_is_valid() -> None:
    assert encode(decode(VALID)) == VALID


def test_error_shape_is_json_safe_and_survives_a_replay() -> None:
    err = rejects(VALID[:-1] + "0", QrCrcMismatch, "qrph.crc_mismatch")
    assert isinstance(err, ValidationError)
    as_dict = json.loads(json.dumps(err.to_dict()))
    assert as_dict["details"]["position"] == len(VALID) - 4
    assert as_dict["details"]["tag_path"] == "63"
    replayed = error_from_dict(as_dict)
    assert isinstance(replayed, QrCrcMismatch)
    assert (replayed.position, replayed.tag_path) == (err.position, err.tag_path)
    assert "character" in str(err)
    assert "63" in str(err)


# -- CRC -------------------------------------------------------------------------------------


def test_bad_crc() -> None:
    broken = VALID[:-4] + ("0000" if VALID[-4:] != "0000" else "0001")
    err = rejects(broken, QrCrcMismatch, "qrph.crc_mismatch")
    assert (err.position, err.tag_path) == (len(VALID) - 4, "63")
    assert err.details["expected"] == VALID[-4:]


def test_content_changed_under_the_crc() -> None:
    broken = VALID.replace("Gong Cha", "Gong Chi")
    err = rejects(broken, QrCrcMismatch, "qrph.crc_mismatch")
    assert (err.position, err.tag_path) == (len(VALID) - 4, "63")


def test_lower_case_crc_is_refused_so_round_trips_stay_exact() -> None:
    body = STATIC_BODY.replace("Gong Cha", "Gong Chb")
    payload = seal(body)
    assert payload[-4:] != payload[-4:].lower(), "needs a CRC with a letter in it"
    err = rejects(payload[:-4] + payload[-4:].lower(), QrCrcMismatch, "qrph.crc_mismatch")
    assert (err.position, err.tag_path) == (len(payload) - 4, "63")


def test_crc_of_the_wrong_length() -> None:
    body = STATIC_BODY + "6303ABC"
    err = rejects(body, QrLengthError, "qrph.invalid_length")
    assert (err.position, err.tag_path) == (len(STATIC_BODY) + 2, "63")


# -- lengths and tags ------------------------------------------------------------------------


def test_length_past_the_end() -> None:
    broken = VALID[:-8] + "6399ABCD"
    err = rejects(broken, QrLengthError, "qrph.invalid_length")
    assert (err.position, err.tag_path) == (len(VALID) - 6, "63")


def test_length_past_the_end_of_a_template() -> None:
    additional = tlv("62", tlv("00", "ph.ppmi.qrph") + "0509INV-1")  # says 9, has 5
    body = STATIC_BODY.replace(ADDITIONAL, additional)
    err = rejects(seal(body), QrLengthError, "qrph.invalid_length")
    assert err.tag_path == "62.05"
    assert err.position == body.index("0509INV-1") + 2


def test_non_digit_length() -> None:
    body = STATIC_BODY.replace(NAME, "59A8Gong Cha")
    err = rejects(seal(body), QrLengthError, "qrph.invalid_length")
    assert (err.position, err.tag_path) == (body.index("59A8") + 2, "59")


def test_zero_length() -> None:
    body = STATIC_BODY + "6500"
    err = rejects(seal(body), QrLengthError, "qrph.invalid_length")
    assert (err.position, err.tag_path) == (len(STATIC_BODY) + 2, "65")


def test_header_cut_short() -> None:
    err = rejects(VALID + "9", QrLengthError, "qrph.invalid_length")
    assert (err.position, err.tag_path) == (len(VALID), "")


def test_non_digit_tag() -> None:
    body = STATIC_BODY + "A102xy"
    err = rejects(seal(body), QrTagError, "qrph.invalid_tag")
    assert (err.position, err.tag_path) == (len(STATIC_BODY), "")


def test_non_ascii_digit_tag() -> None:
    body = STATIC_BODY + "\u0666\u066502xy"  # Arabic-Indic digits pass str.isdigit()
    err = rejects(seal(body), QrTagError, "qrph.invalid_tag")
    assert err.position == len(STATIC_BODY)


def test_non_digit_sub_tag() -> None:
    account = tlv("28", tlv("00", "ph.ppmi.p2m") + "X102ab")
    body = STATIC_BODY.replace(ACCOUNT, account)
    err = rejects(seal(body), QrTagError, "qrph.invalid_tag")
    assert (err.position, err.tag_path) == (body.index("X102ab"), "28")


def test_payload_over_512_characters() -> None:
    filler = "".join(tlv(f"{t}", "x" * 90) for t in range(65, 71))
    payload = seal(STATIC_BODY + filler)
    assert len(payload) > 512
    err = rejects(payload, QrLengthError, "qrph.invalid_length")
    assert (err.position, err.tag_path) == (512, "")


@pytest.mark.parametrize("payload", ["", None, b"000201"])
def test_not_a_payload_at_all(payload: object) -> None:
    err = rejects(payload, QrFormatError, "qrph.malformed_payload")
    assert (err.position, err.tag_path) == (0, "")


# -- presence, duplicates, order --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "piece"),
    [
        ("52", MCC),
        ("53", CURRENCY),
        ("58", COUNTRY),
        ("59", NAME),
        ("60", CITY),
    ],
)
def test_missing_mandatory_tag(tag: str, piece: str) -> None:
    err = rejects(seal(STATIC_BODY.replace(piece, "")), QrMissingTag, "qrph.missing_tag")
    assert (err.position, err.tag_path) == (0, tag)


def test_missing_payload_format_indicator() -> None:
    err = rejects(seal(STATIC_BODY.replace(PFI, "")), QrMissingTag, "qrph.missing_tag")
    assert (err.position, err.tag_path) == (0, "00")


def test_missing_crc() -> None:
    err = rejects(STATIC_BODY, QrMissingTag, "qrph.missing_tag")
    assert (err.position, err.tag_path) == (0, "63")


def test_missing_merchant_account() -> None:
    err = rejects(seal(STATIC_BODY.replace(ACCOUNT, "")), QrMissingTag, "qrph.missing_tag")
    assert (err.position, err.tag_path) == (0, "02-51")


def test_a_card_network_account_alone_is_enough() -> None:
    body = STATIC_BODY.replace(ACCOUNT, tlv("04", "4000123412341234"))
    assert decode(seal(body)).merchant_accounts == ()


def test_template_without_its_guid() -> None:
    account = tlv("28", tlv("01", "GXCHPHM2XXX") + tlv("03", "12345"))
    body = STATIC_BODY.replace(ACCOUNT, account)
    err = rejects(seal(body), QrMissingTag, "qrph.missing_tag")
    assert (err.position, err.tag_path) == (body.index(account) + 4, "28.00")


def test_duplicate_tag() -> None:
    body = STATIC_BODY + tlv("59", "Other")
    err = rejects(seal(body), QrDuplicateTag, "qrph.duplicate_tag")
    assert (err.position, err.tag_path) == (len(STATIC_BODY), "59")


def test_duplicate_sub_tag() -> None:
    additional = tlv("62", tlv("05", "A") + tlv("05", "B"))
    body = STATIC_BODY.replace(ADDITIONAL, additional)
    err = rejects(seal(body), QrDuplicateTag, "qrph.duplicate_tag")
    assert (err.position, err.tag_path) == (body.index(additional) + 4 + 5, "62.05")


def test_payload_format_indicator_not_first() -> None:
    body = STATIC + PFI + STATIC_BODY[len(PFI + STATIC) :]
    err = rejects(seal(body), QrTagOrder, "qrph.tag_order")
    assert (err.position, err.tag_path) == (len(STATIC), "00")


def test_crc_not_last() -> None:
    sealed = seal(STATIC_BODY)
    err = rejects(sealed + tlv("99", "x"), QrTagOrder, "qrph.tag_order")
    assert (err.position, err.tag_path) == (len(STATIC_BODY), "63")


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("piece", "replacement", "tag"),
    [
        (PFI, tlv("00", "02"), "00"),
        (STATIC, tlv("01", "13"), "01"),
        (MCC, tlv("52", "58A2"), "52"),
        (MCC, tlv("52", "581"), "52"),
        (CURRENCY, tlv("53", "PHP"), "53"),
        (COUNTRY, tlv("58", "ph"), "58"),
        (COUNTRY, tlv("58", "PHL"), "58"),
    ],
)
def test_invalid_value(piece: str, replacement: str, tag: str) -> None:
    body = STATIC_BODY.replace(piece, replacement)
    err = rejects(seal(body), QrInvalidValue, "qrph.invalid_value")
    assert (err.position, err.tag_path) == (body.index(replacement) + 4, tag)


@pytest.mark.parametrize(
    "amount",
    [
        "1,00",  # separators
        "-1",  # signs
        "+1",
        ".5",  # a leading "." without a digit before it
        "1.2.3",
        "1e5",
        " 1",
        "\u0661\u0662",  # Arabic-Indic digits
        "0",  # EMVCo: never zero
        "0.00",
        "123456789012.5",  # fine shape, but the 14th character is too many
        "1.234",  # three decimals in a two-decimal currency
    ],
)
def test_bad_amount(amount: str) -> None:
    body = PFI + DYNAMIC + ACCOUNT + MCC + CURRENCY + tlv("54", amount) + COUNTRY + NAME + CITY
    err = rejects(seal(body), QrAmountFormat, "qrph.invalid_amount")
    assert (err.position, err.tag_path) == (body.index(tlv("54", amount)) + 4, "54")


@pytest.mark.parametrize("amount", ["98", "98.", "98.7", "98.73", "0.01", "1234567890.12"])
def test_good_amounts(amount: str) -> None:
    body = PFI + DYNAMIC + ACCOUNT + MCC + CURRENCY + tlv("54", amount) + COUNTRY + NAME + CITY
    qr = decode(seal(body))
    assert qr.amount == amount
    assert read_merchant_qr(seal(body)).amount_minor == int(
        amount.partition(".")[0] + amount.partition(".")[2].ljust(2, "0")
    )


def test_zero_decimal_currency_refuses_decimals() -> None:
    body = PFI + DYNAMIC + ACCOUNT + MCC + tlv("53", "392") + tlv("54", "100.5")
    body += COUNTRY + NAME + CITY
    rejects(seal(body), QrAmountFormat, "qrph.invalid_amount")
    jpy = body.replace(tlv("54", "100.5"), tlv("54", "100"))
    assert read_merchant_qr(seal(jpy)).amount_minor == 100


# -- QR Ph rules checked by read_merchant_qr ----------------------------------------------------


def test_dynamic_without_amount_is_valid_emvco_but_not_valid_qr_ph() -> None:
    body = PFI + DYNAMIC + STATIC_BODY[len(PFI + STATIC) :]
    payload = seal(body)
    assert decode(payload).amount is None
    with pytest.raises(QrMissingTag) as caught:
        read_merchant_qr(payload)
    assert (caught.value.position, caught.value.tag_path) == (len(PFI), "54")


@pytest.mark.parametrize("sub_tag", ["01", "03"])
def test_qrph_template_without_acquirer_or_merchant_id(sub_tag: str) -> None:
    children = {"00": "ph.ppmi.p2m", "01": "GXCHPHM2XXX", "03": "2170200000006"}
    del children[sub_tag]
    account = tlv("28", "".join(tlv(t, v) for t, v in children.items()))
    body = STATIC_BODY.replace(ACCOUNT, account)
    with pytest.raises(QrMissingTag) as caught:
        read_merchant_qr(seal(body))
    assert caught.value.tag_path == f"28.{sub_tag}"
    assert caught.value.position == body.index(account) + 4


def test_unknown_currency_number() -> None:
    body = STATIC_BODY.replace(CURRENCY, tlv("53", "000"))
    assert decode(seal(body)).currency_numeric == "000"
    with pytest.raises(QrInvalidValue) as caught:
        read_merchant_qr(seal(body))
    assert (caught.value.position, caught.value.tag_path) == (body.index("5303000") + 4, "53")


def test_encode_refuses_to_produce_an_invalid_payload() -> None:
    qr = decode(VALID)
    without_name = MpmPayload(tuple(o for o in qr.objects if o.tag != "59"))
    with pytest.raises(QrMissingTag):
        encode(without_name)


def test_positions_of_nested_data_objects() -> None:
    qr = decode(VALID)
    assert qr.position_of("62.05") == VALID.index(tlv("05", "INV-1"))
    assert qr.position_of("28.03") == VALID.index(tlv("03", "2170200000006"))
    assert qr.position_of("63") == len(VALID) - 8
    with pytest.raises(KeyError):
        qr.position_of("62.07")


def test_the_guid_may_come_after_other_sub_tags() -> None:
    account = tlv("28", tlv("01", "GXCHPHM2XXX") + tlv("00", "ph.ppmi.p2m") + tlv("03", "1"))
    payload = seal(STATIC_BODY.replace(ACCOUNT, account))
    assert encode(decode(payload)) == payload
    assert read_merchant_qr(payload).merchant_account == "1"
