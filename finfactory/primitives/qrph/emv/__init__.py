"""QR Ph / EMVCo Merchant-Presented Mode codec: pure code, no storage.

``decode``/``encode`` handle any EMVCo MPM payload byte for byte; ``build_payload`` and
``read_merchant_qr`` speak QR Ph (P2M ``ph.ppmi.p2m``, P2P ``com.p2pqrpay``) in terms of a
:class:`MerchantQrSpec`; ``render_png``/``render_svg`` (module ``render``) draw the symbol and
import the optional ``segno`` package only when called. See docs/qrph-codec.md.
"""

from finfactory.primitives.qrph.emv.crc import crc16_ccitt_false
from finfactory.primitives.qrph.emv.errors import (
    QrAmountFormat,
    QrCrcMismatch,
    QrDuplicateTag,
    QrFormatError,
    QrInvalidValue,
    QrLengthError,
    QrMissingTag,
    QrNotQrPh,
    QrSpecInvalid,
    QrTagError,
    QrTagOrder,
)
from finfactory.primitives.qrph.emv.merchant import (
    P2P_ACCOUNT_TYPE,
    MerchantQrSpec,
    build_payload,
    read_merchant_qr,
)
from finfactory.primitives.qrph.emv.payload import (
    MAX_PAYLOAD_LENGTH,
    P2M_GUID,
    P2P_GUID,
    QRPH_GUID,
    Initiation,
    MerchantAccount,
    MpmPayload,
    QrKind,
    decode,
    encode,
)
from finfactory.primitives.qrph.emv.render import render_png, render_svg
from finfactory.primitives.qrph.emv.tlv import DataObject

__all__ = [
    "MAX_PAYLOAD_LENGTH",
    "P2M_GUID",
    "P2P_ACCOUNT_TYPE",
    "P2P_GUID",
    "QRPH_GUID",
    "DataObject",
    "Initiation",
    "MerchantAccount",
    "MerchantQrSpec",
    "MpmPayload",
    "QrAmountFormat",
    "QrCrcMismatch",
    "QrDuplicateTag",
    "QrFormatError",
    "QrInvalidValue",
    "QrKind",
    "QrLengthError",
    "QrMissingTag",
    "QrNotQrPh",
    "QrSpecInvalid",
    "QrTagError",
    "QrTagOrder",
    "build_payload",
    "crc16_ccitt_false",
    "decode",
    "encode",
    "read_merchant_qr",
    "render_png",
    "render_svg",
]
