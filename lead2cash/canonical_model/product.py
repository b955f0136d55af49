"""Products and the vocabulary of how they are charged (one-time vs recurring, billing period)."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import model_validator

from lead2cash.canonical_model.base import CanonicalEntity, NonEmptyStr


class ChargeKind(StrEnum):
    """Whether a line is charged once or repeatedly (Salesforce product type; Lago add-on vs plan)."""

    ONE_TIME = "one_time"
    RECURRING = "recurring"


class BillingPeriod(StrEnum):
    """Billing interval of a recurring charge; names follow Lago's plan intervals."""

    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    YEARLY = "yearly"

    @property
    def months(self) -> int | None:
        """Length in whole months (None for weekly), e.g. to annualize a recurring price."""
        return {"monthly": 1, "quarterly": 3, "semiannual": 6, "yearly": 12}.get(self.value)


def check_charge_period(kind: ChargeKind, period: BillingPeriod | None, where: str) -> None:
    """A recurring charge needs a billing period; a one-time charge must not have one."""
    if kind is ChargeKind.RECURRING and period is None:
        raise ValueError(f"{where}billing_period is required when kind is 'recurring'")
    if kind is ChargeKind.ONE_TIME and period is not None:
        raise ValueError(f"{where}billing_period must be empty when kind is 'one_time', got {period.value!r}")


class Product(CanonicalEntity):
    """A sellable item (Salesforce Product2, a Lago plan or add-on, an SAP material or revenue family)."""

    code: NonEmptyStr
    """Stock-keeping code, the key that maps the product across systems (Salesforce ProductCode)."""
    name: NonEmptyStr
    family: NonEmptyStr | None = None
    """Product family; the SAP adapter picks the revenue GL account by it."""
    description: NonEmptyStr | None = None
    kind: ChargeKind
    billing_period: BillingPeriod | None = None
    active: bool = True

    @model_validator(mode="after")
    def _check_period(self) -> Self:
        check_charge_period(self.kind, self.billing_period, "")
        return self
