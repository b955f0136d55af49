"""Money: an exact Decimal amount in an ISO 4217 currency, held at the currency's minor units."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any, Final

from pydantic import field_serializer, model_validator

from lead2cash.canonical_model._decimal import (
    DECIMAL_CONTEXT,
    InvalidAmountError,
    check_rounding,
    decimal_places,
    to_decimal,
)
from lead2cash.canonical_model.base import CanonicalModel
from lead2cash.canonical_model.currency import MINOR_UNITS, normalize_currency

MAX_AMOUNT: Final = Decimal(10) ** 15
"""Exclusive bound on ``|amount|``; larger values are a unit mix-up (cents as units), not revenue."""


class MoneyError(ValueError):
    """Base of the errors Money raises for invalid operations."""


class CurrencyMismatchError(MoneyError):
    """Two amounts in different currencies were combined."""

    def __init__(self, left: str, right: str, operation: str) -> None:
        super().__init__(
            f"cannot {operation} {left} and {right}: currencies differ (convert explicitly first)"
        )
        self.left = left
        self.right = right


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[currency])


def _check_bounds(amount: Decimal, currency: str) -> None:
    if abs(amount) >= MAX_AMOUNT:
        raise InvalidAmountError(f"amount: |{amount}| {currency} is out of bounds (must be < 10**15)")


class Money(CanonicalModel):
    """An amount of money. Immutable; arithmetic returns new values.

    The plain constructor refuses amounts it would have to round (``Money(amount="1.005", currency="USD")``
    fails); use :meth:`of` to round with an explicit mode. Amounts serialize to JSON as strings (``"12.30"``).
    """

    amount: Decimal
    currency: str

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        # Done on the raw input, before field validation, because the allowed scale of `amount` depends on
        # `currency`, and the stored amount is rescaled to exactly the currency's minor units.
        if not isinstance(data, dict):
            return data
        if "currency" not in data or "amount" not in data:
            return data  # let field validation report what is missing
        try:
            currency = normalize_currency(data["currency"])
        except ValueError as exc:
            raise ValueError(f"currency: {exc}") from None
        amount = to_decimal(data["amount"], what="amount")
        _check_bounds(amount, currency)
        quantized = amount.quantize(_quantum(currency), context=DECIMAL_CONTEXT)
        if quantized != amount:
            raise InvalidAmountError(
                f"amount: {amount} has {decimal_places(amount)} decimal places but {currency} allows "
                f"{MINOR_UNITS[currency]}; use Money.of(amount, currency, rounding=...) to round explicitly"
            )
        return {**data, "amount": quantized, "currency": currency}

    @field_serializer("amount", when_used="json")
    def _amount_as_text(self, amount: Decimal) -> str:
        return format(amount, "f")

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str, *, rounding: str = ROUND_HALF_EVEN) -> Money:
        """Money rounded to the currency's minor units with ``rounding`` (a ``decimal.ROUND_*`` mode)."""
        check_rounding(rounding)
        code = normalize_currency(currency)
        value = to_decimal(amount, what="amount")
        _check_bounds(value, code)  # before quantize: a huge exponent would overflow the context
        quantized = value.quantize(_quantum(code), rounding=rounding, context=DECIMAL_CONTEXT)
        return cls._exact(quantized, code)  # checks the bound again: rounding up may reach it

    @classmethod
    def _exact(cls, amount: Decimal, currency: str) -> Money:
        """Money from a finite Decimal already at ``currency``'s minor units (or fewer places) and a
        normalized currency code: what this class's own arithmetic makes. It skips pydantic's validation
        (the ``_normalize`` validator re-parsed both on every sum and difference: tens of thousands of
        times per thousand deals) and keeps its checks: the bound, and exactly the minor units."""
        _check_bounds(amount, currency)
        quantized = amount.quantize(_quantum(currency), context=DECIMAL_CONTEXT)
        if quantized != amount:  # never rounds: an amount with more places is a bug here
            raise InvalidAmountError(f"amount: {amount} has more places than {currency} allows")
        if quantized.is_zero() and quantized.is_signed():
            quantized = quantized.copy_abs()  # one spelling of zero, as ``to_decimal`` gives
        return cls.model_construct(amount=quantized, currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls._exact(Decimal(0), normalize_currency(currency))

    @classmethod
    def from_minor_units(cls, units: int, currency: str) -> Money:
        """Money from an integer count of minor units (Lago's ``amount_cents``): 1234 USD -> 12.34."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise InvalidAmountError(f"minor units must be an int, got {type(units).__name__}")
        code = normalize_currency(currency)
        return cls._exact(Decimal(units).scaleb(-MINOR_UNITS[code], context=DECIMAL_CONTEXT), code)

    # --- inspection ---------------------------------------------------------------------------------

    @property
    def minor_units(self) -> int:
        """Decimal places of this currency (0 for JPY, 2 for USD, 3 for KWD)."""
        return MINOR_UNITS[self.currency]

    def to_minor_units(self) -> int:
        """Integer count of minor units: 12.34 USD -> 1234, 1.234 KWD -> 1234, 500 JPY -> 500."""
        return int(self.amount.scaleb(self.minor_units, context=DECIMAL_CONTEXT))

    def is_zero(self) -> bool:
        return self.amount.is_zero()

    def is_positive(self) -> bool:
        return self.amount > 0

    def is_negative(self) -> bool:
        return self.amount < 0

    def __str__(self) -> str:
        return f"{format(self.amount, 'f')} {self.currency}"

    # --- arithmetic ---------------------------------------------------------------------------------

    def _same_currency(self, other: Money, operation: str) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatchError(self.currency, other.currency, operation)

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money._exact(DECIMAL_CONTEXT.add(self.amount, other.amount), self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money._exact(DECIMAL_CONTEXT.subtract(self.amount, other.amount), self.currency)

    def __neg__(self) -> Money:
        return Money._exact(-self.amount, self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money._exact(abs(self.amount), self.currency)

    def __mul__(self, other: object) -> Money:
        # Only integers: their product is exact. A Decimal factor needs a rounding decision -> times().
        if isinstance(other, bool) or not isinstance(other, int):
            if isinstance(other, Decimal | float):
                raise TypeError("multiply Money by a Decimal with money.times(factor, rounding=...)")
            return NotImplemented
        return Money._exact(DECIMAL_CONTEXT.multiply(self.amount, Decimal(other)), self.currency)

    def __rmul__(self, other: object) -> Money:
        return self.__mul__(other)

    def times(self, factor: Decimal | int | str, *, rounding: str = ROUND_HALF_EVEN) -> Money:
        """``self * factor`` rounded to minor units with ``rounding``; floats are rejected."""
        value = to_decimal(factor, what="factor")
        return Money.of(DECIMAL_CONTEXT.multiply(self.amount, value), self.currency, rounding=rounding)

    def percent(self, percent: Decimal | int | str, *, rounding: str = ROUND_HALF_EVEN) -> Money:
        """``percent`` % of this amount (``19`` -> 19 %), rounded with ``rounding``."""
        value = to_decimal(percent, what="percent")
        return self.times(DECIMAL_CONTEXT.divide(value, Decimal(100)), rounding=rounding)

    # --- comparison (ordering across currencies is meaningless, so it raises) -----------------------

    def _compare(self, other: object, operation: str) -> int | None:
        if not isinstance(other, Money):
            return None
        self._same_currency(other, operation)
        return (self.amount > other.amount) - (self.amount < other.amount)

    def __lt__(self, other: object) -> bool:
        result = self._compare(other, "compare")
        return NotImplemented if result is None else result < 0

    def __le__(self, other: object) -> bool:
        result = self._compare(other, "compare")
        return NotImplemented if result is None else result <= 0

    def __gt__(self, other: object) -> bool:
        result = self._compare(other, "compare")
        return NotImplemented if result is None else result > 0

    def __ge__(self, other: object) -> bool:
        result = self._compare(other, "compare")
        return NotImplemented if result is None else result >= 0

    # --- allocation ---------------------------------------------------------------------------------

    def allocate(self, ratios: int | Sequence[Decimal | int | str]) -> list[Money]:
        """Split this amount into shares that sum exactly to it.

        ``ratios`` is a number of equal shares or a sequence of non-negative weights. Largest remainder
        method: every share is its exact proportion rounded down to a minor unit, and the leftover units go
        to the shares with the largest remainders (earlier shares win ties), so the result is deterministic
        and each share is within one minor unit of its exact proportion. A negative amount is split as its
        absolute value and negated, so shares round symmetrically.
        """
        if isinstance(ratios, bool):
            raise TypeError("ratios must be a share count or a sequence of weights")
        if isinstance(ratios, int):
            if ratios < 1:
                raise ValueError(f"cannot allocate into {ratios} shares; need at least 1")
            weights = [Fraction(1)] * ratios
        else:
            weights = [Fraction(to_decimal(w, what=f"weight[{i}]")) for i, w in enumerate(ratios)]
            if not weights:
                raise ValueError("cannot allocate across an empty list of weights")
            if any(w < 0 for w in weights):
                raise ValueError("allocation weights must be >= 0")
        weight_sum = sum(weights, Fraction(0))
        if weight_sum == 0:
            raise ValueError("allocation weights must not all be zero")

        units = self.to_minor_units()
        sign = -1 if units < 0 else 1
        total = abs(units)
        exact = [total * w / weight_sum for w in weights]
        shares = [math.floor(e) for e in exact]
        leftover = total - sum(shares)
        by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
        for i in by_remainder[:leftover]:
            shares[i] += 1
        return [Money.from_minor_units(sign * s, self.currency) for s in shares]


def sum_money(items: Iterable[Money], currency: str) -> Money:
    """Exact sum of ``items``, all of which must be in ``currency``; an empty iterable sums to zero."""
    code = normalize_currency(currency)
    total = Decimal(0)
    for item in items:
        if item.currency != code:
            raise CurrencyMismatchError(code, item.currency, "sum")
        total = DECIMAL_CONTEXT.add(total, item.amount)
    return Money._exact(total, code)
