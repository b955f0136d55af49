"""Property tests: every invoice and credit note the adapter maps posts a balanced entry whose receivable,
revenue and tax totals equal the document's, in every currency (0, 2 and 3 decimals), with discounts,
several tax rates and weighted revenue splits; the mapping is deterministic."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sap_factories import customer

from lead2cash.adapters import sap
from lead2cash.canonical_model import (
    CreditNote,
    CreditNoteLine,
    DebitCredit,
    Invoice,
    InvoiceLine,
    JournalItemKind,
    Money,
    TaxLine,
)
from lead2cash.canonical_model.currency import MINOR_UNITS

CURRENCIES = ("EUR", "USD", "JPY", "KWD", "GBP", "BHD", "CLP")
FAMILIES = ("Software", "Services", "Training", "Hardware", "Bundle", None)
TAX_CODES = {"STD": ("19", "A1"), "RED": ("7", "A2"), "ZERO": ("0", "A0"), "HIGH": ("25", "B1")}
RULES = sap.PostingRules(
    receivables_account="12100000",
    revenue_accounts={
        "Software": "41000000",
        "Services": "41100000",
        "Training": "41200000",
        "Hardware": "41300000",
        # An awkward split: thirds never divide evenly, so rounding must be allocated.
        "Bundle": {"41000000": 1, "41100000": 1, "41200000": 1},
        "_default": "41999900",
    },
    tax_codes={code: sap_code for code, (_rate, sap_code) in TAX_CODES.items()},
    company_code="1010",
    company_code_by_currency={"JPY": "1510"},
    profit_centers={"Software": "YB600"},
)


@st.composite
def invoices(draw: st.DrawFn) -> Invoice:
    currency = draw(st.sampled_from(CURRENCIES))
    places = MINOR_UNITS[currency]
    amount = st.integers(min_value=1, max_value=10**9).map(lambda u: Money.from_minor_units(u, currency))
    codes = draw(st.lists(st.sampled_from(sorted(TAX_CODES)), min_size=0, max_size=3, unique=True))
    lines = []
    for i in range(draw(st.integers(1, 8))):
        net = draw(amount)
        if draw(st.booleans()) and i > 0:  # a discount or coupon line
            net = -Money.from_minor_units(draw(st.integers(1, max(1, net.to_minor_units()))), currency)
        lines.append(
            InvoiceLine(
                id=f"l{i}",
                description=f"line {i}",
                product_family=draw(st.sampled_from(FAMILIES)),
                net_amount=net,
                tax_code=draw(st.sampled_from(codes)) if codes and draw(st.booleans()) else None,
            )
        )
    taxes = []
    for code in codes:
        rate = TAX_CODES[code][0]
        tied = [
            ln.net_amount.amount
            for ln in lines
            if ln.tax_code == code or (ln.tax_code is None and len(codes) == 1)
        ]
        base = Money.of(sum(tied, Decimal(0)), currency)
        with_base = draw(st.booleans())
        tax = Money.of(base.amount * Decimal(rate) / 100, currency, rounding=ROUND_HALF_UP)
        taxes.append(TaxLine(code=code, rate=rate, amount=tax, taxable_amount=base if with_base else None))
    assert places >= 0
    return Invoice.build(
        id="inv-p",
        invoice_number="INV-PROP-1",
        customer=customer(1),
        currency=currency,
        status="finalized",
        issue_date="2024-11-15",
        lines=lines,
        taxes=taxes,
    )


def _check(entry, total: Money, subtotal: Money, tax_total: Money, sign: int) -> None:  # type: ignore[no-untyped-def]
    debits, credits = entry.totals()[total.currency]
    assert debits == credits

    def net(kind: JournalItemKind) -> Money:
        signed = [i.signed_amount for i in entry.items if i.kind is kind]
        return sum(signed[1:], signed[0]) if signed else Money.zero(total.currency)

    assert net(JournalItemKind.RECEIVABLE) == total * sign
    assert net(JournalItemKind.GL) == -(subtotal * sign)
    assert net(JournalItemKind.TAX) == -(tax_total * sign)
    for item in entry.items:
        assert item.amount.currency == total.currency and item.amount.is_positive()


@settings(max_examples=300, deadline=None)
@given(invoices())
def test_invoice_entries_balance_and_match_the_totals(invoice: Invoice) -> None:
    if invoice.total.is_zero() and invoice.subtotal.is_zero():
        return
    try:
        entry = sap.invoice_to_journal_entry(invoice, RULES)
    except sap.PostingRuleError as exc:
        assert "nothing to post" in str(exc)
        return
    reverse = invoice.total.is_negative()
    _check(entry, invoice.total, invoice.subtotal, invoice.tax_total, sign=1)
    assert entry.document_type == ("DG" if reverse else "DR")
    assert entry.reference_id == invoice.invoice_number
    assert entry.company_code == ("1510" if invoice.currency == "JPY" else "1010")
    # Deterministic: the same invoice maps to the same entry (a resend posts the same document).
    assert sap.invoice_to_journal_entry(invoice, RULES) == entry
    soap = sap.journal_entry_to_soap(entry, {invoice.customer.id: "1000001"}, sap.SoapHeader())
    signed = [
        x["AmountInTransactionCurrency"]["_value_1"]
        for kind in ("Item", "DebtorItem", "ProductTaxItem")
        for x in soap.get(kind, [])
    ]
    assert sum(signed, Decimal(0)) == 0
    for kind in ("Item", "DebtorItem", "ProductTaxItem"):
        for x in soap.get(kind, []):
            value = x["AmountInTransactionCurrency"]["_value_1"]
            assert x["DebitCreditCode"] == ("S" if value > 0 else "H")
            assert -value.as_tuple().exponent <= MINOR_UNITS[invoice.currency]


@settings(max_examples=150, deadline=None)
@given(invoices())
def test_credit_notes_post_the_reverse_entry(invoice: Invoice) -> None:
    positive = [ln for ln in invoice.lines if ln.net_amount.is_positive()]
    taxes = [t for t in invoice.taxes if not t.amount.is_negative()]
    note = CreditNote.build(
        id="cn-1",
        credit_note_number="CN-PROP-1",
        invoice_id=invoice.id,
        customer_id=invoice.customer.id,
        currency=invoice.currency,
        status="finalized",
        issue_date="2024-11-20",
        lines=[
            CreditNoteLine(id=ln.id, amount=ln.net_amount, product_family=ln.product_family)
            for ln in positive
        ],
        taxes=taxes,
    )
    entry = sap.credit_note_to_journal_entry(note, RULES)
    _check(entry, note.total, note.subtotal, note.tax_total, sign=-1)
    assert entry.document_type == "DG"
    receivable = [i for i in entry.items if i.kind is JournalItemKind.RECEIVABLE]
    assert [i.side for i in receivable] == [DebitCredit.CREDIT]


@given(st.sampled_from(CURRENCIES), st.integers(1, 10**12))
def test_weighted_split_allocates_every_minor_unit(currency: str, units: int) -> None:
    amount = Money.from_minor_units(units, currency)
    invoice = Invoice.build(
        id="inv-s",
        invoice_number="INV-SPLIT",
        customer=customer(2),
        currency=currency,
        status="finalized",
        issue_date="2024-11-15",
        lines=[InvoiceLine(id="b", description="bundle", product_family="Bundle", net_amount=amount)],
    )
    entry = sap.invoice_to_journal_entry(invoice, RULES)
    revenue = [i.amount for i in entry.items if i.kind is JournalItemKind.GL]
    assert sum((r.amount for r in revenue), Decimal(0)) == amount.amount
    # Thirds: each share within one minor unit of the others, the larger ones first (largest remainder).
    minor = [r.to_minor_units() for r in revenue]
    assert max(minor) - min(minor) <= 1 and minor == sorted(minor, reverse=True)
