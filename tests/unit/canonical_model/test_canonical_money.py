"""Money: quantization, strictness, arithmetic, minor units, allocation, JSON."""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

import pytest
from pydantic import ValidationError

from lead2cash.canonical_model import CurrencyMismatchError, InvalidAmountError, Money, sum_money

# --- quantization -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "currency", "rounding", "expected"),
    [
        ("1.5", "JPY", ROUND_HALF_EVEN, "2"),
        ("2.5", "JPY", ROUND_HALF_EVEN, "2"),
        ("2.5", "JPY", ROUND_HALF_UP, "3"),
        ("-2.5", "JPY", ROUND_HALF_UP, "-3"),
        ("1.005", "USD", ROUND_HALF_EVEN, "1.00"),
        ("1.015", "USD", ROUND_HALF_EVEN, "1.02"),
        ("1.005", "USD", ROUND_HALF_UP, "1.01"),
        ("1.009", "USD", ROUND_DOWN, "1.00"),
        ("12.3", "USD", ROUND_HALF_EVEN, "12.30"),
        ("1.2345", "KWD", ROUND_HALF_EVEN, "1.234"),
        ("1.2345", "KWD", ROUND_HALF_UP, "1.235"),
        ("7", "KWD", ROUND_HALF_EVEN, "7.000"),
        ("0.00005", "CLF", ROUND_HALF_UP, "0.0001"),
    ],
)
def test_of_quantizes_to_minor_units_with_the_given_rounding(
    raw: str, currency: str, rounding: str, expected: str
) -> None:
    money = Money.of(raw, currency, rounding=rounding)
    assert money.amount == Decimal(expected)
    assert str(money.amount) == expected  # the exponent is the currency's, not the input's


def test_of_defaults_to_half_even() -> None:
    assert Money.of("0.125", "USD").amount == Decimal("0.12")
    assert Money.of("0.135", "USD").amount == Decimal("0.14")


def test_of_rejects_an_unknown_rounding_mode() -> None:
    with pytest.raises(ValueError, match="rounding"):
        Money.of("1", "USD", rounding="HALF_SOMETIMES")


@pytest.mark.parametrize(
    ("raw", "currency", "places"),
    [("1.005", "USD", 2), ("1.5", "JPY", 0), ("1.0005", "KWD", 3), ("0.00001", "CLF", 4)],
)
def test_constructor_rejects_amounts_it_would_have_to_round(raw: str, currency: str, places: int) -> None:
    with pytest.raises(ValidationError) as info:
        Money(amount=raw, currency=currency)
    message = str(info.value)
    assert "amount" in message
    assert f"{currency} allows {places}" in message
    assert "Money.of" in message


def test_constructor_accepts_exact_amounts_written_with_extra_zeros() -> None:
    assert str(Money(amount="1.000", currency="USD").amount) == "1.00"
    assert str(Money(amount="100.00", currency="JPY").amount) == "100"


def test_negative_zero_is_normalized() -> None:
    assert Money(amount="-0.00", currency="USD").model_dump_json() == '{"amount":"0.00","currency":"USD"}'
    assert Money.of("-0.001", "USD").model_dump_json() == '{"amount":"0.00","currency":"USD"}'


# --- strict inputs -----------------------------------------------------------------------------------


def test_constructor_rejects_float() -> None:
    with pytest.raises(ValidationError, match="float"):
        Money(amount=12.5, currency="USD")


@pytest.mark.parametrize(
    "call",
    [
        lambda: Money.of(12.5, "USD"),  # type: ignore[arg-type]
        lambda: Money.from_minor_units(1250.0, "USD"),  # type: ignore[arg-type]
        lambda: Money.from_minor_units(True, "USD"),
        lambda: Money.of("1", "USD").times(1.5),  # type: ignore[arg-type]
        lambda: Money.of("1", "USD").percent(1.5),  # type: ignore[arg-type]
        lambda: Money.of("1", "USD").allocate([0.5, 0.5]),  # type: ignore[list-item]
    ],
)
def test_api_rejects_float(call: object) -> None:
    with pytest.raises(InvalidAmountError):
        call()  # type: ignore[operator]


def test_json_number_with_fraction_is_rejected_but_integer_is_accepted() -> None:
    with pytest.raises(ValidationError, match="float"):
        Money.model_validate_json('{"amount": 12.3, "currency": "USD"}')
    assert Money.model_validate_json('{"amount": 12, "currency": "USD"}').amount == Decimal("12.00")


def test_multiplying_by_a_decimal_requires_times() -> None:
    with pytest.raises(TypeError, match="times"):
        _ = Money.of("1", "USD") * Decimal("1.5")
    with pytest.raises(TypeError):
        _ = Money.of("1", "USD") * 1.5


@pytest.mark.parametrize(
    "raw", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "abc", "", "1e15", "-1e15", "1" * 80, True]
)
def test_rejects_non_finite_garbage_and_out_of_bounds(raw: object) -> None:
    with pytest.raises(ValidationError, match="amount"):
        Money(amount=raw, currency="USD")


def test_bound_is_exclusive_at_ten_to_the_fifteen() -> None:
    assert Money(amount="999999999999999.99", currency="USD").is_positive()
    with pytest.raises(InvalidAmountError, match="out of bounds"):
        Money.of("999999999999999.999", "USD")  # rounds up to 10**15


def test_currency_is_normalized_and_validated() -> None:
    assert Money(amount="1", currency=" usd ").currency == "USD"
    for bad in ("XXX", "ABC", "US", "XAU", 840):
        with pytest.raises(ValidationError, match="currency"):
            Money(amount="1", currency=bad)


def test_money_is_frozen_and_forbids_extra_fields() -> None:
    money = Money.of("1", "USD")
    with pytest.raises(ValidationError):
        money.amount = Decimal(2)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        Money(amount="1", currency="USD", note="x")  # type: ignore[call-arg]


# --- arithmetic --------------------------------------------------------------------------------------


def test_arithmetic_within_a_currency() -> None:
    a, b = Money.of("10.25", "USD"), Money.of("0.75", "USD")
    assert a + b == Money.of("11", "USD")
    assert a - b == Money.of("9.50", "USD")
    assert -a == Money.of("-10.25", "USD")
    assert abs(-a) == a
    assert a * 3 == 3 * a == Money.of("30.75", "USD")
    assert a.times(Decimal("0.5")) == Money.of("5.12", "USD")  # 5.125 -> half-even
    assert a.times("0.5", rounding=ROUND_HALF_UP) == Money.of("5.13", "USD")
    assert a.percent(19) == Money.of("1.95", "USD")  # 1.9475
    assert b < a and a > b and a >= a and b <= a
    assert Money.zero("USD").is_zero()
    assert not a.is_zero() and a.is_positive() and (-a).is_negative()
    assert str(a) == "10.25 USD"


def test_mixing_currencies_raises() -> None:
    usd, eur = Money.of("1", "USD"), Money.of("1", "EUR")
    with pytest.raises(CurrencyMismatchError, match="USD and EUR"):
        _ = usd + eur
    with pytest.raises(CurrencyMismatchError):
        _ = usd - eur
    with pytest.raises(CurrencyMismatchError):
        _ = usd < eur
    with pytest.raises(CurrencyMismatchError):
        sum_money([usd, eur], "USD")
    assert usd != eur  # equality is just False, not an error


def test_sum_money() -> None:
    items = [Money.of("0.10", "USD")] * 10
    assert sum_money(items, "USD") == Money.of("1", "USD")
    assert sum_money([], "JPY") == Money.zero("JPY")


def test_results_do_not_depend_on_the_thread_decimal_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = ROUND_DOWN
        total = Money.of("123456789.99", "USD") + Money.of("0.01", "USD")
        assert total.amount == Decimal("123456790.00")
        assert Money.of("2.675", "USD").amount == Decimal("2.68")


# --- minor units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "currency", "amount"),
    [
        (1234, "USD", "12.34"),
        (1234, "KWD", "1.234"),
        (1234, "JPY", "1234"),
        (-5, "EUR", "-0.05"),
        (0, "CLF", "0"),
    ],
)
def test_minor_units_round_trip(units: int, currency: str, amount: str) -> None:
    money = Money.from_minor_units(units, currency)
    assert money.amount == Decimal(amount)
    assert money.to_minor_units() == units


# --- allocation --------------------------------------------------------------------------------------


def test_allocate_equal_shares_keeps_every_cent() -> None:
    shares = Money.of("100", "USD").allocate(3)
    assert [s.amount for s in shares] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert sum_money(shares, "USD") == Money.of("100", "USD")


def test_allocate_by_weights() -> None:
    shares = Money.of("0.05", "USD").allocate([1, 1, 0, 2])
    assert [s.to_minor_units() for s in shares] == [1, 1, 0, 3]
    assert [s.to_minor_units() for s in Money.of("-0.05", "USD").allocate([1, 1, 0, 2])] == [-1, -1, 0, -3]
    assert [s.to_minor_units() for s in Money.of("10", "JPY").allocate([Decimal("0.5"), "0.25", 1])] == [
        3,
        1,
        6,
    ]


@pytest.mark.parametrize("ratios", [0, -1, [], [1, -1], [0, 0]])
def test_allocate_rejects_bad_ratios(ratios: object) -> None:
    with pytest.raises(ValueError):
        Money.of("1", "USD").allocate(ratios)  # type: ignore[arg-type]


# --- JSON --------------------------------------------------------------------------------------------


def test_amounts_serialize_as_strings_at_the_currency_scale() -> None:
    assert json.loads(Money.of("12.3", "USD").model_dump_json()) == {"amount": "12.30", "currency": "USD"}
    assert json.loads(Money.of("1.23", "KWD").model_dump_json())["amount"] == "1.230"
    assert json.loads(Money.of("500", "JPY").model_dump_json())["amount"] == "500"
    assert json.loads(Money.of("999999999999999", "JPY").model_dump_json())["amount"] == "999999999999999"
    assert Money.of("1", "USD").model_dump() == {"amount": Decimal("1.00"), "currency": "USD"}


def test_money_is_hashable_and_equal_by_value() -> None:
    assert len({Money.of("1", "USD"), Money(amount="1.00", currency="usd")}) == 1


def test_arithmetic_results_equal_validated_money() -> None:
    # Sums, differences and products are built without pydantic's validation: they must be the same
    # values, spelled the same, as the validated constructor makes.
    a, b = Money.of("1.10", "USD"), Money.of("2.25", "USD")
    for made, validated in (
        (a + b, Money(amount="3.35", currency="USD")),
        (a - b, Money(amount="-1.15", currency="USD")),
        (-a, Money(amount="-1.10", currency="USD")),
        (abs(-a), a),
        (a * 3, Money(amount="3.30", currency="USD")),
        (a - a, Money(amount="0", currency="USD")),
        (sum_money([], "usd"), Money(amount="0", currency="USD")),
        (Money.zero("jpy"), Money(amount="0", currency="JPY")),
        (Money.from_minor_units(1234, "KWD"), Money(amount="1.234", currency="KWD")),
    ):
        assert made == validated and hash(made) == hash(validated)
        assert made.model_dump_json() == validated.model_dump_json()
        assert made.model_fields_set == validated.model_fields_set


def test_arithmetic_keeps_the_bound() -> None:
    big = Money(amount="999999999999999.00", currency="USD")
    with pytest.raises(InvalidAmountError, match="out of bounds"):
        _ = big + Money.of("1", "USD")
    with pytest.raises(InvalidAmountError, match="out of bounds"):
        _ = big * 2
