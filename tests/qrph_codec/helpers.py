"""Build test payloads by hand, independently of the codec (only the CRC is shared)."""

from __future__ import annotations

from pathlib import Path

from finfactory.primitives.qrph.emv import crc16_ccitt_false

SHARED_VECTORS = Path("/work/shared/vectors/qrph_samples.tsv")
OWN_VECTORS = Path(__file__).with_name("published_vectors.tsv")


def tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def seal(body: str) -> str:
    """``body`` + "6304" + its CRC: a payload whose only faults are the ones in ``body``."""
    body += "6304"
    return f"{body}{crc16_ccitt_false(body.encode('utf-8')):04X}"


P2M_ACCOUNT = tlv("00", "ph.ppmi.p2m") + tlv("01", "GXCHPHM2XXX") + tlv("03", "2170200000006")
P2P_ACCOUNT = (
    tlv("00", "com.p2pqrpay")
    + tlv("01", "PAEYPHM2XXX")
    + tlv("02", "99964403")
    # P2P accounts carry the credit account in sub-tag 04
    + tlv("04", "985889386153")
)

# Every mandatory data object, in the order QR Ph issuers write them.
PFI = tlv("00", "01")
STATIC = tlv("01", "11")
DYNAMIC = tlv("01", "12")
ACCOUNT = tlv("28", P2M_ACCOUNT)
MCC = tlv("52", "5812")
CURRENCY = tlv("53", "608")
COUNTRY = tlv("58", "PH")
NAME = tlv("59", "Gong Cha")
CITY = tlv("60", "Makati")
ADDITIONAL = tlv("62", tlv("00", "ph.ppmi.qrph") + tlv("05", "INV-1"))

STATIC_BODY = PFI + STATIC + ACCOUNT + MCC + CURRENCY + COUNTRY + NAME + CITY + ADDITIONAL


def read_vectors(path: Path) -> list[tuple[str, ...]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(tuple(line.split("\t")))
    return rows
