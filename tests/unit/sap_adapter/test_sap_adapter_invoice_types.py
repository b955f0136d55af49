"""Each billing type posted by its nature: a wallet top-up to the customer advance (never revenue),
prepaid credits applied moved from the advance to the receivable, an unknown type refused by name."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from sap_factories import customer

from lead2cash.adapters import sap
from lead2cash.canonical_model import CreditNote, CreditNoteLine, Invoice, InvoiceLine, Money, TaxLine

RULES = sap.PostingRules(
    receivables_account="12100000",
    revenue_accounts={"Software": "41000000", "Hardware": "41300000", "_default": "41000000"},
    tax_codes={"DE_VAT_19": "A1"},
    company_code_by_currency={"EUR": "1010"},
    advance_account="21800000",
)


def eur(x: str) -> Money:
    return Money(amount=x, currency="EUR")


def _invoice(billing_type: str | None, prepaid: str | None = None, taxed: bool = True) -> Invoice:
    lines = [
        InvoiceLine(id="a", description="Gateway", product_family="Hardware", net_amount=eur("100.00")),
        InvoiceLine(id="b", description="Platform", product_family="Software", net_amount=eur("50.00")),
    ]
    taxes = [TaxLine(code="DE_VAT_19", rate="19", amount=eur("28.50"))] if taxed else []
    return Invoice.build(
        id="inv-1", invoice_number="LAG-1-001", customer=customer(7), currency="EUR", status="finalized",
        issue_date=date(2026, 1, 5), lines=lines, taxes=taxes, billing_type=billing_type,
        prepaid_credit=eur(prepaid) if prepaid else None,
    )  # fmt: skip


def _rows(invoice: Invoice, rules: sap.PostingRules = RULES) -> list[tuple[str, str, str, str]]:
    entry = sap.invoice_to_journal_entry(invoice, rules)
    signed = sum(i.amount.amount if i.side.value == "debit" else -i.amount.amount for i in entry.items)
    assert signed == 0, "the entry does not balance"
    return [(i.kind.value, i.side.value, i.gl_account, str(i.amount.amount)) for i in entry.items]


def test_revenue_types_post_revenue_by_family() -> None:
    for kind in ("subscription", "add_on", "one_off", "progressive_billing", None):
        assert _rows(_invoice(kind)) == [
            ("receivable", "debit", "12100000", "178.50"),
            ("gl", "credit", "41300000", "100.00"),
            ("gl", "credit", "41000000", "50.00"),
            ("tax", "credit", "22000000", "28.50"),
        ], kind


def test_a_wallet_top_up_is_a_customer_advance_never_revenue() -> None:
    assert _rows(_invoice("credit", taxed=False)) == [
        ("receivable", "debit", "12100000", "150.00"),
        ("gl", "credit", "21800000", "150.00"),
    ]


def test_prepaid_credits_applied_move_from_the_advance_to_the_receivable() -> None:
    rows = _rows(_invoice("subscription", prepaid="78.50"))
    assert rows[-2:] == [
        ("receivable", "credit", "12100000", "78.50"),
        ("gl", "debit", "21800000", "78.50"),
    ]
    receivable = sum(float(a) * (1 if side == "debit" else -1) for k, side, _, a in rows if k == "receivable")
    assert receivable == 100.00  # what is left to pay: total 178.50 less 78.50 of credits


def test_unknown_types_and_a_missing_advance_account_are_refused_by_name() -> None:
    with pytest.raises(sap.PostingRuleError, match="invoice_postings: no posting for billing type 'gift'"):
        _rows(_invoice("gift"))
    bad = replace(RULES, invoice_postings={"credit": "income"})
    with pytest.raises(sap.PostingRuleError, match="expected one of revenue, advance"):
        _rows(_invoice("credit"), bad)
    none = replace(RULES, advance_account=None)
    with pytest.raises(sap.PostingRuleError, match="advance_account: not configured"):
        _rows(_invoice("credit"), none)
    with pytest.raises(sap.PostingRuleError, match="advance_account: not configured"):
        _rows(_invoice("one_off", prepaid="10.00"), none)


def test_a_credit_note_of_a_top_up_debits_the_advance_not_revenue() -> None:
    def note(billing_type: str | None) -> CreditNote:
        return CreditNote.build(
            id="cn-1", credit_note_number="LAG-1-002-CN1", invoice_id="inv-2", invoice_number="LAG-1-002",
            customer_id="cust-7", currency="EUR", status="finalized", issue_date=date(2026, 1, 6),
            lines=[CreditNoteLine(id="l1", product_family="Hardware", amount=eur("40.00"))],
            billing_type=billing_type,
        )  # fmt: skip

    rows = [(i.kind.value, i.side.value, i.gl_account, str(i.amount.amount), i.assignment)
            for i in sap.credit_note_to_journal_entry(note("credit"), RULES).items]  # fmt: skip
    assert rows == [
        ("receivable", "credit", "12100000", "40.00", "LAG-1-002"),  # the invoice's number: it clears
        ("gl", "debit", "21800000", "40.00", "LAG-1-002"),
    ]
    revenue = sap.credit_note_to_journal_entry(note(None), RULES)
    assert [i.gl_account for i in revenue.items] == ["12100000", "41300000"]


def test_a_payment_clears_what_its_state_changes_and_a_failure_reverses_only_that() -> None:
    from lead2cash.canonical_model import Payment

    rules = replace(RULES, clearing_accounts={"stripe:EUR": "11001021", "_default": "11001020"})

    def payment(status: str, version: int, method: str | None = None) -> Payment:
        return Payment(
            id="inv-1:payment", version=version, customer_id="cust-7", invoice_ids=("inv-1",),
            amount=eur("178.50"), status=status, payment_date=date(2026, 1, 9), reference="LAG-1-001",
            method=method,
        )  # fmt: skip

    def rows(entry):  # type: ignore[no-untyped-def]
        return [(i.kind.value, i.side.value, i.gl_account, str(i.amount.amount)) for i in entry.items]

    zero = eur("0.00")
    paid = sap.payment_to_journal_entry(payment("succeeded", 2), zero, rules)
    assert paid is not None and paid.reference_id == "LAG-1-001-P2" and paid.document_type == "DZ"
    assert rows(paid) == [
        ("gl", "debit", "11001020", "178.50"),
        ("receivable", "credit", "12100000", "178.50"),
    ]
    returned = sap.payment_to_journal_entry(payment("failed", 3), eur("178.50"), rules)
    assert returned is not None
    assert rows(returned) == [
        ("gl", "credit", "11001020", "178.50"),
        ("receivable", "debit", "12100000", "178.50"),
    ]
    assert sap.payment_to_journal_entry(payment("failed", 1), zero, rules) is None  # never cleared: nothing
    assert sap.payment_to_journal_entry(payment("succeeded", 4), eur("178.50"), rules) is None  # a repeat
    by_provider = sap.payment_to_journal_entry(payment("succeeded", 2, "stripe"), zero, rules)
    assert by_provider is not None and by_provider.items[0].gl_account == "11001021"
    with pytest.raises(sap.PostingRuleError, match="clearing_accounts: no account for currency EUR"):
        sap.payment_to_journal_entry(payment("succeeded", 2), zero, RULES)


def test_a_credit_notes_refund_is_cash_out_of_the_providers_clearing_account() -> None:
    rules = replace(RULES, clearing_accounts={"stripe:EUR": "11001021", "_default": "11001020"})

    def note(refund: str | None, provider: str | None = "stripe") -> CreditNote:
        return CreditNote.build(
            id="cn-2", credit_note_number="LAG-1-003-CN2", invoice_id="inv-3", invoice_number="LAG-1-003",
            customer_id="cust-7", currency="EUR", status="finalized", issue_date=date(2026, 1, 7),
            lines=[CreditNoteLine(id="l1", product_family="Software", amount=eur("40.00"))],
            refund=eur(refund) if refund else None, payment_method=provider,
        )  # fmt: skip

    entry = sap.credit_note_refund_entry(note("25.00"), rules)
    assert entry is not None and (entry.reference_id, entry.document_type) == ("LAG-1-003-CN2-RF", "DZ")
    assert [
        (i.kind.value, i.side.value, i.gl_account, str(i.amount.amount), i.assignment) for i in entry.items
    ] == [
        ("receivable", "debit", "12100000", "25.00", "LAG-1-003"),  # paid back: no longer owed to them
        ("gl", "credit", "11001021", "25.00", "LAG-1-003"),  # the provider's clearing account in EUR
    ]
    other = sap.credit_note_refund_entry(note("25.00", provider=None), rules)
    assert other is not None and other.items[1].gl_account == "11001020"
    assert sap.credit_note_refund_entry(note(None), rules) is None  # all of it is credit kept
    with pytest.raises(ValueError, match="refund"):
        note("40.01")  # more than the credit note's total


def test_refund_references_keep_the_customers_segment() -> None:
    """A long credit note number's refund keeps the credit note's own reference, so two customers'
    refunds never share one (a tail of ``...-1000-001-CN001-RF`` would drop ``1000``)."""
    refs = {
        n: sap.refund_reference(n, "tail") for n in ("TWI-2B86-1000-001-CN001", "TWI-2B86-2417-001-CN001")
    }
    assert refs == {
        "TWI-2B86-1000-001-CN001": "1000-001-CN001RF",
        "TWI-2B86-2417-001-CN001": "2417-001-CN001RF",
    }
    assert sap.refund_reference("LAG-1-003-CN2", "tail") == "LAG-1-003-CN2-RF"  # short: unchanged
    # A credit note whose own reference is the whole 16 characters: its hyphens make room.
    assert sap.refund_reference("LAG-0002-000-CN2", "tail") == "LAG0002000CN2RF"


def test_a_payment_record_clears_its_own_amount_under_its_own_reference() -> None:
    from lead2cash.canonical_model import Payment

    rules = replace(RULES, clearing_accounts={"manual": "11002020", "_default": "11001020"})

    def record(pid: str, cents: str, status: str = "succeeded", version: int = 1) -> Payment:
        return Payment(
            id=pid, version=version, customer_id="cust-7", invoice_ids=("inv-1",), amount=eur(cents),
            status=status, payment_date=date(2026, 1, 9), reference="LAG-1-001", method="manual",
        )  # fmt: skip

    first = record("4cf085a7-c196-4f07-a543-97c50ec6e8b2", "30.00")
    second = record("9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d", "70.00")
    refs = [sap.payment_record_reference(p) for p in (first, second)]
    assert refs == ["P4CF085A7C1964-1", "P9A0B1C2D3E4F4-1"] and all(len(r) == 16 for r in refs)
    assert sap.payment_record_reference(record(first.id, "30.00", version=12)) == "P4CF085A7C196-12"
    zero = eur("0.00")
    entry = sap.payment_to_journal_entry(first, zero, rules, reference_id=refs[0])
    assert entry is not None and entry.reference_id == refs[0]
    assert [(i.side.value, i.gl_account, str(i.amount.amount), i.assignment) for i in entry.items] == [
        ("debit", "11002020", "30.00", "LAG-1-001"),  # the manual payments' account
        ("credit", "12100000", "30.00", "LAG-1-001"),
    ]
    returned = sap.payment_to_journal_entry(record(first.id, "30.00", "failed", 2), eur("30.00"), rules)
    assert returned is not None and [str(i.amount.amount) for i in returned.items] == ["30.00", "30.00"]
    assert returned.items[0].side.value == "credit"


def test_a_declined_refund_reverses_the_cash_out_under_its_own_reference() -> None:
    note = CreditNote.build(
        id="cn-2", credit_note_number="LAG-1-003-CN2", invoice_id="inv-3", invoice_number="LAG-1-003",
        customer_id="cust-7", currency="EUR", status="finalized", issue_date=date(2026, 1, 7),
        lines=[CreditNoteLine(id="l1", product_family="Software", amount=eur("40.00"))],
        refund_declined=eur("25.00"), payment_method="stripe",
    )  # fmt: skip
    rules = replace(RULES, clearing_accounts={"_default": "11001020"})
    assert sap.credit_note_refund_entry(note, rules) is None  # nothing paid out
    entry = sap.credit_note_refund_entry(note, rules, declined=True)
    assert entry is not None and (entry.reference_id, entry.document_type) == ("LAG-1-003-CN2-RD", "DZ")
    assert [(i.kind.value, i.side.value, i.gl_account, str(i.amount.amount)) for i in entry.items] == [
        ("receivable", "credit", "12100000", "25.00"),  # owed to the customer again
        ("gl", "debit", "11001020", "25.00"),
    ]
    assert sap.refund_reference("LAG-1000-001-CN001", "tail", "-RD") == "1000-001-CN001RD"
    with pytest.raises(ValueError, match="refund and refund_declined"):
        CreditNote.build(**{**note.model_dump(exclude={"subtotal", "tax_total", "total", "lines", "taxes"}),
                            "lines": note.lines, "refund": eur("1.00")})  # fmt: skip
