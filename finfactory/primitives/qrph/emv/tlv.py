"""EMVCo tag-length-value: two-digit tag, two-digit length in characters, then the value.

Lengths count characters (Unicode code points), not bytes: ``0104最佳运输`` is a four-character
value. Values are kept exactly as written, so serialising what was parsed gives back the same
text.
"""

from __future__ import annotations

import attrs

from finfactory.kernel.errors import ValidationError
from finfactory.primitives.qrph.emv.errors import (
    QrDuplicateTag,
    QrLengthError,
    QrTagError,
)

__all__ = ["MAX_VALUE_LENGTH", "DataObject", "is_ascii_digits", "join_path"]

MAX_VALUE_LENGTH = 99


def is_ascii_digits(text: str) -> bool:
    # str.isdigit() alone accepts "²" and Arabic-Indic digits; EMVCo means 0-9.
    return text.isascii() and text.isdigit()


def join_path(parent: str, tag: str) -> str:
    return f"{parent}.{tag}" if parent else tag


@attrs.frozen
class DataObject:
    """One data object. ``value`` is the raw text; ``children`` is its parse for templates."""

    tag: str
    value: str
    children: tuple[DataObject, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if not (len(self.tag) == 2 and is_ascii_digits(self.tag)):
            raise ValidationError(f"tag must be two digits, got {self.tag!r}", field="tag")
        if not 1 <= len(self.value) <= MAX_VALUE_LENGTH:
            raise ValidationError(
                f"tag {self.tag}: value must be 1..{MAX_VALUE_LENGTH} characters, "
                f"got {len(self.value)}",
                field="value",
            )
        if self.children is not None and "".join(c.encoded() for c in self.children) != (
            self.value
        ):
            raise ValidationError(
                f"tag {self.tag}: children do not serialise to the value", field="children"
            )

    @classmethod
    def primitive(cls, tag: str, value: str) -> DataObject:
        return cls(tag=tag, value=value)

    @classmethod
    def template(cls, tag: str, children: tuple[DataObject, ...]) -> DataObject:
        return cls(tag=tag, value="".join(c.encoded() for c in children), children=children)

    def encoded(self) -> str:
        return f"{self.tag}{len(self.value):02d}{self.value}"

    def child(self, tag: str) -> DataObject | None:
        return next((c for c in self.children or () if c.tag == tag), None)


@attrs.frozen
class Located:
    """A data object as found in a payload: where its tag and its value start."""

    tag: str
    value: str
    tag_position: int
    value_position: int
    path: str


def split(text: str, *, offset: int, parent: str) -> list[Located]:
    """Cut ``text`` (which starts at ``offset`` in the payload) into data objects.

    Raises on an ill-formed tag or length, and on a tag that appears twice at this level.
    """
    found: list[Located] = []
    seen: dict[str, int] = {}
    pos = 0
    while pos < len(text):
        here = offset + pos
        tag = text[pos : pos + 2]
        if not is_ascii_digits(tag):
            raise QrTagError(f"tag must be two digits, got {tag!r}", position=here, tag_path=parent)
        if len(tag) < 2:
            raise QrLengthError("data object header is cut short", position=here, tag_path=parent)
        path = join_path(parent, tag)
        length_text = text[pos + 2 : pos + 4]
        if len(length_text) < 2 or not is_ascii_digits(length_text):
            what = "is cut short" if len(length_text) < 2 else f"is not two digits: {length_text!r}"
            raise QrLengthError(f"length {what}", position=here + 2, tag_path=path)
        length = int(length_text)
        if length == 0:
            raise QrLengthError("length must be 01..99, got 00", position=here + 2, tag_path=path)
        end = pos + 4 + length
        if end > len(text):
            raise QrLengthError(
                f"length {length} runs past the end ({len(text) - pos - 4} characters left)",
                position=here + 2,
                tag_path=path,
            )
        if tag in seen:
            raise QrDuplicateTag(
                f"tag {tag} appears twice (first at character {seen[tag]})",
                position=here,
                tag_path=path,
            )
        seen[tag] = here
        found.append(Located(tag, text[pos + 4 : end], here, here + 4, path))
        pos = end
    return found
