"""Valid sample entities for the canonical-model tests (imported by the test modules, not collected)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from lead2cash.canonical_model import (
    Address,
    CanonicalEntity,
    Contact,
    CreditNote,
    CreditNoteLine,
    Customer,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalEntryItem,
    Money,
    Order,
    OrderLine,
    Payment,
    Product,
    Subscription,
    TaxLine,
    UsageEvent,
    WalletTransaction,
)


def usd(amount: str) -> Money:
    return Money(amount=amount, currency="USD")


def make_contact(**overrides: Any) -> Contact:
    fields: dict[str, Any] = {
        "id": "contact-1",
        "refs": {"salesforce": "003000000000001AAA"},
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "title": "CFO",
    }
    return Contact(**(fields | overrides))


def make_customer(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "id": "cust-1",
        "refs": {"salesforce": "001000000000001AAA", "lago": "001000000000001AAA", "sap": "1000042"},
        "version": 3,
        "source_modstamp": "2024-05-01T10:00:00.000+0000",
        "name": "Acme GmbH",
        "legal_name": "Acme Gesellschaft mbH",
        "email": "billing@acme.example",
        "tax_id": "DE123456789",
        "currency": "EUR",
        "language": "de",
        "net_payment_term_days": 30,
        "billing_address": Address(
            line1="Hauptstr. 1", city="Berlin", region="DE-BE", postal_code="10115", country="DE"
        ),
        "contacts": (make_contact(),),
    }
    return Customer(**(fields | overrides))


def make_product(**overrides: Any) -> Product:
    fields: dict[str, Any] = {
        "id": "prod-1",
        "refs": {"salesforce": "01t000000000001AAA"},
        "code": "PLAT-M",
        "name": "Platform subscription",
        "family": "Software",
        "kind": "recurring",
        "billing_period": "monthly",
    }
    return Product(**(fields | overrides))


def make_order_line(**overrides: Any) -> OrderLine:
    fields: dict[str, Any] = {
        "id": "line-1",
        "refs": {"salesforce": "00k000000000001AAA"},
        "product_code": "PLAT-M",
        "product_name": "Platform subscription",
        "product_family": "Software",
        "kind": "recurring",
        "billing_period": "monthly",
        "quantity": "10",
        "unit_price": Money(amount="49.90", currency="EUR"),
        "discount_percent": "10",
        "service_start": date(2024, 6, 1),
        "service_end": date(2025, 5, 31),
    }
    return OrderLine(**(fields | overrides))


def make_order(**overrides: Any) -> Order:
    fields: dict[str, Any] = {
        "id": "order-1",
        "refs": {"salesforce": "006000000000001AAA"},
        "version": 2,
        "order_number": "OPP-0001",
        "name": "Acme platform deal",
        "customer": make_customer(),
        "currency": "EUR",
        "order_date": date(2024, 5, 20),
        "lines": (
            make_order_line(),
            make_order_line(
                id="line-2",
                product_code="ONB",
                product_name="Onboarding",
                product_family="Services",
                kind="one_time",
                billing_period=None,
                quantity="1",
                unit_price=Money(amount="1500.00", currency="EUR"),
                discount_percent=None,
                discount_amount=Money(amount="100.00", currency="EUR"),
                service_start=None,
                service_end=None,
            ),
        ),
    }
    return Order(**(fields | overrides))


def make_subscription(**overrides: Any) -> Subscription:
    fields: dict[str, Any] = {
        "id": "sub-1",
        "refs": {"lago": "sub_ext_1"},
        "customer_id": "cust-1",
        "plan_code": "PLAT-M",
        "status": "active",
        "billing_period": "monthly",
        "start_date": date(2024, 6, 1),
        "end_date": date(2025, 5, 31),
        "quantity": "10",
        "unit_price": Money(amount="44.91", currency="EUR"),
        "order_id": "order-1",
        "order_line_id": "line-1",
    }
    return Subscription(**(fields | overrides))


def make_invoice_lines() -> tuple[InvoiceLine, ...]:
    return (
        InvoiceLine(
            id="fee-1",
            refs={"lago": "fee_1"},
            description="Platform subscription, June 2024",
            product_code="PLAT-M",
            product_family="Software",
            kind="recurring",
            quantity="10",
            unit_price=Money(amount="44.91", currency="EUR"),
            net_amount=Money(amount="449.10", currency="EUR"),
            tax_code="vat_19",
            service_start=date(2024, 6, 1),
            service_end=date(2024, 6, 30),
            order_line_id="line-1",
            subscription_id="sub-1",
        ),
        InvoiceLine(
            id="fee-2",
            description="Onboarding",
            product_family="Services",
            kind="one_time",
            quantity="1",
            net_amount=Money(amount="1400.00", currency="EUR"),
            tax_code="vat_19",
        ),
    )


def make_invoice(**overrides: Any) -> Invoice:
    fields: dict[str, Any] = {
        "id": "inv-1",
        "refs": {"lago": "inv_1", "sap": "5100000123"},
        "invoice_number": "ACME-202406-001",
        "customer": make_customer(),
        "status": "finalized",
        "issue_date": date(2024, 6, 1),
        "due_date": date(2024, 7, 1),
        "order_id": "order-1",
    }
    return Invoice.build(
        currency="EUR",
        lines=make_invoice_lines(),
        taxes=[
            TaxLine(
                code="vat_19",
                name="VAT 19%",
                rate="19",
                taxable_amount=Money(amount="1849.10", currency="EUR"),
                amount=Money(amount="351.33", currency="EUR"),
            )
        ],
        **(fields | overrides),
    )


def make_credit_note(**overrides: Any) -> CreditNote:
    fields: dict[str, Any] = {
        "id": "cn-1",
        "refs": {"lago": "cn_1"},
        "credit_note_number": "ACME-202406-001-CN001",
        "invoice_id": "inv-1",
        "invoice_number": "ACME-202406-001",
        "customer_id": "cust-1",
        "status": "finalized",
        "reason": "order_change",
        "issue_date": date(2024, 6, 15),
    }
    lines = overrides.pop(
        "lines",
        [CreditNoteLine(id="cnl-1", invoice_line_id="fee-2", amount=Money(amount="100.00", currency="EUR"))],
    )
    taxes = overrides.pop(
        "taxes", [TaxLine(code="vat_19", rate="19", amount=Money(amount="19.00", currency="EUR"))]
    )
    return CreditNote.build(currency="EUR", lines=lines, taxes=taxes, **(fields | overrides))


def make_payment(**overrides: Any) -> Payment:
    fields: dict[str, Any] = {
        "id": "pay-1",
        "refs": {"lago": "pay_1"},
        "customer_id": "cust-1",
        "invoice_ids": ("inv-1",),
        "amount": Money(amount="2200.43", currency="EUR"),
        "status": "succeeded",
        "payment_date": date(2024, 6, 20),
        "method": "sepa_debit",
        "reference": "SEPA-REF-1",
    }
    return Payment(**(fields | overrides))


def make_journal_items(currency: str = "EUR") -> tuple[JournalEntryItem, ...]:
    def m(amount: str) -> Money:
        return Money(amount=amount, currency=currency)

    return (
        JournalEntryItem(
            side="debit",
            kind="receivable",
            gl_account="12100000",
            amount=m("2200.43"),
            customer_id="cust-1",
            assignment="ACME-202406-001",
        ),
        JournalEntryItem(
            side="credit", gl_account="41000000", amount=m("449.10"), profit_center="PC-SW", text="Software"
        ),
        JournalEntryItem(
            side="credit",
            gl_account="41100000",
            amount=m("1400.00"),
            profit_center="PC-SV",
            cost_center="CC1",
        ),
        JournalEntryItem(
            side="credit",
            kind="tax",
            gl_account="17500000",
            amount=m("351.33"),
            tax_code="A1",
            tax_base_amount=m("1849.10"),
        ),
    )


def make_journal_entry(**overrides: Any) -> JournalEntry:
    fields: dict[str, Any] = {
        "id": "je-1",
        "refs": {"sap": "1000/5100000123/2024"},
        "company_code": "1010",
        "document_type": "DR",
        "document_date": date(2024, 6, 1),
        "posting_date": date(2024, 6, 2),
        "reference_id": "ACME-202406-001",
        "header_text": "Lago invoice ACME-202406-001",
        "source_document_id": "inv-1",
        "items": make_journal_items(),
    }
    return JournalEntry(**(fields | overrides))


def make_usage_event(**overrides: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "id": "api:req-1",
        "customer_id": "CUST-1",
        "subscription_id": "SUB-1",
        "metric_code": "api_calls",
        "timestamp": datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC),
        "properties": {"bytes": "5120.5", "endpoint": "/v1/orders"},
    }
    return UsageEvent(**(fields | overrides))


def make_wallet_transaction(**overrides: Any) -> WalletTransaction:
    fields: dict[str, Any] = {
        "id": "wt-1",
        "customer_id": "CUST-1",
        "wallet_id": "w-1",
        "kind": "voided",
        "direction": "outbound",
        "status": "settled",
        "amount": Money.of("12.50", "EUR"),
        "purchased": Money.of("2.50", "EUR"),
        "transaction_date": date(2026, 1, 6),
    }
    return WalletTransaction(**(fields | overrides))


def all_entities() -> list[CanonicalEntity]:
    return [
        make_contact(),
        make_customer(),
        make_product(),
        make_order(),
        make_subscription(),
        make_invoice(),
        make_credit_note(),
        make_payment(),
        make_journal_entry(),
        make_usage_event(),
        make_wallet_transaction(),
    ]
