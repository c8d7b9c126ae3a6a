"""Money at the edges: exact minor units, string JSON amounts, and refusal of anything lossy."""

from __future__ import annotations

import json
import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st
from moneyed import CURRENCIES

from finfactory.kernel.errors import MoneyError, ValidationError
from finfactory.kernel.money import (
    Money,
    currency,
    exact_minor,
    from_minor,
    minor_exponent,
    minor_to_str,
    money_from_json,
    money_to_json,
    parse_amount,
    to_minor,
)

# Every currency the SDK accepts, by number of minor digits (moneyed's ISO 4217 table).
# py-moneyed also knows codes ISO 4217 gives no minor unit: no currency, testing, metals...
NO_MINOR_UNIT = ["XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR"]
NO_MINOR_UNIT += ["XSU", "XUA"]
ALL_CODES = sorted(set(CURRENCIES) - set(NO_MINOR_UNIT))
BY_EXPONENT = {0: "JPY", 2: "PHP", 3: "KWD"}
INT64 = 2**63 - 1

codes = st.sampled_from(ALL_CODES)
main_codes = st.sampled_from(sorted(BY_EXPONENT.values()))
minor_units = st.integers(min_value=-INT64, max_value=INT64)


def _exp(code: str) -> int:
    return minor_exponent(currency(code))


# -- currencies and exponents ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("JPY", 0), ("PHP", 2), ("USD", 2), ("KWD", 3), ("BHD", 3), ("KRW", 0), ("CLF", 4)],
)
def test_minor_exponent_follows_iso_4217(code: str, exponent: int) -> None:
    assert minor_exponent(currency(code)) == exponent


def test_every_known_currency_has_a_decimal_minor_unit() -> None:
    assert {_exp(code) for code in ALL_CODES} >= {0, 2, 3}
    for code in ALL_CODES:
        assert currency(code).code == code


@pytest.mark.parametrize("code", ["XXQ", "ABC", "php", "Php", "PH", "PHPP", "", "P1P", " PHP"])
def test_currency_refuses_unknown_or_malformed_codes(code: str) -> None:
    with pytest.raises(MoneyError) as info:
        currency(code)
    assert info.value.field == "currency"
    assert info.value.code == "invalid_money"


@pytest.mark.parametrize("code", NO_MINOR_UNIT)
def test_codes_without_a_minor_unit_are_not_currencies(code: str) -> None:
    with pytest.raises(MoneyError, match="no minor unit") as info:
        currency(code)
    assert info.value.field == "currency"
    with pytest.raises(MoneyError):
        money_from_json({"amount": "1", "currency": code})


@pytest.mark.parametrize("code", [None, 608, b"PHP", ["PHP"]])
def test_currency_refuses_non_strings(code: object) -> None:
    with pytest.raises(MoneyError):
        currency(code)


def test_currency_error_names_the_given_field() -> None:
    with pytest.raises(MoneyError) as info:
        currency("XXQ", field="accounts.2.currency")
    assert info.value.field == "accounts.2.currency"


def test_money_error_is_a_validation_error_with_stable_code() -> None:
    err = MoneyError("bad", field="amount")
    assert isinstance(err, ValidationError)
    assert err.to_dict() == {
        "code": "invalid_money",
        "message": "bad",
        "details": {"field": "amount"},
    }


# -- to_minor / from_minor ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "code", "text"),
    [
        (0, "JPY", "0"),
        (7, "JPY", "7"),
        (-1500, "JPY", "-1500"),
        (0, "PHP", "0.00"),
        (5, "PHP", "0.05"),
        (12345, "PHP", "123.45"),
        (-5, "PHP", "-0.05"),
        (1, "KWD", "0.001"),
        (1500, "KWD", "1.500"),
        (-1234567, "KWD", "-1234.567"),
    ],
)
def test_from_minor_gives_exact_amount_with_fixed_digits(minor: int, code: str, text: str) -> None:
    money = from_minor(minor, code)
    assert money.currency.code == code
    assert money.amount == Decimal(text)
    assert str(money.amount) == text
    assert to_minor(money, allow_negative=True) == (minor, code)


@given(
    amount=st.decimals(
        allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30
    ),
    exponent=st.integers(min_value=0, max_value=4),
)
def test_exact_minor_agrees_with_decimal_arithmetic(amount: Decimal, exponent: int) -> None:
    with localcontext() as ctx:
        ctx.prec = 200  # enough for every amount drawn: no rounding in the reference
        scaled = amount.scaleb(exponent)
        expected = int(scaled) if scaled == scaled.to_integral_value() else None
    assert exact_minor(amount, exponent) == expected


@given(
    whole=st.text(alphabet="0123456789", min_size=1, max_size=30),
    fraction=st.text(alphabet="0123456789", min_size=40, max_size=400),  # the long path
    negative=st.booleans(),
    exponent=st.integers(min_value=0, max_value=4),
)
def test_exact_minor_agrees_with_decimal_arithmetic_on_long_fractions(
    whole: str, fraction: str, negative: bool, exponent: int
) -> None:
    amount = Decimal(("-" if negative else "") + whole + "." + fraction)
    with localcontext() as ctx:
        ctx.prec = 1000
        scaled = amount.scaleb(exponent)
        expected = int(scaled) if scaled == scaled.to_integral_value() else None
    assert exact_minor(amount, exponent) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0." + "1" * 300_000, None),  # answered from the digits, not a huge ratio
        ("1." + "0" * 300_000, 100),
        ("1.25" + "0" * 300_000, 125),
        ("-1." + "0" * 300_000 + "1", None),
    ],
)
def test_exact_minor_reads_long_amounts_digit_by_digit(text: str, expected: int | None) -> None:
    assert exact_minor(Decimal(text), 2) == expected


def test_exact_minor_answers_tiny_exponents_without_expanding_them() -> None:
    assert exact_minor(Decimal("1E-10000000"), 2) is None
    assert exact_minor(Decimal("0E-10000000"), 2) == 0
    assert exact_minor(Decimal("-5E-3"), 2) is None


@given(minor=minor_units, exponent=st.integers(min_value=0, max_value=6))
def test_minor_to_str_is_the_exact_decimal_with_fixed_digits(minor: int, exponent: int) -> None:
    expected = f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"
    assert minor_to_str(minor, exponent) == expected


@given(minor=minor_units, code=codes)
def test_minor_units_round_trip_for_every_currency(minor: int, code: str) -> None:
    money = from_minor(minor, code)
    assert money.amount.as_tuple().exponent == -_exp(code)
    assert to_minor(money, allow_negative=True) == (minor, code)


@given(minor=st.integers(min_value=0, max_value=INT64), code=main_codes)
def test_non_negative_round_trip_needs_no_flags(minor: int, code: str) -> None:
    assert to_minor(from_minor(minor, code)) == (minor, code)


@given(minor=minor_units, code=codes, extra_zeros=st.integers(min_value=1, max_value=6))
def test_trailing_zeros_beyond_the_minor_unit_are_exact(
    minor: int, code: str, extra_zeros: int
) -> None:
    exact = from_minor(minor, code).amount
    padded = exact.quantize(Decimal(1).scaleb(-(_exp(code) + extra_zeros)))
    assert to_minor(Money(padded, code), allow_negative=True) == (minor, code)


@given(minor=minor_units, code=codes, digit=st.integers(min_value=1, max_value=9))
def test_to_minor_refuses_amounts_finer_than_the_minor_unit(
    minor: int, code: str, digit: int
) -> None:
    exp = _exp(code)
    amount = Decimal(minor).scaleb(-exp) + Decimal(digit).scaleb(-(exp + 1))
    with pytest.raises(MoneyError) as info:
        to_minor(Money(amount, code), allow_negative=True, field="legs.1.amount")
    assert info.value.field == "legs.1.amount"


@pytest.mark.parametrize(
    ("amount", "code"),
    [("10.005", "PHP"), ("1.5", "JPY"), ("0.0001", "KWD"), ("0.001", "USD"), ("-0.001", "PHP")],
)
def test_to_minor_refuses_inexact_amounts(amount: str, code: str) -> None:
    with pytest.raises(MoneyError) as info:
        to_minor(Money(amount, code), allow_negative=True)
    assert info.value.field == "amount"


@pytest.mark.parametrize("special", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"])
def test_to_minor_refuses_non_finite_amounts(special: str) -> None:
    with pytest.raises(MoneyError) as info:
        to_minor(Money(Decimal(special), "PHP"), allow_negative=True)
    assert info.value.field == "amount"


def test_to_minor_sign_and_zero_rules() -> None:
    with pytest.raises(MoneyError, match="negative"):
        to_minor(Money("-0.01", "PHP"))
    assert to_minor(Money("-0.01", "PHP"), allow_negative=True) == (-1, "PHP")
    assert to_minor(Money("0", "PHP")) == (0, "PHP")
    with pytest.raises(MoneyError, match="greater than zero"):
        to_minor(Money("0.00", "PHP"), allow_zero=False)
    with pytest.raises(MoneyError, match="greater than zero"):
        to_minor(Money("-0", "PHP"), allow_zero=False, allow_negative=True)


@pytest.mark.parametrize(
    "value", [10, "10.00", Decimal("10"), 10.0, None, {"amount": "10.00", "currency": "PHP"}]
)
def test_to_minor_refuses_anything_but_money(value: object) -> None:
    with pytest.raises(MoneyError) as info:
        to_minor(value, field="fee")
    assert info.value.field == "fee"


@pytest.mark.parametrize("minor", [1.0, 1.5, True, False, "100", Decimal(100), None])
def test_from_minor_refuses_non_integer_minor_units(minor: object) -> None:
    with pytest.raises(MoneyError):
        from_minor(minor, "PHP")  # type: ignore[arg-type]


def test_from_minor_refuses_unknown_currency() -> None:
    with pytest.raises(MoneyError) as info:
        from_minor(100, "XXQ")
    assert info.value.field == "currency"


def test_to_minor_never_rounds_huge_inexact_amounts() -> None:
    """More significant digits than the decimal context's 28 must not be rounded away."""
    huge = Money("1000000000000000000000000000.001", "PHP")
    with pytest.raises(MoneyError):
        to_minor(huge)


@pytest.mark.parametrize("minor", [10**28 + 1, 10**30 + 1, -(10**30 + 1), 10**40 + 7])
def test_huge_minor_units_round_trip_exactly_or_are_refused(minor: int) -> None:
    """Beyond any realistic range, but silent rounding would still create or destroy money."""
    try:
        back = to_minor(from_minor(minor, "PHP"), allow_negative=True)
    except MoneyError:
        return
    assert back == (minor, "PHP")


# -- parse_amount ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.1, 10.0, float("nan"), float("inf"), True, False])
def test_parse_amount_refuses_floats_and_bools(value: object) -> None:
    with pytest.raises(MoneyError, match="float") as info:
        parse_amount(value, field="price")
    assert info.value.field == "price"


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "Infinity", "-inf", "sNaN", Decimal("NaN"), Decimal("-Infinity")]
)
def test_parse_amount_refuses_non_finite(value: object) -> None:
    with pytest.raises(MoneyError, match="finite"):
        parse_amount(value)


@pytest.mark.parametrize("value", ["", "ten", "1,000.00", "1.2.3", "0x10", "--1", None, [], b"1"])
def test_parse_amount_refuses_garbage(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.50", Decimal("10.50")),
        (7, Decimal(7)),
        (Decimal("-3.1"), Decimal("-3.1")),
        (" 2.00 ", Decimal("2.00")),
    ],
)
def test_parse_amount_accepts_exact_inputs(value: object, expected: Decimal) -> None:
    assert parse_amount(value) == expected


# -- JSON form ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        (Money("10", "PHP"), {"amount": "10.00", "currency": "PHP"}),
        (Money("10.5", "PHP"), {"amount": "10.50", "currency": "PHP"}),
        (Money("10.000", "PHP"), {"amount": "10.00", "currency": "PHP"}),
        (Money("1500", "JPY"), {"amount": "1500", "currency": "JPY"}),
        (Money("1.5", "KWD"), {"amount": "1.500", "currency": "KWD"}),
        (Money("-0.05", "USD"), {"amount": "-0.05", "currency": "USD"}),
        (Money("0", "PHP"), {"amount": "0.00", "currency": "PHP"}),
    ],
)
def test_money_to_json_uses_string_amounts_with_fixed_digits(
    money: Money, expected: dict[str, str]
) -> None:
    data = money_to_json(money)
    assert data == expected
    assert json.loads(json.dumps(data)) == expected
    assert money_from_json(data) == money


@given(minor=minor_units, code=codes)
def test_json_round_trip_is_exact(minor: int, code: str) -> None:
    money = from_minor(minor, code)
    data = money_to_json(money)
    assert set(data) == {"amount", "currency"}
    assert data["currency"] == code
    exp = _exp(code)
    pattern = r"-?\d+" if exp == 0 else rf"-?\d+\.\d{{{exp}}}"
    assert re.fullmatch(pattern, data["amount"]), data
    back = money_from_json(json.loads(json.dumps(data)))
    assert back == money
    assert to_minor(back, allow_negative=True) == (minor, code)


def test_money_to_json_refuses_inexact_money() -> None:
    with pytest.raises(MoneyError):
        money_to_json(Money("10.005", "PHP"))


@pytest.mark.parametrize(
    "data",
    [
        {"amount": 10.5, "currency": "PHP"},
        {"amount": 10, "currency": "PHP"},
        {"amount": True, "currency": "PHP"},
        {"amount": None, "currency": "PHP"},
        {"amount": "NaN", "currency": "PHP"},
        {"amount": "Infinity", "currency": "PHP"},
        {"amount": "-Infinity", "currency": "PHP"},
        {"amount": "10.005", "currency": "PHP"},
        {"amount": "1.5", "currency": "JPY"},
        {"amount": "0.0001", "currency": "KWD"},
        {"amount": "ten", "currency": "PHP"},
        {"amount": "10.00", "currency": "XXQ"},
        {"amount": "10.00", "currency": "php"},
        {"amount": "10.00", "currency": None},
        {"amount": "10.00"},
        {"currency": "PHP"},
        {"amount": "10.00", "currency": "PHP", "note": "x"},
        {},
        ["10.00", "PHP"],
        "10.00 PHP",
        None,
    ],
    ids=repr,
)
def test_money_from_json_refuses_malformed_input(data: object) -> None:
    with pytest.raises(MoneyError) as info:
        money_from_json(data, field="legs.0.amount")
    assert info.value.field == "legs.0.amount"


def test_money_from_json_accepts_negative_and_zero() -> None:
    assert money_from_json({"amount": "-1.25", "currency": "PHP"}) == Money("-1.25", "PHP")
    assert money_from_json({"amount": "0", "currency": "JPY"}) == Money("0", "JPY")


@pytest.mark.parametrize("amount", ["1_000", "\u0661\u0662", "1e2"])
def test_money_from_json_accepts_only_plain_decimal_text(amount: str) -> None:
    """The published JSON schema says ``^-?\\d+(\\.\\d+)?$``; other spellings are refused."""
    with pytest.raises(MoneyError):
        money_from_json({"amount": amount, "currency": "PHP"})
