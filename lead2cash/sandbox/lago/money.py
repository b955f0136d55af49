"""Integer minor-unit arithmetic, as Lago does it: every amount is an integer in the currency's minor units."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 exponents that differ from 2; Lago follows the Money gem's subunit table.
_EXPONENTS = {
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "VND": 0,
    "ISK": 0,
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_cents(amount: str | Decimal, currency: str) -> int:
    """A major-unit amount ("152.500") as integer minor units (152500 for KWD)."""
    return round_half_up(Decimal(amount).scaleb(exponent(currency)))


def to_major(cents: int | Decimal, currency: str) -> str:
    """Minor units back to a plain decimal string in major units ("1525.00")."""
    exp = exponent(currency)
    value = Decimal(cents).scaleb(-exp)
    return f"{value:.{exp}f}" if exp else str(round_half_up(value))


def tax_amount(base_cents: int, rate: Decimal) -> int:
    """Tax on a taxable base, rounded half-up to the minor unit."""
    return round_half_up(Decimal(base_cents) * rate / 100)


def decimal_str(value: Decimal) -> str:
    """Lago renders decimals such as ``units`` like Ruby's BigDecimal#to_s: "1.0", "2.5"."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"
