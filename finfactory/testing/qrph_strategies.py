"""Hypothesis strategies for QR Ph / EMVCo merchant-presented payloads.

``merchant_qr_specs()`` draws :class:`MerchantQrSpec` values that ``build_payload`` accepts.
``mpm_payloads()`` draws valid payload *strings*, serialised here independently of the codec
(only the CRC function is shared): QR Ph and foreign merchant account templates in any slot
26-51, a card-network account in 02-25, unknown and reserved (RFU) tags, tag 62 with arbitrary
sub-tags, tag 64 and non-ASCII names, a tip indicator with its fee, sometimes no point of
initiation (optional in EMVCo), all in shuffled order between "00" and the CRC.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from finfactory.primitives.qrph.emv import (
    MAX_PAYLOAD_LENGTH,
    P2M_GUID,
    P2P_GUID,
    QRPH_GUID,
    Initiation,
    MerchantQrSpec,
    QrKind,
    crc16_ccitt_false,
)

__all__ = ["merchant_qr_specs", "mpm_payloads"]

# Numeric currency -> decimals, for amounts that respect the currency's minor unit.
_CURRENCIES = {"608": 2, "840": 2, "392": 0, "414": 3}
_ALPHA_CURRENCIES = ("PHP", "USD", "JPY", "KWD")
_BIC = r"[A-Z]{4}PH[A-Z0-9]{2}([A-Z0-9]{3})?"
_MAX_TEMPLATE = 99


def _ans(max_size: int) -> st.SearchStrategy[str]:
    """EMVCo 'ans': printable ASCII."""
    return st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=max_size
    )


def _any_text(max_size: int) -> st.SearchStrategy[str]:
    """Any Unicode a UTF-8 payload can carry (no lone surrogates): Chinese, emoji, ñ..."""
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=max_size)


def _tags(first: int, last: int) -> list[str]:
    return [f"{t:02d}" for t in range(first, last + 1)]


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.from_regex(rf"[0-9]{{{n}}}", fullmatch=True)


@st.composite
def merchant_qr_specs(draw: st.DrawFn) -> MerchantQrSpec:
    initiation = draw(st.sampled_from(Initiation))
    amount = draw(st.integers(1, 10**12 - 1)) if initiation is Initiation.DYNAMIC else None
    return MerchantQrSpec(
        kind=draw(st.sampled_from(QrKind)),
        initiation=initiation,
        acquirer_id=draw(st.from_regex(_BIC, fullmatch=True)),
        merchant_account=draw(_ans(50)),
        merchant_name=draw(_ans(25)),
        merchant_city=draw(_ans(15)),
        mcc=draw(_digits(4)),
        currency=draw(st.sampled_from(_ALPHA_CURRENCIES)),
        amount_minor=amount,
        reference_label=draw(st.none() | _ans(25)),
        postal_code=draw(st.none() | _ans(10)),
    )


def _tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def _template(draw: st.DrawFn, fixed: list[tuple[str, str]], extra_max: int) -> str:
    """Sub-objects ``fixed`` then a few unknown sub-tags, in shuffled order after 00."""
    used = {tag for tag, _ in fixed}
    free = [tag for tag in _tags(0, 99) if tag not in used]
    extra_tags = draw(st.lists(st.sampled_from(free), unique=True, max_size=extra_max))
    extras = [(tag, draw(_any_text(12))) for tag in extra_tags]
    head, rest = fixed[:1], draw(st.permutations(fixed[1:] + extras))
    value = ""
    for tag, text in head + list(rest):
        piece = _tlv(tag, text)
        if len(value) + len(piece) <= _MAX_TEMPLATE:
            value += piece
    return value


def _account(draw: st.DrawFn, guid: str) -> str:
    fixed = [("00", guid), ("01", draw(st.from_regex(_BIC, fullmatch=True)))]
    if guid == P2P_GUID:
        fixed.append(("02", "99964403"))
    fixed.append(("04" if guid == P2P_GUID else "03", draw(_ans(25))))
    return _template(draw, fixed, extra_max=2)


def _amount(draw: st.DrawFn, exponent: int) -> str:
    whole = draw(st.integers(0, 10**8))
    decimals = draw(_digits(draw(st.integers(0, exponent)))) if exponent else ""
    if whole == 0 and not decimals.strip("0"):
        whole = 1  # EMVCo: the amount is never zero
    style = draw(st.sampled_from(["plain", "dot"])) if not decimals else "dot"
    return f"{whole}" if style == "plain" else f"{whole}.{decimals}"  # "98." is valid too


@st.composite
def mpm_payloads(draw: st.DrawFn) -> str:
    currency = draw(st.sampled_from(sorted(_CURRENCIES)))
    slots = draw(st.lists(st.sampled_from(_tags(26, 51)), min_size=1, max_size=3, unique=True))
    guids = st.sampled_from([P2M_GUID, P2P_GUID, "SG.PAYNOW", "A000000677010111"]) | _ans(16)
    mandatory: list[tuple[str, str]] = [(slot, _account(draw, draw(guids))) for slot in slots]
    mandatory += [
        ("52", draw(_digits(4))),
        ("53", currency),
        ("58", draw(st.from_regex(r"[A-Z]{2}", fullmatch=True))),
        ("59", draw(_any_text(25))),
        ("60", draw(_any_text(15))),
    ]
    optional: list[tuple[str, Callable[[], str]]] = [
        ("54", lambda: _amount(draw, _CURRENCIES[currency])),
        ("61", lambda: draw(_ans(10))),
        ("62", lambda: _template(draw, [("00", QRPH_GUID), ("05", draw(_ans(25)))], 3)),
        ("64", lambda: _template(draw, [("00", "ZH"), ("01", draw(_any_text(25)))], 1)),
        # a card network's account (02-25), an RFU tag (65-79), an unreserved template (80-99)
        (draw(st.sampled_from(_tags(2, 25))), lambda: draw(_ans(30))),
        (draw(st.sampled_from(_tags(65, 79))), lambda: draw(_any_text(20))),
        (
            draw(st.sampled_from(_tags(80, 99))),
            lambda: _template(draw, [("00", draw(_ans(20)))], 2),
        ),
    ]
    objects = list(mandatory)
    budget = MAX_PAYLOAD_LENGTH - len("000201") - len("010211") - len("6304XXXX")
    budget -= sum(len(_tlv(tag, value)) for tag, value in objects)
    for tag, make in optional:
        if draw(st.booleans()):
            value = make()
            if len(_tlv(tag, value)) <= budget:
                objects.append((tag, value))
                budget -= len(_tlv(tag, value))
    # Tip or convenience indicator: 02 and 03 bring their fee (56 fixed, 57 percentage).
    tip = draw(st.sampled_from(["", "01", "02", "03"]))
    fees = {"02": [("56", "1.50")], "03": [("57", "2.5")]}
    tip_objects = [("55", tip), *fees.get(tip, [])] if tip else []
    if sum(len(_tlv(tag, value)) for tag, value in tip_objects) <= budget:
        objects += tip_objects
    initiation = "12" if any(tag == "54" for tag, _ in objects) and draw(st.booleans()) else "11"
    # The point of initiation is optional in EMVCo (QR Ph always writes it).
    if draw(st.integers(0, 9)) > 0:
        objects.append(("01", initiation))
    # Only 00 (first) and 63 (last) have fixed places; everything else keeps a drawn order.
    shuffled = draw(st.permutations(objects))
    body = _tlv("00", "01") + "".join(_tlv(tag, value) for tag, value in shuffled) + "6304"
    return f"{body}{crc16_ccitt_false(body.encode('utf-8')):04X}"
