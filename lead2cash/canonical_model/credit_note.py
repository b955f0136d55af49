"""Credit notes: amounts given back against an invoice (Lago credit note; an SAP credit memo posting)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, model_validator

from lead2cash.canonical_model.base import (
    CanonicalEntity,
    CanonicalModel,
    CurrencyCode,
    NonEmptyStr,
    SystemRefs,
)
from lead2cash.canonical_model.invoice import (
    TaxLine,
    check_document_totals,
    check_unique_ids,
    document_totals,
)
from lead2cash.canonical_model.money import Money


class CreditNoteStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    VOIDED = "voided"


class CreditNoteReason(StrEnum):
    """Reasons as Lago names them."""

    DUPLICATED_CHARGE = "duplicated_charge"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"
    ORDER_CHANGE = "order_change"
    ORDER_CANCELLATION = "order_cancellation"
    FRAUDULENT_CHARGE = "fraudulent_charge"
    OTHER = "other"


class CreditNoteLine(CanonicalModel):
    """Credit against one invoice line. Amounts are positive: the document type carries the sign."""

    id: NonEmptyStr
    refs: SystemRefs = Field(default_factory=SystemRefs)
    description: NonEmptyStr | None = None
    invoice_line_id: NonEmptyStr | None = None
    product_code: NonEmptyStr | None = None
    product_family: NonEmptyStr | None = None
    amount: Money

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.amount.is_negative():
            raise ValueError(f"amount must be >= 0 (a credit note's amounts are positive), got {self.amount}")
        return self


class CreditNote(CanonicalEntity):
    """Invariant as for invoices: ``total == subtotal + tax_total`` with subtotal and tax_total the sums of
    the lines and taxes, all in ``currency``. Use :meth:`build` to have the totals computed."""

    credit_note_number: NonEmptyStr
    invoice_id: NonEmptyStr
    """Canonical id of the credited invoice."""
    invoice_number: NonEmptyStr | None = None
    customer_id: NonEmptyStr
    """Canonical id of the customer (already known to every system through the credited invoice)."""
    currency: CurrencyCode
    status: CreditNoteStatus
    reason: CreditNoteReason = CreditNoteReason.OTHER
    issue_date: date
    source_created_at: datetime | None = None
    """When the source system created the document (Lago's ``created_at``); None: the source does not say.
    A target that cannot trust its ledger for documents older than its process (a restored store) asks."""
    lines: tuple[CreditNoteLine, ...] = Field(min_length=1)
    taxes: tuple[TaxLine, ...] = ()
    subtotal: Money
    tax_total: Money
    total: Money
    billing_type: NonEmptyStr | None = None
    """The billing type of the credited invoice when the credit note tells it (Lago: ``credit`` for the
    credit note of a wallet top-up): the ledger reverses it on the accounts that type posts to."""
    refund: Money | None = None
    """The part of ``total`` paid back to the customer (cash out through the payment provider); the rest
    is credit kept for the customer."""
    payment_method: NonEmptyStr | None = None
    """The payment provider the refund goes through (Lago: the customer's ``payment_provider``)."""
    refund_declined: Money | None = None
    """A refund the payment provider declined (``refund`` is then None): nothing was paid out, the amount
    is still owed to the customer; a cash leg already posted for it is reversed."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name, refund in (("refund", self.refund), ("refund_declined", self.refund_declined)):
            if refund is not None and (
                refund.currency != self.currency or refund.is_negative() or refund > self.total
            ):
                raise ValueError(
                    f"{name}: expected an amount in {self.currency} between 0 and the total {self.total}"
                )
        if self.refund is not None and self.refund_declined is not None:
            raise ValueError("refund and refund_declined: a refund is either under way or declined")
        check_unique_ids((line.id for line in self.lines), "lines")
        check_document_totals(
            document="credit note",
            currency=self.currency,
            line_amounts=[(f"lines[{i}].amount", line.amount) for i, line in enumerate(self.lines)],
            taxes=self.taxes,
            subtotal=self.subtotal,
            tax_total=self.tax_total,
            total=self.total,
        )
        return self

    @classmethod
    def build(
        cls,
        *,
        currency: str,
        lines: Iterable[CreditNoteLine],
        taxes: Iterable[TaxLine] = (),
        **fields: Any,
    ) -> Self:
        """A credit note whose subtotal, tax_total and total are computed from ``lines`` and ``taxes``."""
        lines = tuple(lines)
        return cls(
            **document_totals(currency, (x.amount for x in lines), tuple(taxes), lines=lines, **fields)
        )
