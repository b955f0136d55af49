"""Journal entries: the ledger posting of a billing document (SAP JournalEntryCreateRequest)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from lead2cash.canonical_model.base import CanonicalEntity, CanonicalModel, NonEmptyStr
from lead2cash.canonical_model.money import Money, sum_money


class DebitCredit(StrEnum):
    """Side of a posting (SAP DebitCreditCode S = debit, H = credit; the adapter maps the letters)."""

    DEBIT = "debit"
    CREDIT = "credit"


class JournalItemKind(StrEnum):
    """Which SAP item type the line becomes: G/L item, customer (debtor) item, or tax item."""

    GL = "gl"
    RECEIVABLE = "receivable"
    TAX = "tax"


class JournalEntryItem(CanonicalModel):
    """One line of a journal entry. ``amount`` is positive; ``side`` says debit or credit."""

    side: DebitCredit
    kind: JournalItemKind = JournalItemKind.GL
    gl_account: NonEmptyStr
    amount: Money
    customer_id: NonEmptyStr | None = None
    """The customer the item is posted to (required on receivable items): the canonical id, which the SAP
    adapter resolves to the business partner number through cross-references."""
    tax_code: NonEmptyStr | None = None
    tax_base_amount: Money | None = None
    profit_center: NonEmptyStr | None = None
    cost_center: NonEmptyStr | None = None
    assignment: NonEmptyStr | None = None
    """Sort key for open-item clearing (SAP AssignmentReference), e.g. the invoice number."""
    text: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.amount.is_positive():
            raise ValueError(f"amount must be > 0 (the side carries the sign), got {self.amount}")
        if self.kind is JournalItemKind.RECEIVABLE and self.customer_id is None:
            raise ValueError("customer_id is required on a receivable item")
        if self.kind is JournalItemKind.TAX and self.tax_code is None:
            raise ValueError("tax_code is required on a tax item")
        if self.tax_base_amount is not None and self.tax_base_amount.currency != self.amount.currency:
            raise ValueError(
                f"tax_base_amount currency {self.tax_base_amount.currency} differs from amount currency "
                f"{self.amount.currency}"
            )
        return self

    @property
    def signed_amount(self) -> Money:
        """Debits positive, credits negative."""
        return self.amount if self.side is DebitCredit.DEBIT else -self.amount


class JournalEntry(CanonicalEntity):
    """A balanced ledger document. Invariant: at least two items, and per currency the debits equal the
    credits."""

    company_code: NonEmptyStr
    document_type: NonEmptyStr
    """Ledger document type, e.g. SAP ``DR`` (customer invoice) or ``DG`` (customer credit memo)."""
    document_date: date
    posting_date: date
    reference_id: NonEmptyStr
    """External reference (SAP DocumentReferenceID): the invoice number; the key for idempotent posting."""
    header_text: NonEmptyStr | None = None
    source_document_id: NonEmptyStr | None = None
    """Canonical id of the invoice or credit note this entry posts."""
    items: tuple[JournalEntryItem, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for currency, (debits, credits) in self.totals().items():
            if debits != credits:
                raise ValueError(
                    f"items: debits ({debits}) do not equal credits ({credits}) in {currency}; "
                    f"difference {debits - credits}"
                )
        return self

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({item.amount.currency for item in self.items}))

    def totals(self) -> dict[str, tuple[Money, Money]]:
        """Currency -> (sum of debits, sum of credits)."""
        result: dict[str, tuple[Money, Money]] = {}
        for currency in self.currencies:
            in_currency = [item for item in self.items if item.amount.currency == currency]
            debits = sum_money((i.amount for i in in_currency if i.side is DebitCredit.DEBIT), currency)
            credits = sum_money((i.amount for i in in_currency if i.side is DebitCredit.CREDIT), currency)
            result[currency] = (debits, credits)
        return result
