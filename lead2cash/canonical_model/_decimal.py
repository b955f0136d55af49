"""Decimal plumbing shared by Money and the quantity/percent fields.

Every operation goes through one explicit context so that results do not depend on whatever
``decimal.getcontext()`` the calling thread happens to have set.
"""

from __future__ import annotations

from decimal import (
    ROUND_05UP,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Final

# 60 digits holds any product of a bounded amount (< 10**15, 4 decimals) and a bounded quantity or factor
# exactly, so rounding happens only where a caller asks for it.
DECIMAL_CONTEXT: Final = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)

ROUNDING_MODES: Final = frozenset(
    {
        ROUND_HALF_EVEN,
        ROUND_HALF_UP,
        ROUND_HALF_DOWN,
        ROUND_UP,
        ROUND_DOWN,
        ROUND_CEILING,
        ROUND_FLOOR,
        ROUND_05UP,
    }
)

# Longest numeric string accepted; keeps a hostile payload from making Decimal parse megabytes of digits.
_MAX_NUMERIC_TEXT: Final = 64


class InvalidAmountError(ValueError):
    """A value cannot be used as an exact decimal number (float, NaN, infinity, garbage, out of bounds)."""


def to_decimal(value: object, *, what: str) -> Decimal:
    """Convert str/int/Decimal to a finite Decimal; reject float and bool.

    Floats are refused rather than converted: ``0.1`` is not one tenth, and converting through ``str()`` would
    hide the bug in whichever adapter produced the float.
    """
    if isinstance(value, bool):
        raise InvalidAmountError(f"{what}: bool is not a number")
    if isinstance(value, float):
        raise InvalidAmountError(
            f"{what}: float {value!r} rejected; binary floats cannot hold decimal amounts exactly, "
            "pass a str, int or Decimal"
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _MAX_NUMERIC_TEXT:
            raise InvalidAmountError(f"{what}: {value[:_MAX_NUMERIC_TEXT]!r} is not a decimal number")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise InvalidAmountError(f"{what}: {value!r} is not a decimal number") from None
    else:
        raise InvalidAmountError(f"{what}: expected str, int or Decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise InvalidAmountError(f"{what}: {result} is not a finite number (NaN and Infinity are rejected)")
    # -0 and 0 mean the same amount; one spelling keeps JSON and idempotency keys stable.
    if result.is_zero() and result.is_signed():
        result = result.copy_abs()
    return result


def check_rounding(rounding: str) -> str:
    if rounding not in ROUNDING_MODES:
        raise ValueError(
            f"rounding {rounding!r} is not a decimal rounding mode (e.g. decimal.ROUND_HALF_EVEN)"
        )
    return rounding


def decimal_places(value: Decimal) -> int:
    """Number of digits after the point in the value as written (``Decimal('1.50')`` -> 2)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite values only
    return max(0, -exponent)
