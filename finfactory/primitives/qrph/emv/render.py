"""Render a payload as a QR symbol image with segno (the ``finfactory[qr]`` extra).

Error correction level M (recovers ~15% damage: printed stickers get scuffed) is the minimum;
segno raises it to Q or H when that fits in the same symbol size. The payload is validated
with :func:`decode` first, so an invalid payload is never rendered, and it is encoded as
UTF-8 bytes in byte mode (the CRC is computed over UTF-8; segno would otherwise pick
ISO-8859-1 or Kanji for some characters). No ECI header: wallets expect plain bytes.
"""

from __future__ import annotations

import io
from typing import Any

from finfactory.primitives.qrph.emv.payload import decode

__all__ = ["ERROR_LEVEL", "make_symbol", "render_png", "render_svg"]

ERROR_LEVEL = "M"


def make_symbol(payload: str) -> Any:
    """The ``segno.QRCode`` for a valid payload (raises ``QrFormatError`` otherwise)."""
    import segno  # optional dependency: only rendering needs it

    decode(payload)
    return segno.make(
        payload, error=ERROR_LEVEL, mode="byte", encoding="utf-8", micro=False, boost_error=True
    )


def render_png(payload: str, *, scale: int = 8, border: int = 4) -> bytes:
    buffer = io.BytesIO()
    make_symbol(payload).save(buffer, kind="png", scale=scale, border=border)
    return buffer.getvalue()


def render_svg(payload: str, *, scale: int = 4, border: int = 4) -> str:
    buffer = io.BytesIO()
    make_symbol(payload).save(buffer, kind="svg", scale=scale, border=border, encoding="utf-8")
    return buffer.getvalue().decode("utf-8")
