"""pydantic building blocks for commands and results: strict money, typed input errors."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Annotated, Any, Self

import pydantic
from pydantic import BaseModel, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from finfactory.kernel.errors import MoneyError, ValidationError
from finfactory.kernel.money import Money, money_from_json, money_to_json, to_minor

_MONEY_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
    "required": ["amount", "currency"],
    "additionalProperties": False,
}


def _checked(value: Any, *, positive: bool) -> Money:
    # Raised as a pydantic error so that pydantic adds where it happened ("legs.1.amount");
    # translate_validation_error turns it back into a MoneyError.
    try:
        money = value if isinstance(value, Money) else money_from_json(value)
        if positive:
            to_minor(money, allow_zero=False)
        else:
            to_minor(money, allow_negative=True)
    except MoneyError as err:
        raise PydanticCustomError("invalid_money", err.message) from None
    return money


def _money(value: Any) -> Money:
    return _checked(value, positive=False)


def _positive_money(value: Any) -> Money:
    return _checked(value, positive=True)


def _metadata_value(value: Any) -> str | int | bool | None:
    if value is None or (isinstance(value, str | bool | int) and not isinstance(value, float)):
        return value
    raise PydanticCustomError(
        "invalid_metadata", "metadata values must be strings, integers, booleans or null"
    )


MetadataValue = Annotated[str | int | bool | None, PlainValidator(_metadata_value)]


def _serialize(money: Money) -> dict[str, str]:
    return money_to_json(money)


MoneyAmount = Annotated[
    Money,
    PlainValidator(_money),
    PlainSerializer(_serialize, when_used="json"),
    WithJsonSchema(_MONEY_SCHEMA),
]
PositiveMoney = Annotated[
    Money,
    PlainValidator(_positive_money),
    PlainSerializer(_serialize, when_used="json"),
    WithJsonSchema(_MONEY_SCHEMA),
]


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "request"


def translate_validation_error(err: pydantic.ValidationError) -> ValidationError:
    first = err.errors()[0]
    inner = tuple((first.get("ctx") or {}).get("inner_loc") or ())
    field = _field_path(tuple(first["loc"]) + inner)
    if first["type"] == "invalid_money":
        return MoneyError(str(first["msg"]), field=field)
    if first["type"] == "invalid_metadata":
        return ValidationError(str(first["msg"]), field=field)
    return ValidationError(f"{field}: {first['msg']}", field=field, errors=len(err.errors()))


class Model(BaseModel):
    """Frozen, strict-ish model whose construction errors are FinFactory ValidationErrors."""

    model_config = pydantic.ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, strict=False
    )

    def __init__(self, /, **data: Any) -> None:
        # pydantic builds nested models through this __init__ too. Only the outermost call
        # translates; a nested one hands its error back to pydantic with its own location,
        # so the final field reads "legs.1.amount", not "amount".
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            if token.old_value in (0, Token.MISSING):
                refuse_unstorable_text(data)
            super().__init__(**data)
        except pydantic.ValidationError as err:
            if token.old_value not in (0, Token.MISSING):
                raise _nested(err) from None
            raise translate_validation_error(err) from None
        finally:
            _DEPTH.reset(token)

    @classmethod
    def parse(cls, data: Any) -> Self:
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            refuse_unstorable_text(data)
            return cls.model_validate(data)
        except pydantic.ValidationError as err:
            raise translate_validation_error(err) from None
        finally:
            _DEPTH.reset(token)


_DEPTH: ContextVar[int] = ContextVar("finfactory_model_depth", default=0)


def refuse_unstorable_text(value: Any, path: str = "") -> None:
    """NUL characters and lone surrogates are refused everywhere, in keys too: PostgreSQL
    cannot store NUL in text, no backend can encode a lone surrogate (the memory store would
    keep it), and the same input must give the same answer on every backend."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("text must not contain NUL characters", field=path or "request")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(
                    "text must be valid Unicode (a lone surrogate cannot be stored)",
                    field=path or "request",
                ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            label = _printable_key(key)
            child = f"{path}.{label}" if path else label
            refuse_unstorable_text(key, child)
            refuse_unstorable_text(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            refuse_unstorable_text(item, f"{path}.{index}" if path else str(index))


def _printable_key(key: Any) -> str:
    """A key as it can appear in an error's field name (which must itself be storable)."""
    if isinstance(key, str) and key.isascii() and "\x00" not in key:
        return key  # nearly always: no copy on the hot path
    text = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def _nested(err: pydantic.ValidationError) -> PydanticCustomError:
    first = err.errors()[0]
    inner = tuple(first["loc"]) + tuple((first.get("ctx") or {}).get("inner_loc") or ())
    return PydanticCustomError(str(first["type"]), str(first["msg"]), {"inner_loc": inner})
