"""Compact JSON text in and out, fast: outbox payloads, broker messages, stored documents.

pydantic-core's encoder and parser (Rust) do the work; they are several times faster than
:mod:`json` on event payloads, which a relay handles thousands of times a second. The
standard library takes over for the rare inputs they refuse but JSON allows.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core

__all__ = ["decode_json", "encode_json"]


def encode_json(value: Any, field: str = "payload") -> bytes:
    """``value`` as compact UTF-8 JSON (no spaces, non-ASCII characters as they are).

    NaN and infinities are refused, as JSON has no such numbers; values of types pydantic
    serialises (``Decimal``, ``datetime``, ``UUID``) are written in their JSON form; anything
    else is refused. Refusals are a :class:`ValidationError` naming ``field``.
    """
    try:
        data = pydantic_core.to_json(value)
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError):
        data = None  # something the standard encoder may still handle, or explain
    if data is not None and b"NaN" not in data and b"Infinity" not in data:
        return data
    # Rare: a lone surrogate (which the standard encoder \u-escapes, losslessly), a string
    # merely containing "NaN", or a value that is not JSON at all.
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        # Imported here: the kernel's package imports the envelope, which imports this.
        from finfactory.kernel.errors import ValidationError

        raise ValidationError(f"{field} is not JSON: {exc}", field=field) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def decode_json(text: str | bytes) -> Any:
    """Parse JSON text; an escaped lone surrogate or very deep nesting, which pydantic-core
    refuses, goes to the standard parser."""
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)
