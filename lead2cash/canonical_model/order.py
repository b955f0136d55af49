"""Orders: what the customer bought (a Closed Won Salesforce Opportunity with its line items)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final, Self

from pydantic import Field, model_validator

from lead2cash.canonical_model._decimal import DECIMAL_CONTEXT
from lead2cash.canonical_model.base import (
    CanonicalEntity,
    CanonicalModel,
    CurrencyCode,
    NonEmptyStr,
    Percent,
    Quantity,
    SystemRefs,
)
from lead2cash.canonical_model.money import Money, sum_money
from lead2cash.canonical_model.party import Customer
from lead2cash.canonical_model.product import BillingPeriod, ChargeKind, check_charge_period

LINE_ROUNDING: Final = ROUND_HALF_UP
"""Rounding of a line's computed amounts: commercial rounding, as Salesforce and SAP round line totals."""


def check_service_period(start: date | None, end: date | None, where: str = "") -> None:
    if start is not None and end is not None and end < start:
        raise ValueError(f"{where}service_end ({end}) must not be before service_start ({start})")


class OrderStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"
    CANCELLED = "cancelled"


class OrderLine(CanonicalModel):
    """One product on an order (Salesforce OpportunityLineItem).

    The net amount is computed, not carried: ``quantity * unit_price``, less ``discount_percent``, less
    ``discount_amount``, rounded once at the end with :data:`LINE_ROUNDING`.
    """

    id: NonEmptyStr
    """Canonical id of the line; routes use it to key the per-line effects (one Lago subscription each)."""
    refs: SystemRefs = Field(default_factory=SystemRefs)
    product_code: NonEmptyStr
    product_name: NonEmptyStr
    product_family: NonEmptyStr | None = None
    description: NonEmptyStr | None = None
    kind: ChargeKind
    billing_period: BillingPeriod | None = None
    quantity: Quantity
    unit_price: Money
    discount_percent: Percent | None = None
    discount_amount: Money | None = None
    """Absolute discount on the whole line, applied after ``discount_percent``."""
    service_start: date | None = None
    service_end: date | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_charge_period(self.kind, self.billing_period, "")
        check_service_period(self.service_start, self.service_end)
        if self.unit_price.is_negative():
            raise ValueError(
                f"unit_price must be >= 0, got {self.unit_price}; express reductions as discounts"
            )
        if self.discount_amount is not None:
            if self.discount_amount.currency != self.unit_price.currency:
                raise ValueError(
                    f"discount_amount currency {self.discount_amount.currency} differs from unit_price "
                    f"currency {self.unit_price.currency}"
                )
            if self.discount_amount.is_negative():
                raise ValueError(f"discount_amount must be >= 0, got {self.discount_amount}")
        try:
            net = self._exact_net()
            Money.of(net, self.currency, rounding=LINE_ROUNDING)
        except ValueError as exc:
            raise ValueError(f"net_amount: {exc}") from None
        if net < 0:
            raise ValueError(
                f"discount_amount: discounts ({self.discount_amount}) exceed the line amount after "
                f"discount_percent ({self._exact_after_percent()} {self.currency})"
            )
        return self

    @property
    def currency(self) -> str:
        return self.unit_price.currency

    def _exact_gross(self) -> Decimal:
        return DECIMAL_CONTEXT.multiply(self.quantity, self.unit_price.amount)

    def _exact_after_percent(self) -> Decimal:
        gross = self._exact_gross()
        if self.discount_percent is None:
            return gross
        keep = DECIMAL_CONTEXT.subtract(
            Decimal(1), DECIMAL_CONTEXT.divide(self.discount_percent, Decimal(100))
        )
        return DECIMAL_CONTEXT.multiply(gross, keep)

    def _exact_net(self) -> Decimal:
        net = self._exact_after_percent()
        if self.discount_amount is not None:
            net = DECIMAL_CONTEXT.subtract(net, self.discount_amount.amount)
        return net

    @property
    def gross_amount(self) -> Money:
        """``quantity * unit_price`` before discounts."""
        return Money.of(self._exact_gross(), self.currency, rounding=LINE_ROUNDING)

    @property
    def net_amount(self) -> Money:
        """Amount charged for the line after both discounts."""
        return Money.of(self._exact_net(), self.currency, rounding=LINE_ROUNDING)

    @property
    def discount_total(self) -> Money:
        """``gross_amount - net_amount``, so the three always reconcile to the minor unit."""
        return self.gross_amount - self.net_amount

    @property
    def is_recurring(self) -> bool:
        return self.kind is ChargeKind.RECURRING


class Order(CanonicalEntity):
    """A won deal ready to bill: the customer, the currency and the lines.

    The customer is embedded, not referenced, because the billing route must create or update the customer
    in the billing system from the same snapshot of the account that the deal was won with.
    """

    order_number: NonEmptyStr | None = None
    name: NonEmptyStr | None = None
    status: OrderStatus = OrderStatus.WON
    status_since: datetime | None = None
    """When the deal entered its status (Salesforce LastStageChangeDate). Part of the content, so a deal
    lost, reopened or won again is a new version even when its lines are what they were before."""
    customer: Customer
    currency: CurrencyCode
    order_date: date
    """Date the deal was won (Salesforce CloseDate)."""
    purchase_order_number: NonEmptyStr | None = None
    """The customer's own PO reference, to print on invoices."""
    description: NonEmptyStr | None = None
    lines: tuple[OrderLine, ...] = ()
    """May be empty: a deal whose line items were all removed (after billing, its billing ends as a lost
    deal's does), or a deal not won yet that has no products."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        seen: set[str] = set()
        for i, line in enumerate(self.lines):
            if line.currency != self.currency:
                raise ValueError(
                    f"lines[{i}].unit_price: currency {line.currency} differs from "
                    f"order currency {self.currency}"
                )
            if line.id in seen:
                raise ValueError(f"lines[{i}].id: duplicate line id {line.id!r}")
            seen.add(line.id)
        try:
            self.total  # noqa: B018 - evaluated only to bound-check the sum
        except ValueError as exc:
            raise ValueError(f"total: {exc}") from None
        return self

    @property
    def total(self) -> Money:
        """Sum of the lines' net amounts."""
        return sum_money((line.net_amount for line in self.lines), self.currency)

    @property
    def recurring_lines(self) -> tuple[OrderLine, ...]:
        return tuple(line for line in self.lines if line.kind is ChargeKind.RECURRING)

    @property
    def one_time_lines(self) -> tuple[OrderLine, ...]:
        return tuple(line for line in self.lines if line.kind is ChargeKind.ONE_TIME)

    def line(self, line_id: str) -> OrderLine:
        for candidate in self.lines:
            if candidate.id == line_id:
                return candidate
        raise KeyError(line_id)
