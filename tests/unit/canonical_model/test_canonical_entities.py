"""Entity invariants: every validator fails with a message that names the offending field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from canonical_factories import (
    make_credit_note,
    make_customer,
    make_invoice,
    make_invoice_lines,
    make_journal_entry,
    make_journal_items,
    make_order,
    make_order_line,
    make_payment,
    make_product,
    make_subscription,
    usd,
)
from pydantic import ValidationError

from lead2cash.canonical_model import (
    ENTITY_TYPES,
    CanonicalEntity,
    Contact,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalEntryItem,
    Money,
    Subscription,
    SystemRefs,
    TaxLine,
    entity_from_json,
)


def eur(amount: str) -> Money:
    return Money(amount=amount, currency="EUR")


def error_text(call: Any) -> str:
    with pytest.raises(ValidationError) as info:
        call()
    return str(info.value)


# --- entity base -------------------------------------------------------------------------------------


def test_entity_base_fields() -> None:
    customer = make_customer()
    assert customer.entity_type == "Customer"
    assert customer.version_key == "Customer:cust-1:v3"
    assert customer.ref("sap") == "1000042"
    assert customer.ref("hubspot") is None
    assert "version" in error_text(lambda: make_customer(version=0))
    assert "version" in error_text(lambda: make_customer(version="2"))
    assert "id" in error_text(lambda: make_customer(id="  "))
    assert "extra" in error_text(lambda: make_customer(colour="red"))


def test_entities_are_frozen_and_hashable() -> None:
    order = make_order()
    with pytest.raises(ValidationError):
        order.currency = "USD"  # type: ignore[misc]
    assert isinstance(order.lines, tuple)
    assert hash(order) == hash(make_order())


def test_system_refs_are_an_immutable_mapping() -> None:
    refs = make_customer().refs
    assert isinstance(refs, SystemRefs)
    assert refs == {"salesforce": "001000000000001AAA", "lago": "001000000000001AAA", "sap": "1000042"}
    with pytest.raises(TypeError):
        refs["sap"] = "x"  # type: ignore[index]
    updated = refs.with_ref("sap", "1000043")
    assert updated["sap"] == "1000043" and refs["sap"] == "1000042"
    assert "refs" in error_text(lambda: make_customer(refs={"Sales Force": "x"}))
    assert "refs" in error_text(lambda: make_customer(refs={"sap": ""}))


def test_entity_types_lists_every_entity_class() -> None:
    def subclasses(cls: type) -> set[type]:
        found: set[type] = set(cls.__subclasses__())
        return found.union(*(subclasses(c) for c in found))

    assert set(ENTITY_TYPES.values()) == subclasses(CanonicalEntity)
    assert all(name == cls.__name__ == cls.entity_type for name, cls in ENTITY_TYPES.items())
    with pytest.raises(KeyError, match="Quote"):
        entity_from_json("Quote", "{}")


# --- party -------------------------------------------------------------------------------------------


def test_customer_validation() -> None:
    assert make_customer().country == "DE"
    assert "email" in error_text(lambda: make_customer(email="Acme Billing"))
    assert "net_payment_term_days" in error_text(lambda: make_customer(net_payment_term_days=-1))
    assert "currency" in error_text(lambda: make_customer(currency="EURO"))
    assert "last_name" in error_text(lambda: Contact(id="c", last_name=""))
    assert Contact(id="c", first_name="Ada", last_name="Lovelace").full_name == "Ada Lovelace"


# --- product -----------------------------------------------------------------------------------------


def test_product_charge_kind_and_period() -> None:
    assert make_product(kind="one_time", billing_period=None).billing_period is None
    assert "billing_period" in error_text(lambda: make_product(billing_period=None))
    assert "billing_period" in error_text(lambda: make_product(kind="one_time"))
    assert "kind" in error_text(lambda: make_product(kind="usage"))


# --- order -------------------------------------------------------------------------------------------


def test_order_line_amounts() -> None:
    line = make_order_line(quantity="3", unit_price=eur("19.99"), discount_percent="10",
                           discount_amount=eur("1.00"))  # fmt: skip
    assert line.gross_amount == eur("59.97")
    assert line.net_amount == eur("52.97")  # 59.97 * 0.9 - 1 = 52.973
    assert line.discount_total == eur("7.00")
    plain = make_order_line(quantity="2.5", unit_price=eur("0.99"), discount_percent=None)
    assert plain.net_amount == eur("2.48")  # 2.475 rounds half-up
    yen = make_order_line(quantity="3", unit_price=Money.of("333", "JPY"), discount_percent="50")
    assert yen.net_amount == Money.of("500", "JPY")  # 499.5 rounds half-up


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": "0"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "1000000001"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": "0.0000000001"}, "quantity"),
        ({"discount_percent": "100.01"}, "percent"),
        ({"discount_percent": "-1"}, "percent"),
        ({"discount_percent": 10.0}, "percent"),
        ({"discount_amount": Money.of("1000", "EUR")}, "discount_amount"),
        ({"discount_amount": Money.of("1", "USD")}, "discount_amount"),
        ({"discount_amount": Money.of("-1", "EUR")}, "discount_amount"),
        ({"unit_price": Money.of("-1", "EUR")}, "unit_price"),
        ({"service_end": date(2024, 5, 31)}, "service_end"),
        ({"billing_period": None}, "billing_period"),
        ({"kind": "one_time"}, "billing_period"),
        ({"unit_price": Money.of("999999999999", "EUR"), "quantity": "1000000"}, "net_amount"),
    ],
)
def test_order_line_rejects(overrides: dict[str, Any], field: str) -> None:
    assert field in error_text(lambda: make_order_line(**overrides))


def test_order_line_discount_bounds_are_inclusive() -> None:
    assert make_order_line(discount_percent="100").net_amount.is_zero()
    assert make_order_line(discount_percent=0).net_amount == eur("499.00")
    full = make_order_line(discount_percent=None, discount_amount=eur("499.00"))
    assert full.net_amount.is_zero()


def test_order_invariants() -> None:
    order = make_order()
    assert order.total == eur("1849.10")
    assert [line.id for line in order.recurring_lines] == ["line-1"]
    assert [line.id for line in order.one_time_lines] == ["line-2"]
    assert order.line("line-2").net_amount == eur("1400.00")
    usd_line = make_order_line(id="line-9", unit_price=usd("1.00"))
    assert "lines[2].unit_price" in error_text(lambda: make_order(lines=(*order.lines, usd_line)))
    assert "lines[1].id" in error_text(lambda: make_order(lines=(order.lines[0], order.lines[0])))
    # A deal whose line items were all removed is an order without lines (billing ends what it billed).
    assert make_order(lines=()).total == eur("0.00")
    assert "order_date" in error_text(lambda: make_order(order_date="2024-02-30"))


# --- invoice -----------------------------------------------------------------------------------------


def test_invoice_build_computes_totals() -> None:
    invoice = make_invoice()
    assert invoice.subtotal == eur("1849.10")
    assert invoice.tax_total == eur("351.33")
    assert invoice.total == eur("2200.43")
    empty = Invoice.build(
        id="i0", invoice_number="N0", customer=make_customer(), currency="jpy", status="draft",
        issue_date=date(2024, 1, 1), lines=[],
    )  # fmt: skip
    assert empty.total == Money.zero("JPY")


def _invoice_fields(**overrides: Any) -> dict[str, Any]:
    fields = make_invoice().model_dump()
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total": {"amount": "2200.44", "currency": "EUR"}}, "total"),
        ({"subtotal": {"amount": "1849.11", "currency": "EUR"}, "total": {"amount": "2200.44", "currency": "EUR"}},
         "subtotal"),
        ({"tax_total": {"amount": "351.34", "currency": "EUR"}, "total": {"amount": "2200.44", "currency": "EUR"}},
         "tax_total"),
        ({"due_date": date(2024, 5, 31)}, "due_date"),
        ({"status": "paid"}, "payment_status"),
        ({"currency": "USD"}, "currency"),
        ({"status": "sent"}, "status"),
    ],
)  # fmt: skip
def test_invoice_rejects(overrides: dict[str, Any], field: str) -> None:
    assert field in error_text(lambda: Invoice(**_invoice_fields(**overrides)))


def test_invoice_rejects_lines_and_taxes_in_another_currency() -> None:
    lines = (*make_invoice_lines(), InvoiceLine(id="fee-3", description="x", net_amount=usd("1.00")))
    message = error_text(lambda: Invoice.build(currency="EUR", lines=lines, **_base_invoice_fields()))
    assert "lines[2].net_amount" in message
    assert "differs" in message
    taxes = [TaxLine(code="t", rate="0", amount=usd("0.00"))]
    message = error_text(
        lambda: Invoice.build(
            currency="EUR", lines=make_invoice_lines(), taxes=taxes, **_base_invoice_fields()
        )
    )
    assert "taxes[0].amount" in message
    assert "unit_price" in error_text(
        lambda: InvoiceLine(id="f", description="x", unit_price=usd("1.00"), net_amount=eur("1.00"))
    )
    assert "taxable_amount" in error_text(
        lambda: TaxLine(code="t", rate="19", taxable_amount=usd("1.00"), amount=eur("0.19"))
    )
    assert "rate" in error_text(lambda: TaxLine(code="t", rate="119", amount=eur("0.19")))


def test_invoice_rejects_duplicate_line_ids() -> None:
    line = make_invoice_lines()[0]
    assert "lines[1].id" in error_text(
        lambda: Invoice.build(currency="EUR", lines=[line, line], **_base_invoice_fields())
    )


def test_invoice_lines_may_be_negative_and_zero_quantity() -> None:
    coupon = InvoiceLine(id="coupon", description="Coupon", quantity="0", net_amount=eur("-49.10"))
    invoice = Invoice.build(currency="EUR", lines=[*make_invoice_lines(), coupon], **_base_invoice_fields())
    assert invoice.total == eur("1800.00")


def _base_invoice_fields() -> dict[str, Any]:
    return {
        "id": "inv-x",
        "invoice_number": "X-1",
        "customer": make_customer(),
        "status": "finalized",
        "issue_date": date(2024, 6, 1),
    }


# --- credit note -------------------------------------------------------------------------------------


def test_credit_note_invariants() -> None:
    note = make_credit_note()
    assert note.total == eur("119.00")
    fields = note.model_dump()
    assert "total" in error_text(lambda: type(note)(**(fields | {"total": eur("119.01")})))
    assert "amount" in error_text(lambda: CreditNoteLine(id="x", amount=eur("-1.00")))
    assert "lines" in error_text(lambda: make_credit_note(lines=()))


# --- payment and subscription ------------------------------------------------------------------------


def test_payment_and_subscription_validation() -> None:
    assert "amount" in error_text(lambda: make_payment(amount=eur("0.00")))
    assert "invoice_ids" in error_text(lambda: make_payment(invoice_ids=("a", "a")))
    assert "end_date" in error_text(lambda: make_subscription(end_date=date(2024, 1, 1)))
    assert "quantity" in error_text(lambda: make_subscription(quantity="0"))
    fields = make_subscription().model_dump(exclude={"quantity"})
    assert Subscription(**fields).quantity == Decimal(1)


# --- journal -----------------------------------------------------------------------------------------


def test_journal_entry_balances() -> None:
    entry = make_journal_entry()
    assert entry.totals() == {"EUR": (eur("2200.43"), eur("2200.43"))}
    assert sum(i.signed_amount.amount for i in entry.items) == 0


def test_journal_entry_rejects_unbalanced_items() -> None:
    items = make_journal_items()
    short = (*items[:-1], items[-1].model_copy(update={"amount": eur("351.32")}))
    message = error_text(lambda: make_journal_entry(items=short))
    assert "items" in message and "debits" in message and "0.01 EUR" in message


def test_journal_entry_balances_per_currency() -> None:
    both = (*make_journal_items("EUR"), *make_journal_items("USD"))
    assert make_journal_entry(items=both).currencies == ("EUR", "USD")
    crossed = (
        JournalEntryItem(side="debit", gl_account="1", amount=eur("100.00")),
        JournalEntryItem(side="credit", gl_account="2", amount=usd("100.00")),
    )
    assert "items" in error_text(lambda: make_journal_entry(items=crossed))


def test_journal_entry_needs_two_items() -> None:
    assert "items" in error_text(lambda: make_journal_entry(items=make_journal_items()[:1]))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": eur("0.00")}, "amount"),
        ({"amount": eur("-1.00")}, "amount"),
        ({"kind": "receivable"}, "customer_id"),
        ({"kind": "tax"}, "tax_code"),
        ({"kind": "tax", "tax_code": "A1", "tax_base_amount": usd("1.00")}, "tax_base_amount"),
        ({"side": "S"}, "side"),
        ({"gl_account": ""}, "gl_account"),
    ],
)
def test_journal_item_rejects(fields: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"side": "debit", "gl_account": "12100000", "amount": eur("1.00")}
    assert field in error_text(lambda: JournalEntryItem(**(base | fields)))


def test_journal_entry_dates_and_header() -> None:
    assert "reference_id" in error_text(lambda: make_journal_entry(reference_id=""))
    assert "company_code" in error_text(
        lambda: JournalEntry(**(make_journal_entry().model_dump(exclude={"company_code"})))
    )
