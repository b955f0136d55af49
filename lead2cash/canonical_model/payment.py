"""Payments received against invoices."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Self

from pydantic import model_validator

from lead2cash.canonical_model.base import CanonicalEntity, NonEmptyStr
from lead2cash.canonical_model.money import Money


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class Payment(CanonicalEntity):
    customer_id: NonEmptyStr
    invoice_ids: tuple[NonEmptyStr, ...] = ()
    """Canonical ids of the invoices this payment settles (one payment may cover several)."""
    amount: Money
    status: PaymentStatus
    payment_date: date
    method: NonEmptyStr | None = None
    """How it was paid, as the provider names it (card, sepa_debit, bank_transfer...)."""
    reference: NonEmptyStr | None = None
    """Provider or bank reference, used to match the payment when reconciling."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.amount.is_positive():
            raise ValueError(f"amount must be > 0, got {self.amount}")
        if len(set(self.invoice_ids)) != len(self.invoice_ids):
            raise ValueError("invoice_ids: duplicate invoice id")
        return self
