"""pydantic building blocks for commands and results: strict money, typed input errors."""

from __future__ import annotations

from typing import Annotated, Any, Self

import pydantic
from pydantic import BaseModel, PlainSerializer, PlainValidator, WithJsonSchema

from finfactory.kernel.errors import FinFactoryError, MoneyError, ValidationError
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


def _money(value: Any) -> Money:
    money = value if isinstance(value, Money) else money_from_json(value)
    to_minor(money, allow_negative=True)
    return money


def _positive_money(value: Any) -> Money:
    money = value if isinstance(value, Money) else money_from_json(value)
    to_minor(money, allow_zero=False)
    return money


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


def translate_validation_error(err: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    first = err.errors()[0]
    field = _field_path(tuple(first["loc"]))
    if prefix:
        field = f"{prefix}.{field}" if field != "request" else prefix
    ctx_error = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_error, MoneyError):
        return MoneyError(ctx_error.message, field=field)
    if isinstance(ctx_error, ValidationError):
        return ValidationError(ctx_error.message, field=field)
    return ValidationError(f"{field}: {first['msg']}", field=field, errors=len(err.errors()))


class Model(BaseModel):
    """Frozen, strict-ish model whose construction errors are FinFactory ValidationErrors."""

    model_config = pydantic.ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, strict=False
    )

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as err:
            raise translate_validation_error(err) from None
        except FinFactoryError:
            raise

    @classmethod
    def parse(cls, data: Any) -> Self:
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as err:
            raise translate_validation_error(err) from None
