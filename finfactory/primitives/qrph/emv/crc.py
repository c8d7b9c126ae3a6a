"""CRC-16/CCITT-FALSE, the checksum EMVCo puts in tag 63.

Polynomial 0x1021, initial value 0xFFFF, no reflection, no final xor (check value for
b"123456789" is 0x29B1; the XMODEM variant, initial value 0, would give 0x31C3).
"""

from __future__ import annotations

__all__ = ["crc16_ccitt_false"]


def _table() -> tuple[int, ...]:
    rows = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        rows.append(crc & 0xFFFF)
    return tuple(rows)


_TABLE = _table()


def crc16_ccitt_false(data: bytes) -> int:
    """The CRC of ``data``; for a QR payload, ``data`` is the UTF-8 of everything up to "6304"."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc
