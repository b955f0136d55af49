"""Subscriptions: a recurring order line as the billing system runs it (a Lago subscription to a plan)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Self

from pydantic import model_validator

from lead2cash.canonical_model.base import CanonicalEntity, NonEmptyStr, Quantity
from lead2cash.canonical_model.money import Money
from lead2cash.canonical_model.product import BillingPeriod


class SubscriptionStatus(StrEnum):
    """Lago's subscription states."""

    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"
    CANCELED = "canceled"


class Subscription(CanonicalEntity):
    customer_id: NonEmptyStr
    """Canonical id of the subscribing customer."""
    plan_code: NonEmptyStr
    name: NonEmptyStr | None = None
    status: SubscriptionStatus = SubscriptionStatus.PENDING
    billing_period: BillingPeriod
    start_date: date
    end_date: date | None = None
    quantity: Quantity = Decimal(1)
    unit_price: Money | None = None
    """Price per period when it overrides the plan's (a negotiated price on the deal)."""
    order_id: NonEmptyStr | None = None
    order_line_id: NonEmptyStr | None = None
    """The recurring OrderLine this subscription was created for; one subscription per such line."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end_date ({self.end_date}) must not be before start_date ({self.start_date})")
        if self.unit_price is not None and self.unit_price.is_negative():
            raise ValueError(f"unit_price must be >= 0, got {self.unit_price}")
        return self
