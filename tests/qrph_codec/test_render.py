"""Rendering: valid payloads only, UTF-8 byte mode, level M or better, images that match."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import pytest

from finfactory.primitives.qrph.emv import QrFormatError
from finfactory.primitives.qrph.emv.render import make_symbol, render_png, render_svg
from tests.qrph_codec.helpers import SHARED_VECTORS, STATIC_BODY, read_vectors, seal

PAYLOAD = seal(STATIC_BODY)
EMVCO_SAMPLE = next(row[-1] for row in read_vectors(SHARED_VECTORS) if "EMVCo" in row[1])


def png_pixels(data: bytes) -> list[list[int]]:
    """Rows of 0/1 pixels of a 1-bit greyscale PNG (what segno writes), 1 = white."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (1, 0)
    stride = (width + 7) // 8
    raw, rows, previous = zlib.decompress(idat), [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        row = bytearray(_unfilter(line[0], line[1:], previous))
        rows.append([(row[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        previous = row
    return rows


def _unfilter(kind: int, line: bytes, up: bytearray) -> bytearray:
    out = bytearray(len(line))
    for i, byte in enumerate(line):
        left = out[i - 1] if i else 0
        above, corner = up[i], (up[i - 1] if i else 0)
        if kind == 0:
            predictor = 0
        elif kind == 1:
            predictor = left
        elif kind == 2:
            predictor = above
        elif kind == 3:
            predictor = (left + above) // 2
        else:
            p = left + above - corner
            pa, pb, pc = abs(p - left), abs(p - above), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else above if pb <= pc else corner
        out[i] = (byte + predictor) & 0xFF
    return out


@pytest.mark.parametrize("payload", [PAYLOAD, EMVCO_SAMPLE])
def test_symbol_is_utf8_byte_mode_at_level_m_or_better(payload: str) -> None:
    symbol: Any = make_symbol(payload)
    assert symbol.mode == "byte"  # never Kanji, even for the Chinese sample
    assert symbol.error in ("M", "Q", "H")
    assert not symbol.is_micro
    # Byte mode capacity is counted in UTF-8 bytes: the version must hold all of them.
    import segno

    smallest = segno.make(
        payload.encode("utf-8"), error=symbol.error, mode="byte", micro=False, boost_error=False
    )
    assert symbol.version == smallest.version


def test_png_pixels_are_the_symbol_modules() -> None:
    scale, border = 3, 2
    pixels = png_pixels(render_png(PAYLOAD, scale=scale, border=border))
    matrix = make_symbol(PAYLOAD).matrix
    size = len(matrix)
    assert len(pixels) == (size + 2 * border) * scale
    for y, row in enumerate(pixels):
        for x, white in enumerate(row):
            my, mx = y // scale - border, x // scale - border
            dark = 0 <= my < size and 0 <= mx < size and bool(matrix[my][mx])
            assert white == (0 if dark else 1), (x, y)


def test_svg_is_well_formed_and_sized() -> None:
    svg = render_svg(PAYLOAD, scale=5, border=4)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    size = len(make_symbol(PAYLOAD).matrix)
    assert float(root.attrib["width"]) == (size + 8) * 5


@pytest.mark.parametrize("render", [render_png, render_svg])
def test_invalid_payloads_are_never_rendered(render: Any) -> None:
    with pytest.raises(QrFormatError):
        render(PAYLOAD[:-1] + ("0" if PAYLOAD[-1] != "0" else "1"))
