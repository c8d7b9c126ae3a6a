"""Money at the edges, integer minor units inside.

py-moneyed does not quantize (``Money("10.005", "PHP")`` is accepted), so every conversion
into the SDK goes through :func:`to_minor`, which refuses anything not exact in the currency's
minor unit. Floats are refused outright: ``0.1`` is not a price.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from moneyed import Currency, CurrencyDoesNotExist, Money, get_currency

from finfactory.kernel.errors import MoneyError

__all__ = [
    "Money",
    "currency",
    "from_minor",
    "minor_exponent",
    "money_from_json",
    "money_to_json",
    "parse_amount",
    "to_minor",
]


@lru_cache(maxsize=512)
def _known_currency(code: str) -> Currency | None:
    try:
        return get_currency(code)
    except CurrencyDoesNotExist:
        return None


# ISO 4217 codes whose minor unit is "N.A.": no currency (XXX), testing (XTS), precious
# metals, bond-market units and fund codes. They are not money a ledger can hold in minor
# units, although py-moneyed knows them.
_NO_MINOR_UNIT = frozenset(
    {"XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA"}
)


def currency(code: object, *, field: str = "currency") -> Currency:
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha() or not code.isupper():
        raise MoneyError(f"currency must be an ISO 4217 code, got {code!r}", field=field)
    if code in _NO_MINOR_UNIT:
        raise MoneyError(f"{code} has no minor unit in ISO 4217: not a currency", field=field)
    found = _known_currency(code)
    if found is None:
        raise MoneyError(f"unknown currency {code!r}", field=field)
    return found


def minor_exponent(cur: Currency) -> int:
    """Digits after the decimal point: 2 for PHP, 0 for JPY, 3 for KWD."""
    return _exponent(cur.code)


@lru_cache(maxsize=512)
def _exponent(code: str) -> int:
    cur = currency(code)
    sub_unit = int(cur.sub_unit)
    exponent = len(str(sub_unit)) - 1
    if 10**exponent != sub_unit:  # pragma: no cover - ISO data is decimal
        raise MoneyError(f"currency {cur.code} has a non-decimal minor unit", field="currency")
    return exponent


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """A Decimal from a Decimal, int or numeric string; never from a float or bool."""
    if isinstance(value, (bool, float)):
        raise MoneyError("amounts must not be floats; pass a string or Decimal", field=field)
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"not a decimal amount: {value!r}", field=field) from None
    else:
        raise MoneyError(f"not an amount: {type(value).__name__}", field=field)
    if not dec.is_finite():
        raise MoneyError("amount must be finite", field=field)
    return dec


# Amounts and balances are stored as signed 64-bit integers of minor units.
MAX_MINOR = 2**63 - 1
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


# Decimal text up to this length has a small exact ratio; longer text is checked digit by digit.
_SHORT_DECIMAL_TEXT = 40


def exact_minor(amount: Decimal, exponent: int) -> int | None:
    """``amount`` in minor units if it is exact at ``exponent`` decimals, else None.

    Integer arithmetic only: no context precision, so no silent rounding however many digits
    the amount has. Time is linear in the amount's digits; callers bound its magnitude.
    """
    if amount.adjusted() < -exponent:
        # Below one minor unit: exact only as zero (1E-10000000 is not expanded).
        return None if amount else 0
    if len(str(amount)) <= _SHORT_DECIMAL_TEXT:
        # The common case, and the fastest: the exact ratio of a short decimal.
        numerator, denominator = amount.as_integer_ratio()
        scaled: int = numerator * 10**exponent
        if scaled % denominator:
            return None
        return scaled // denominator
    # A long coefficient's ratio costs time quadratic in its length: read the digits instead.
    sign, digits, exp = amount.as_tuple()
    assert isinstance(exp, int)  # finite, checked by the caller
    shift = exp + exponent
    if shift < 0:
        if any(digits[shift:]):  # non-zero digits below the minor unit
            return None
        digits, shift = digits[:shift], 0
    minor: int = int("".join(map(str, digits))) * 10**shift
    return -minor if sign else minor


def to_minor(
    money: object, *, field: str = "amount", allow_negative: bool = False, allow_zero: bool = True
) -> tuple[int, str]:
    """``Money`` -> (minor units, currency code), refusing inexact or out-of-range amounts."""
    if not isinstance(money, Money):
        raise MoneyError(f"expected moneyed.Money, got {type(money).__name__}", field=field)
    cur = currency(money.currency.code, field=field)
    amount = parse_amount(money.amount, field=field)
    exponent = minor_exponent(cur)
    if amount.adjusted() > 40:
        raise MoneyError(f"{cur.code} amount is out of range", field=field)
    minor = exact_minor(amount, exponent)
    if minor is None:
        raise MoneyError(
            f"{amount} is not exact in {cur.code} minor units ({exponent} decimals)", field=field
        )
    if abs(minor) > MAX_MINOR:
        raise MoneyError(f"{cur.code} amount is out of range", field=field)
    if minor < 0 and not allow_negative:
        raise MoneyError("amount must not be negative", field=field)
    if minor == 0 and not allow_zero:
        raise MoneyError("amount must be greater than zero", field=field)
    return minor, cur.code


def from_minor(minor: int, code: str) -> Money:
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError("minor units must be an integer", field="amount")
    cur = currency(code)
    return Money(Decimal(minor_to_str(minor, _exponent(code))), cur)


def minor_to_str(minor: int, exponent: int) -> str:
    """Exact decimal text of ``minor`` units: (12345, 2) -> "123.45", (-5, 2) -> "-0.05"."""
    if exponent == 0:
        return str(minor)
    if minor < 0:
        return "-" + minor_to_str(-minor, exponent)
    # Text slicing: about twice as fast as divmod and a format spec (every amount in every
    # event payload comes through here).
    digits = str(minor).zfill(exponent + 1)
    return f"{digits[:-exponent]}.{digits[-exponent:]}"


def money_to_json(money: Money) -> dict[str, str]:
    """``{"amount": "10.00", "currency": "PHP"}``: string amount, fixed minor digits."""
    code = money.currency.code
    amount = money.amount
    if isinstance(amount, Decimal) and amount.is_finite() and amount.adjusted() < 19:
        minor = exact_minor(amount, _exponent(code))
        if minor is not None:
            return minor_to_json(minor, code)
    minor, code = to_minor(money, allow_negative=True)  # raises the precise error
    return minor_to_json(minor, code)


def minor_to_json(minor: int, code: str) -> dict[str, str]:
    return {"amount": minor_to_str(minor, _exponent(code)), "currency": code}


def money_from_json(data: Any, *, field: str = "amount") -> Money:
    if not isinstance(data, dict) or set(data) != {"amount", "currency"}:
        raise MoneyError('money JSON must be {"amount": "...", "currency": "..."}', field=field)
    raw = data["amount"]
    if not isinstance(raw, str):
        raise MoneyError("money JSON amount must be a string", field=field)
    if not _DECIMAL_TEXT.fullmatch(raw):
        raise MoneyError(f"not a plain decimal amount: {raw!r}", field=field)
    cur = currency(data["currency"], field=field)
    amount = parse_amount(raw, field=field)
    money = Money(amount, cur)
    to_minor(money, field=field, allow_negative=True)
    return money
