"""Properties over generated payloads and specs (strategies from finfactory.testing)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from finfactory.primitives.qrph.emv import (
    DataObject,
    MerchantQrSpec,
    QrFormatError,
    build_payload,
    decode,
    encode,
    read_merchant_qr,
)
from finfactory.testing.qrph_strategies import merchant_qr_specs, mpm_payloads


@settings(max_examples=300)
@given(mpm_payloads())
def test_encode_decode_is_the_identity(payload: str) -> None:
    qr = decode(payload)
    assert encode(qr) == payload
    # Every data object is kept, in order, with its raw value.
    assert "".join(o.encoded() for o in qr.objects) == payload


@settings(max_examples=300)
@given(merchant_qr_specs())
def test_build_then_read_gives_the_spec_back(spec: MerchantQrSpec) -> None:
    payload = build_payload(spec)
    assert read_merchant_qr(payload) == spec
    assert encode(decode(payload)) == payload
    assert payload[-4:] == payload[-4:].upper()


@settings(max_examples=200)
@given(mpm_payloads(), st.data())
def test_a_single_changed_character_is_rejected_or_still_round_trips(
    payload: str, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(payload) - 1), label="index")
    replacement = data.draw(
        st.characters(codec="utf-8").filter(lambda c: c != payload[index]), label="char"
    )
    mutated = payload[:index] + replacement + payload[index + 1 :]
    try:
        qr = decode(mutated)
    except QrFormatError:
        return
    assert encode(qr) == mutated


@settings(max_examples=300)
@given(st.text(st.characters(codec="utf-8"), max_size=80))
def test_arbitrary_text_never_crashes_the_decoder(text: str) -> None:
    with contextlib.suppress(QrFormatError):
        decode(text)


@given(mpm_payloads())
def test_templates_are_their_children(payload: str) -> None:
    for obj in decode(payload).objects:
        if obj.children is not None:
            assert DataObject.template(obj.tag, obj.children) == obj
