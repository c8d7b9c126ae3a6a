"""Typed errors of the EMVCo / QR Ph codec; codes are stable.

Every payload error says WHAT went wrong (the class, its ``code`` and the message) and WHERE:
``position`` is the 0-based character offset in the payload string and ``tag_path`` the data
object concerned, sub-tags joined by dots ("62.05"; "" for the payload as a whole). Both also
sit in ``details`` so they survive ``to_dict()`` and an idempotent replay.
"""

from __future__ import annotations

from typing import Any

from finfactory.kernel.errors import ValidationError

__all__ = [
    "QrAmountFormat",
    "QrCrcMismatch",
    "QrDuplicateTag",
    "QrFormatError",
    "QrInvalidValue",
    "QrLengthError",
    "QrMissingTag",
    "QrNotQrPh",
    "QrSpecInvalid",
    "QrTagError",
    "QrTagOrder",
]


class QrFormatError(ValidationError):
    """A payload that is not a well-formed EMVCo merchant-presented QR payload."""

    code = "qrph.malformed_payload"

    def __init__(self, message: str, *, position: int, tag_path: str, **details: Any) -> None:
        where = f"at character {position}" + (f" (tag {tag_path})" if tag_path else "")
        super().__init__(
            f"{message} {where}", field="payload", position=position, tag_path=tag_path, **details
        )

    @property
    def position(self) -> int:
        return int(self.details["position"])

    @property
    def tag_path(self) -> str:
        return str(self.details["tag_path"])


class QrTagError(QrFormatError):
    """A tag that is not two ASCII digits."""

    code = "qrph.invalid_tag"


class QrLengthError(QrFormatError):
    """A length that is not two digits, is zero, or runs past the end of its container."""

    code = "qrph.invalid_length"


class QrCrcMismatch(QrFormatError):
    """The CRC (tag 63) is not four upper-case hex digits or does not match the payload."""

    code = "qrph.crc_mismatch"


class QrMissingTag(QrFormatError):
    code = "qrph.missing_tag"


class QrDuplicateTag(QrFormatError):
    code = "qrph.duplicate_tag"


class QrTagOrder(QrFormatError):
    """The payload format indicator (00) is not first or the CRC (63) is not last."""

    code = "qrph.tag_order"


class QrAmountFormat(QrFormatError):
    code = "qrph.invalid_amount"


class QrInvalidValue(QrFormatError):
    """A known data object whose value breaks its format (PFI, initiation, MCC, currency...)."""

    code = "qrph.invalid_value"


class QrNotQrPh(QrFormatError):
    """A valid EMVCo payload without a QR Ph P2M or P2P merchant account template."""

    code = "qrph.not_qrph"


class QrSpecInvalid(ValidationError):
    """A :class:`MerchantQrSpec` that cannot be encoded; ``field`` names the offending field."""

    code = "qrph.invalid_qr_spec"
