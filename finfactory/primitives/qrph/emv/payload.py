"""EMVCo Merchant-Presented Mode payloads: decode, validate, encode.

``decode`` keeps every data object, known or not, in the order written, with its raw value,
so ``encode(decode(x)) == x`` for every payload ``decode`` accepts. Templates (26-51, 62, 64,
80-99) are also parsed one level down into ``children``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NoReturn

import attrs
from moneyed import CurrencyDoesNotExist, get_currency

from finfactory.kernel.errors import MoneyError
from finfactory.kernel.money import minor_exponent
from finfactory.primitives.qrph.emv.crc import crc16_ccitt_false
from finfactory.primitives.qrph.emv.errors import (
    QrAmountFormat,
    QrCrcMismatch,
    QrFormatError,
    QrInvalidValue,
    QrLengthError,
    QrMissingTag,
    QrTagOrder,
)
from finfactory.primitives.qrph.emv.tlv import DataObject, Located, is_ascii_digits, split

__all__ = [
    "MAX_PAYLOAD_LENGTH",
    "P2M_GUID",
    "P2P_GUID",
    "QRPH_GUID",
    "Initiation",
    "MerchantAccount",
    "MpmPayload",
    "QrKind",
    "decode",
    "encode",
    "minor_exponent_of_numeric",
]

P2M_GUID = "ph.ppmi.p2m"
P2P_GUID = "com.p2pqrpay"
QRPH_GUID = "ph.ppmi.qrph"  # what QR Ph issuers put in 62.00 and in the 80-99 templates

# EMVCo caps the whole payload at 512 characters.
MAX_PAYLOAD_LENGTH = 512

# Templates: merchant account information (26-51), additional data (62), language (64),
# unreserved (80-99). Tags 02-25 are primitive (card network account numbers).
TEMPLATE_TAGS = frozenset(
    [f"{t:02d}" for t in range(26, 52)] + ["62", "64"] + [f"{t:02d}" for t in range(80, 100)]
)
# Templates that EMVCo requires to open with a globally unique identifier in sub-tag 00.
_GUID_TEMPLATES = frozenset(
    [f"{t:02d}" for t in range(26, 52)] + [f"{t:02d}" for t in range(80, 100)]
)
_ACCOUNT_TAGS = frozenset(f"{t:02d}" for t in range(2, 52))
# EMVCo's mandatory data objects. The point of initiation (01) is optional in EMVCo; QR Ph
# requires it, which ``read_merchant_qr`` checks.
_MANDATORY = ("00", "52", "53", "58", "59", "60", "63")
# Tip or convenience indicator (55): 01 the payer enters a tip, 02 a fixed fee (in 56),
# 03 a percentage fee (in 57).
_FEE_TAG = {"02": "56", "03": "57"}
_TIP_INDICATORS = ("01", "02", "03")
_CRC_HEX = re.compile(r"[0-9A-F]{4}")
# Our amount rule: digits, optionally one "." followed by digits. EMVCo also allows a
# trailing "." ("98."); a leading "." (".5"), signs, separators and exponents are refused.
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]*)?")
_MAX_AMOUNT_LENGTH = 13


class QrKind(StrEnum):
    P2M = "p2m"
    P2P = "p2p"


class Initiation(StrEnum):
    STATIC = "static"
    DYNAMIC = "dynamic"


_INITIATION_CODES = {"11": Initiation.STATIC, "12": Initiation.DYNAMIC}
_KIND_BY_GUID = {P2M_GUID: QrKind.P2M, P2P_GUID: QrKind.P2P}


@attrs.frozen
class MerchantAccount:
    """A merchant account information template (tags 26-51), told apart by its GUID."""

    tag: str
    guid: str
    kind: QrKind | None  # None: another scheme's template (PayNow, PromptPay...)
    children: tuple[DataObject, ...]

    def field(self, sub_tag: str) -> str | None:
        return next((c.value for c in self.children if c.tag == sub_tag), None)

    @property
    def acquirer_id(self) -> str | None:
        """Sub-tag 01: the acquirer's BIC in QR Ph templates."""
        return self.field("01")


@attrs.frozen
class MpmPayload:
    """A decoded payload: the data objects in their original order, CRC included."""

    objects: tuple[DataObject, ...]

    def get(self, tag: str) -> DataObject | None:
        return next((o for o in self.objects if o.tag == tag), None)

    def value(self, tag: str) -> str | None:
        found = self.get(tag)
        return None if found is None else found.value

    def position_of(self, tag_path: str) -> int:
        """Character offset of the data object ``tag_path`` ("62.05") in the encoded payload.

        Raises ``KeyError`` if there is no such data object.
        """
        position, objects = 0, self.objects
        for depth, tag in enumerate(tag_path.split(".")):
            for obj in objects:
                if obj.tag == tag:
                    break
                position += len(obj.encoded())
            else:
                raise KeyError(tag_path)
            if depth < tag_path.count("."):
                position += 4
                objects = obj.children or ()
        return position

    def _required(self, tag: str) -> str:
        found = self.value(tag)
        if found is None:
            raise QrMissingTag(f"mandatory tag {tag} is missing", position=0, tag_path=tag)
        return found

    @property
    def payload_format_indicator(self) -> str:
        return self._required("00")

    @property
    def initiation(self) -> Initiation:
        code = self._required("01")
        if code not in _INITIATION_CODES:
            raise QrInvalidValue(
                f"point of initiation must be 11 or 12, got {code!r}",
                position=self.position_of("01") + 4,
                tag_path="01",
            )
        return _INITIATION_CODES[code]

    @property
    def merchant_accounts(self) -> tuple[MerchantAccount, ...]:
        """The templates in tags 26-51, in payload order."""
        found = []
        for obj in self.objects:
            if obj.children is None or not "26" <= obj.tag <= "51":
                continue
            guid = obj.child("00")
            guid_text = "" if guid is None else guid.value
            kind = _KIND_BY_GUID.get(guid_text.lower())
            found.append(MerchantAccount(obj.tag, guid_text, kind, obj.children))
        return tuple(found)

    @property
    def qrph_account(self) -> MerchantAccount | None:
        """The first QR Ph P2M or P2P template, whatever tag it sits in."""
        return next((a for a in self.merchant_accounts if a.kind is not None), None)

    @property
    def mcc(self) -> str:
        return self._required("52")

    @property
    def currency_numeric(self) -> str:
        return self._required("53")

    @property
    def amount(self) -> str | None:
        """Tag 54 exactly as written ("123.45", "600", "98.")."""
        return self.value("54")

    @property
    def tip_indicator(self) -> str | None:
        return self.value("55")

    @property
    def convenience_fee_fixed(self) -> str | None:
        return self.value("56")

    @property
    def convenience_fee_percentage(self) -> str | None:
        return self.value("57")

    @property
    def country(self) -> str:
        return self._required("58")

    @property
    def merchant_name(self) -> str:
        return self._required("59")

    @property
    def merchant_city(self) -> str:
        return self._required("60")

    @property
    def postal_code(self) -> str | None:
        return self.value("61")

    def _template_values(self, tag: str) -> dict[str, str]:
        found = self.get(tag)
        return {c.tag: c.value for c in (found.children or ())} if found else {}

    @property
    def additional_data(self) -> dict[str, str]:
        """Tag 62 as sub-tag -> value ("00" GUID, "05" reference label, ...)."""
        return self._template_values("62")

    @property
    def reference_label(self) -> str | None:
        return self.additional_data.get("05")

    @property
    def language_template(self) -> dict[str, str]:
        """Tag 64: "00" language, "01" name and "02" city in that language."""
        return self._template_values("64")

    @property
    def crc(self) -> str:
        return self._required("63")


def minor_exponent_of_numeric(numeric: str) -> int | None:
    """Decimal places of the ISO 4217 numeric currency, None if unknown."""
    try:
        return minor_exponent(get_currency(iso=numeric))
    except (CurrencyDoesNotExist, MoneyError):
        return None


def decode(payload: str) -> MpmPayload:
    """Parse and validate a merchant-presented payload; raises a ``QrFormatError`` subclass."""
    if not isinstance(payload, str):
        raise QrFormatError(
            f"payload must be a string, got {type(payload).__name__}", position=0, tag_path=""
        )
    if not payload:
        raise QrFormatError("payload is empty", position=0, tag_path="")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise QrLengthError(
            f"payload is {len(payload)} characters; EMVCo allows {MAX_PAYLOAD_LENGTH}",
            position=MAX_PAYLOAD_LENGTH,
            tag_path="",
        )
    top = split(payload, offset=0, parent="")
    by_tag = {item.tag: item for item in top}
    _check_order(top, by_tag)
    _check_crc(payload, by_tag["63"])
    objects = tuple(_with_children(item) for item in top)
    _check_mandatory(by_tag)
    _check_values(by_tag)
    return MpmPayload(objects)


def encode(qr: MpmPayload) -> str:
    """The payload text with a freshly computed CRC (upper-case hex), validated by ``decode``."""
    objects = list(qr.objects)
    if objects and objects[-1].tag == "63":
        objects.pop()
    body = "".join(o.encoded() for o in objects) + "6304"
    text = f"{body}{crc16_ccitt_false(body.encode('utf-8')):04X}"
    decode(text)  # everything we produce must be something we accept
    return text


def _check_order(top: list[Located], by_tag: dict[str, Located]) -> None:
    if top[0].tag != "00":
        if "00" in by_tag:
            raise QrTagOrder(
                "payload format indicator (00) must be the first data object",
                position=by_tag["00"].tag_position,
                tag_path="00",
            )
        raise QrMissingTag("payload format indicator (00) is missing", position=0, tag_path="00")
    if "63" not in by_tag:
        raise QrMissingTag("CRC (63) is missing", position=0, tag_path="63")
    crc = by_tag["63"]
    if crc is not top[-1]:
        raise QrTagOrder(
            f"CRC (63) must be the last data object; tag {top[-1].tag} follows it",
            position=crc.tag_position,
            tag_path="63",
        )


def _check_crc(payload: str, crc: Located) -> None:
    if len(crc.value) != 4:
        raise QrLengthError(
            f"CRC (63) must be 4 characters, got {len(crc.value)}",
            position=crc.tag_position + 2,
            tag_path="63",
        )
    if not _CRC_HEX.fullmatch(crc.value):
        # Lower-case hex is refused rather than normalised, so that every payload we accept
        # re-encodes to itself (encode always writes upper case).
        raise QrCrcMismatch(
            f"CRC must be 4 upper-case hex digits, got {crc.value!r}",
            position=crc.value_position,
            tag_path="63",
        )
    expected = f"{crc16_ccitt_false(payload[: crc.value_position].encode('utf-8')):04X}"
    if crc.value != expected:
        raise QrCrcMismatch(
            f"CRC mismatch: payload says {crc.value}, content gives {expected}",
            position=crc.value_position,
            tag_path="63",
            expected=expected,
            found=crc.value,
        )


def _with_children(item: Located) -> DataObject:
    if item.tag not in TEMPLATE_TAGS:
        return DataObject(item.tag, item.value)
    children = split(item.value, offset=item.value_position, parent=item.tag)
    if item.tag in _GUID_TEMPLATES and all(c.tag != "00" for c in children):
        raise QrMissingTag(
            "template has no globally unique identifier (sub-tag 00)",
            position=item.value_position,
            tag_path=f"{item.tag}.00",
        )
    if item.tag == "64":
        # The language template must say which language, and the merchant's name in it.
        present = {c.tag for c in children}
        for sub_tag, what in (("00", "language preference"), ("01", "merchant name")):
            if sub_tag not in present:
                raise QrMissingTag(
                    f"language template has no {what} (sub-tag {sub_tag})",
                    position=item.value_position,
                    tag_path=f"64.{sub_tag}",
                )
    return DataObject(item.tag, item.value, tuple(DataObject(c.tag, c.value) for c in children))


def _check_mandatory(by_tag: dict[str, Located]) -> None:
    for tag in _MANDATORY:
        if tag not in by_tag:
            raise QrMissingTag(f"mandatory tag {tag} is missing", position=0, tag_path=tag)
    if not _ACCOUNT_TAGS.intersection(by_tag):
        raise QrMissingTag(
            "no merchant account information (tags 02-51)", position=0, tag_path="02-51"
        )


def _check_values(by_tag: dict[str, Located]) -> None:
    def refuse(tag: str, why: str) -> NoReturn:
        item = by_tag[tag]
        raise QrInvalidValue(
            f"{why}, got {item.value!r}", position=item.value_position, tag_path=tag
        )

    if by_tag["00"].value != "01":
        refuse("00", "payload format indicator must be 01")
    if "01" in by_tag and by_tag["01"].value not in _INITIATION_CODES:
        refuse("01", "point of initiation must be 11 (static) or 12 (dynamic)")
    if not (len(by_tag["52"].value) == 4 and is_ascii_digits(by_tag["52"].value)):
        refuse("52", "merchant category code must be 4 digits")
    currency = by_tag["53"].value
    if not (len(currency) == 3 and is_ascii_digits(currency)):
        refuse("53", "transaction currency must be 3 digits (ISO 4217 numeric)")
    country = by_tag["58"].value
    if not (len(country) == 2 and country.isascii() and country.isalpha() and country.isupper()):
        refuse("58", "country code must be 2 upper-case letters (ISO 3166-1 alpha-2)")
    if "54" in by_tag:
        _check_amount(by_tag["54"], minor_exponent_of_numeric(currency))
    if "55" in by_tag:
        indicator = by_tag["55"].value
        if indicator not in _TIP_INDICATORS:
            refuse("55", "tip or convenience indicator must be 01, 02 or 03")
        fee_tag = _FEE_TAG.get(indicator)
        if fee_tag is not None and fee_tag not in by_tag:
            raise QrMissingTag(
                f"tip or convenience indicator {indicator} needs the fee in tag {fee_tag}",
                position=by_tag["55"].tag_position,
                tag_path=fee_tag,
            )


def _check_amount(item: Located, exponent: int | None) -> None:
    amount = item.value

    def refuse(why: str) -> NoReturn:
        raise QrAmountFormat(
            f"transaction amount {why}, got {amount!r}",
            position=item.value_position,
            tag_path="54",
        )

    if len(amount) > _MAX_AMOUNT_LENGTH:
        refuse(f"must be at most {_MAX_AMOUNT_LENGTH} characters")
    if not _AMOUNT.fullmatch(amount):
        refuse('must be digits with at most one "." after a digit')
    whole, _, decimals = amount.partition(".")
    if int(whole) == 0 and not decimals.strip("0"):
        refuse("must not be zero")
    if exponent is not None and len(decimals) > exponent:
        refuse(f"has more decimals than the currency's {exponent}")
