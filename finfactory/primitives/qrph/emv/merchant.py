"""QR Ph merchant QR codes both ways: what a payment flow needs <-> a payload string.

``build_payload`` writes the layout the published QR Ph samples use: P2M in tag 28 (sub-tags
00 GUID, 01 acquirer BIC, 03 merchant id), P2P in tag 27 (00 GUID, 01 acquirer BIC, 02 the
constant "99964403" every published P2P sample carries, 04 the credit account), and tag 62
with sub-tag 00 = "ph.ppmi.qrph" for P2M (P2P: "com.p2pqrpay", only when there is a reference
label), 05 = the reference label. ``read_merchant_qr`` finds the template by GUID wherever it
sits in 26-51.
"""

from __future__ import annotations

import re
from typing import NoReturn

import attrs
from moneyed import CurrencyDoesNotExist, get_currency

from finfactory.kernel.errors import MoneyError
from finfactory.kernel.money import currency, minor_exponent, minor_to_str
from finfactory.primitives.qrph.emv.errors import (
    QrInvalidValue,
    QrMissingTag,
    QrNotQrPh,
    QrSpecInvalid,
)
from finfactory.primitives.qrph.emv.payload import (
    P2M_GUID,
    P2P_GUID,
    QRPH_GUID,
    Initiation,
    MpmPayload,
    QrKind,
    decode,
    encode,
)
from finfactory.primitives.qrph.emv.tlv import DataObject

__all__ = [
    "P2P_ACCOUNT_TYPE",
    "MerchantQrSpec",
    "build_payload",
    "read_merchant_qr",
]

# Sub-tag 02 of every published P2P (com.p2pqrpay) template; written as seen, not interpreted.
P2P_ACCOUNT_TYPE = "99964403"

_ACCOUNT_SUB_TAG = {QrKind.P2M: "03", QrKind.P2P: "04"}
_ACCOUNT_TAG = {QrKind.P2M: "28", QrKind.P2P: "27"}
_GUID = {QrKind.P2M: P2M_GUID, QrKind.P2P: P2P_GUID}
_BIC = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
_MCC = re.compile(r"[0-9]{4}")
# EMVCo's "ans" format for names, cities and labels: printable ASCII.
_ANS = re.compile(r"[\x20-\x7e]+")
_MAX_ACCOUNT = 50  # fits either template within the 99-character limit


@attrs.frozen
class MerchantQrSpec:
    """The QR Ph fields a payment flow sets or reads; validated by :func:`build_payload`."""

    kind: QrKind
    initiation: Initiation
    acquirer_id: str  # template sub-tag 01: the acquirer's BIC, e.g. "GXCHPHM2XXX"
    merchant_account: str  # P2M: sub-tag 03 (merchant id); P2P: sub-tag 04 (credit account)
    merchant_name: str
    merchant_city: str
    mcc: str = "0000"
    currency: str = "PHP"  # ISO 4217 alpha; tag 53 carries the numeric code
    amount_minor: int | None = None  # required for DYNAMIC, refused for STATIC
    reference_label: str | None = None  # tag 62 sub-tag 05
    postal_code: str | None = None


def build_payload(spec: MerchantQrSpec) -> str:
    """A valid QR Ph payload for ``spec``; raises :class:`QrSpecInvalid` naming the field."""
    numeric, exponent = _validate(spec)
    kind = QrKind(spec.kind)
    account = [
        DataObject("00", _GUID[kind]),
        DataObject("01", spec.acquirer_id),
    ]
    if kind is QrKind.P2P:
        account.append(DataObject("02", P2P_ACCOUNT_TYPE))
    account.append(DataObject(_ACCOUNT_SUB_TAG[kind], spec.merchant_account))
    objects = [
        DataObject("00", "01"),
        DataObject("01", "12" if spec.initiation is Initiation.DYNAMIC else "11"),
        DataObject.template(_ACCOUNT_TAG[kind], tuple(account)),
        DataObject("52", spec.mcc),
        DataObject("53", numeric),
    ]
    if spec.amount_minor is not None:
        objects.append(DataObject("54", minor_to_str(spec.amount_minor, exponent)))
    objects += [
        DataObject("58", "PH"),
        DataObject("59", spec.merchant_name),
        DataObject("60", spec.merchant_city),
    ]
    if spec.postal_code is not None:
        objects.append(DataObject("61", spec.postal_code))
    additional = []
    if kind is QrKind.P2M or spec.reference_label is not None:
        additional.append(DataObject("00", QRPH_GUID if kind is QrKind.P2M else P2P_GUID))
    if spec.reference_label is not None:
        additional.append(DataObject("05", spec.reference_label))
    if additional:
        objects.append(DataObject.template("62", tuple(additional)))
    return encode(MpmPayload(tuple(objects)))


def read_merchant_qr(payload: str) -> MerchantQrSpec:
    """Decode ``payload`` and extract the QR Ph fields; raises ``QrFormatError`` subclasses."""
    qr = decode(payload)
    if qr.get("01") is None:
        raise QrMissingTag(
            "QR Ph requires the point of initiation (01: 11 static, 12 dynamic)",
            position=0,
            tag_path="01",
        )
    account = qr.qrph_account
    if account is None:
        raise QrNotQrPh(
            f"no QR Ph merchant account template ({P2M_GUID} or {P2P_GUID}) in tags 26-51",
            position=0,
            tag_path="26-51",
        )
    assert account.kind is not None  # qrph_account only returns QR Ph templates
    acquirer = account.acquirer_id
    if acquirer is None:
        _missing(qr, account.tag, "01", "acquirer id")
    sub_tag = _ACCOUNT_SUB_TAG[account.kind]
    merchant_account = account.field(sub_tag)
    if merchant_account is None:
        _missing(qr, account.tag, sub_tag, "merchant account")
    code, exponent = _currency_of(qr)
    amount_minor = None
    if qr.amount is not None:
        amount_minor = _to_minor(qr.amount, exponent)
    elif qr.initiation is Initiation.DYNAMIC:
        raise QrMissingTag(
            "a dynamic QR Ph code (01 = 12) must carry a transaction amount (54)",
            position=qr.position_of("01"),
            tag_path="54",
        )
    return MerchantQrSpec(
        kind=account.kind,
        initiation=qr.initiation,
        acquirer_id=acquirer,
        merchant_account=merchant_account,
        merchant_name=qr.merchant_name,
        merchant_city=qr.merchant_city,
        mcc=qr.mcc,
        currency=code,
        amount_minor=amount_minor,
        reference_label=qr.reference_label,
        postal_code=qr.postal_code,
    )


def _missing(qr: MpmPayload, tag: str, sub_tag: str, what: str) -> NoReturn:
    raise QrMissingTag(
        f"QR Ph template has no {what} (sub-tag {sub_tag})",
        position=qr.position_of(tag) + 4,
        tag_path=f"{tag}.{sub_tag}",
    )


def _currency_of(qr: MpmPayload) -> tuple[str, int]:
    try:
        found = get_currency(iso=qr.currency_numeric)
        return str(found.code), minor_exponent(found)
    except (CurrencyDoesNotExist, MoneyError):
        raise QrInvalidValue(
            f"unknown ISO 4217 numeric currency {qr.currency_numeric!r}",
            position=qr.position_of("53") + 4,
            tag_path="53",
        ) from None


def _to_minor(amount: str, exponent: int) -> int:
    # decode() has checked the shape ("123.45", "600", "98."), the number of decimals and the
    # 13-character cap, so the result is exact and far inside the ledger's 64-bit range.
    whole, _, decimals = amount.partition(".")
    return int(whole + decimals.ljust(exponent, "0"))


def _validate(spec: MerchantQrSpec) -> tuple[str, int]:
    """(numeric currency, exponent) once every field is known to encode; else raises."""

    def refuse(field: str, why: str) -> NoReturn:
        raise QrSpecInvalid(f"{field} {why}, got {getattr(spec, field)!r}", field=field)

    if not isinstance(spec.kind, QrKind):
        refuse("kind", "must be a QrKind")
    if not isinstance(spec.initiation, Initiation):
        refuse("initiation", "must be an Initiation")
    if not (isinstance(spec.acquirer_id, str) and _BIC.fullmatch(spec.acquirer_id)):
        refuse("acquirer_id", "must be a BIC (8 or 11 upper-case letters and digits)")
    _text(spec, "merchant_account", _MAX_ACCOUNT)
    _text(spec, "merchant_name", 25)
    _text(spec, "merchant_city", 15)
    if not (isinstance(spec.mcc, str) and _MCC.fullmatch(spec.mcc)):
        refuse("mcc", "must be 4 digits")
    try:
        cur = currency(spec.currency)
        exponent = minor_exponent(cur)
    except MoneyError as exc:
        raise QrSpecInvalid(exc.message, field="currency") from None
    if not cur.numeric:
        refuse("currency", "has no ISO 4217 numeric code")
    amount = spec.amount_minor
    if spec.initiation is Initiation.STATIC and amount is not None:
        refuse("amount_minor", "must be None for a static QR code (the payer enters it)")
    if spec.initiation is Initiation.DYNAMIC:
        if amount is None or isinstance(amount, bool) or not isinstance(amount, int):
            refuse("amount_minor", "must be an integer for a dynamic QR code")
        if amount <= 0:
            refuse("amount_minor", "must be greater than zero")
        if len(minor_to_str(amount, exponent)) > 13:
            refuse("amount_minor", "does not fit in 13 characters")
    if spec.reference_label is not None:
        _text(spec, "reference_label", 25)
    if spec.postal_code is not None:
        _text(spec, "postal_code", 10)
    return f"{int(cur.numeric):03d}", exponent


def _text(spec: MerchantQrSpec, field: str, limit: int) -> None:
    value = getattr(spec, field)
    if not isinstance(value, str) or not _ANS.fullmatch(value):
        raise QrSpecInvalid(
            f"{field} must be non-empty printable ASCII (EMVCo 'ans'), got {value!r}",
            field=field,
        )
    if len(value) > limit:
        raise QrSpecInvalid(
            f"{field} must be at most {limit} characters, got {len(value)}", field=field
        )
