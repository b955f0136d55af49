"""Invoices (a finalized Lago invoice), their lines and their taxes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, model_validator

from lead2cash.canonical_model.base import (
    CanonicalEntity,
    CanonicalModel,
    CurrencyCode,
    NonEmptyStr,
    NonNegativeQuantity,
    Percent,
    SystemRefs,
)
from lead2cash.canonical_model.currency import normalize_currency
from lead2cash.canonical_model.money import Money, sum_money
from lead2cash.canonical_model.order import check_service_period
from lead2cash.canonical_model.party import Customer
from lead2cash.canonical_model.product import ChargeKind


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    PAID = "paid"
    VOIDED = "voided"


class InvoicePaymentStatus(StrEnum):
    PENDING = "pending"
    PARTIALLY_PAID = "partially_paid"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TaxLine(CanonicalModel):
    """One tax applied to a document (Lago applied tax; one SAP tax item per line)."""

    code: NonEmptyStr
    """Tax code as the billing system names it; the SAP adapter maps it to an SAP tax code."""
    name: NonEmptyStr | None = None
    rate: Percent
    """Rate in percent (``19`` for 19 %)."""
    taxable_amount: Money | None = None
    """The base the tax was computed on, when the source reports it (SAP needs it on tax items)."""
    amount: Money

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.taxable_amount is not None and self.taxable_amount.currency != self.amount.currency:
            raise ValueError(
                f"taxable_amount currency {self.taxable_amount.currency} differs from amount currency "
                f"{self.amount.currency}"
            )
        return self


class InvoiceLine(CanonicalModel):
    """One charge on an invoice (a Lago fee).

    ``net_amount`` is carried as the billing system computed it, not recomputed from quantity and price:
    the billing system's rounding is the legal one. It may be negative (e.g. a coupon as its own line).
    """

    id: NonEmptyStr
    refs: SystemRefs = Field(default_factory=SystemRefs)
    description: NonEmptyStr
    product_code: NonEmptyStr | None = None
    product_family: NonEmptyStr | None = None
    """Drives the revenue GL account in the ledger posting."""
    kind: ChargeKind | None = None
    quantity: NonNegativeQuantity | None = None
    unit_price: Money | None = None
    net_amount: Money
    tax_code: NonEmptyStr | None = None
    """Code of the TaxLine that applies to this line, if the source ties taxes to lines."""
    service_start: date | None = None
    service_end: date | None = None
    order_line_id: NonEmptyStr | None = None
    """Canonical id of the OrderLine this charge bills, when it came from an order."""
    subscription_id: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_service_period(self.service_start, self.service_end)
        if self.unit_price is not None and self.unit_price.currency != self.net_amount.currency:
            raise ValueError(
                f"unit_price currency {self.unit_price.currency} differs from net_amount currency "
                f"{self.net_amount.currency}"
            )
        return self


def document_totals(
    currency: str, line_amounts: Iterable[Money], taxes: Sequence[TaxLine], **fields: Any
) -> dict[str, Any]:
    """The fields of a document whose subtotal, tax_total and total are computed from its lines and taxes.
    Amounts in another currency are left out of the sums rather than raising here, so that the validator
    reports them by field name (``lines[2].net_amount: currency USD differs ...``)."""
    code = normalize_currency(currency)
    subtotal = sum_money((a for a in line_amounts if a.currency == code), code)
    tax_total = sum_money((x.amount for x in taxes if x.amount.currency == code), code)
    return {
        "currency": code,
        "taxes": taxes,
        "subtotal": subtotal,
        "tax_total": tax_total,
        "total": subtotal + tax_total,
        **fields,
    }


def check_document_totals(
    *,
    document: str,
    currency: str,
    line_amounts: Sequence[tuple[str, Money]],
    taxes: Sequence[TaxLine],
    subtotal: Money,
    tax_total: Money,
    total: Money,
) -> None:
    """Shared invariant of invoices and credit notes: one currency, total = lines + taxes."""
    tax_amounts = [(f"taxes[{i}].amount", t.amount) for i, t in enumerate(taxes)]
    tax_bases = [(f"taxes[{i}].taxable_amount", t.taxable_amount) for i, t in enumerate(taxes)]
    named = [
        *line_amounts,
        *tax_amounts,
        *((name, base) for name, base in tax_bases if base is not None),
        ("subtotal", subtotal),
        ("tax_total", tax_total),
        ("total", total),
    ]
    for name, money in named:
        if money.currency != currency:
            raise ValueError(f"{name}: currency {money.currency} differs from {document} currency {currency}")
    line_sum = sum_money((m for _, m in line_amounts), currency)
    if subtotal != line_sum:
        raise ValueError(f"subtotal: {subtotal} does not equal the sum of the line amounts ({line_sum})")
    tax_sum = sum_money((m for _, m in tax_amounts), currency)
    if tax_total != tax_sum:
        raise ValueError(f"tax_total: {tax_total} does not equal the sum of taxes[].amount ({tax_sum})")
    expected = subtotal + tax_total
    if total != expected:
        raise ValueError(f"total: {total} does not equal subtotal + tax_total ({expected})")


def check_unique_ids(ids: Iterable[str], field: str) -> None:
    seen: set[str] = set()
    for i, item_id in enumerate(ids):
        if item_id in seen:
            raise ValueError(f"{field}[{i}].id: duplicate id {item_id!r}")
        seen.add(item_id)


class Invoice(CanonicalEntity):
    """A billing document. Invariant: ``total == subtotal + tax_total``, ``subtotal == sum(lines)``,
    ``tax_total == sum(taxes)``, everything in ``currency``. Build with :meth:`build` to have the totals
    computed from the lines.

    The customer is embedded because the ledger route must be able to create the SAP business partner from
    the invoice alone.
    """

    invoice_number: NonEmptyStr
    """The legal number; also the SAP DocumentReferenceID, the key that makes the posting idempotent."""
    customer: Customer
    currency: CurrencyCode
    status: InvoiceStatus
    payment_status: InvoicePaymentStatus = InvoicePaymentStatus.PENDING
    """The latest payment outcome the billing engine reports; not an order: a succeeded payment may fail
    later (a returned direct debit) and a failed one be retried."""
    payment_overdue: bool = False
    """Unpaid past its due date, as the billing engine reports it."""
    payment_dispute_lost_at: datetime | None = None
    """When a payment dispute (chargeback) was lost: the money went back to the payer."""
    refunded: Money | None = None
    """Paid back to the payer by the invoice's credit notes (refunds issued, done or under way; one the
    payment provider declined is not counted). None: not known (the source does not read refunds)."""
    issue_date: date
    source_created_at: datetime | None = None
    """When the source system created the document (Lago's ``created_at``); None: the source does not say.
    A target that cannot trust its ledger for documents older than its process (a restored store) asks."""
    due_date: date | None = None
    lines: tuple[InvoiceLine, ...] = ()
    taxes: tuple[TaxLine, ...] = ()
    subtotal: Money
    """Sum of the lines' net amounts."""
    tax_total: Money
    total: Money
    order_id: NonEmptyStr | None = None
    """Canonical id of the Order this invoice bills, when known."""
    billing_type: NonEmptyStr | None = None
    """The billing engine's type of document (Lago's ``invoice_type``: subscription, add_on, one_off,
    credit, progressive_billing). The ledger posts each type by its nature (a ``credit`` invoice is a wallet
    top-up: a customer prepayment, not revenue); None: the source does not tell (posted as revenue)."""
    prepaid_credit: Money | None = None
    """Part of the total settled by the customer's prepaid credits (a wallet), not owed: the ledger moves
    it from the customer advance to the receivable."""
    prepaid_granted_credit: Money | None = None
    """The part of ``prepaid_credit`` that came from granted (free) credits, when the billing engine tells
    (Lago's traceable wallets: ``prepaid_granted_credit_amount_cents``); None: it does not tell, and every
    prepaid credit is taken as paid for. Booked as a sales deduction, not against the advance."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.prepaid_credit is not None and (
            self.prepaid_credit.currency != self.currency or self.prepaid_credit.is_negative()
        ):
            raise ValueError(f"prepaid_credit: expected a non-negative amount in {self.currency}")
        granted = self.prepaid_granted_credit
        if granted is not None and (
            granted.currency != self.currency
            or granted.is_negative()
            or granted.amount > (self.prepaid_credit.amount if self.prepaid_credit is not None else 0)
        ):
            raise ValueError(
                f"prepaid_granted_credit: expected a non-negative amount in {self.currency}, "
                "at most prepaid_credit"
            )
        if self.due_date is not None and self.due_date < self.issue_date:
            raise ValueError(f"due_date ({self.due_date}) must not be before issue_date ({self.issue_date})")
        if self.status is InvoiceStatus.PAID and self.payment_status is not InvoicePaymentStatus.SUCCEEDED:
            raise ValueError(
                f"payment_status must be 'succeeded' when status is 'paid', got {self.payment_status.value!r}"
            )
        if self.refunded is not None and self.refunded.currency != self.currency:
            raise ValueError(
                f"refunded: currency {self.refunded.currency} differs from invoice currency {self.currency}"
            )
        check_unique_ids((line.id for line in self.lines), "lines")
        check_document_totals(
            document="invoice",
            currency=self.currency,
            line_amounts=[(f"lines[{i}].net_amount", line.net_amount) for i, line in enumerate(self.lines)],
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
        lines: Iterable[InvoiceLine],
        taxes: Iterable[TaxLine] = (),
        **fields: Any,
    ) -> Self:
        """An invoice whose subtotal, tax_total and total are computed from ``lines`` and ``taxes``."""
        lines = tuple(lines)
        return cls(
            **document_totals(currency, (x.net_amount for x in lines), tuple(taxes), lines=lines, **fields)
        )
