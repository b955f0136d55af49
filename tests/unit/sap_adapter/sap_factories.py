"""Canonical invoices for the SAP adapter and connector tests (imported, not collected)."""

from __future__ import annotations

import random
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lead2cash.canonical_model import Address, Customer, Invoice, InvoiceLine, Money, TaxLine

COUNTRY = {"USD": "US", "EUR": "DE", "GBP": "GB", "JPY": "JP", "KWD": "KW"}
TAX = {
    "USD": ("US_EXEMPT", "0"),
    "EUR": ("DE_VAT_19", "19"),
    "GBP": ("GB_VAT_20", "20"),
    "JPY": ("JP_CT_10", "10"),
    "KWD": ("KW_ZERO", "0"),
}
FAMILIES = ("Software", "Services", "Training", "Hardware")
PRICES = {"USD": "499.00", "EUR": "459.00", "GBP": "399.00", "JPY": "72000", "KWD": "152.500"}


def customer(n: int, currency: str = "EUR", **overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "id": f"cust-{n}",
        "refs": {"salesforce": f"001L2C{n:012d}"},
        "name": f"Customer {n} O'Brien & Söhne GmbH",
        "currency": currency,
        "language": "en",
        "billing_address": Address(
            line1=f"{n} Main Street",
            city="Springfield",
            postal_code=f"{10000 + n}",
            country=COUNTRY[currency],
        ),
    }
    return Customer(**(fields | overrides))


def tax_amount(base: Money, rate: str) -> Money:
    return Money.of(base.amount * Decimal(rate) / 100, base.currency, rounding=ROUND_HALF_UP)


def invoice(
    n: int,
    currency: str = "EUR",
    *,
    rng: random.Random | None = None,
    customer_n: int | None = None,
    issue_date: date = date(2024, 11, 15),
    number_prefix: str = "INV",
    zero_rated_line: bool = False,
) -> Invoice:
    """A finalized invoice with 1-4 product lines (families from the catalogue), sometimes a discount line,
    one tax per rate computed on its lines (half up, as SAP checks it)."""
    rng = rng or random.Random(n)
    code, rate = TAX[currency]
    unit = Money(amount=PRICES[currency], currency=currency)
    lines: list[InvoiceLine] = []
    for i in range(rng.randint(1, 4)):
        qty = rng.randint(1, 7)
        family = rng.choice(FAMILIES)
        net = unit.times(Decimal(rng.randint(50, 150)) / 100 * qty)
        lines.append(
            InvoiceLine(
                id=f"l{i}",
                description=f"{family} item {i}",
                product_code=f"P-{family[:4].upper()}",
                product_family=family,
                quantity=qty,
                net_amount=net,
                tax_code=code,
            )
        )
    if rng.random() < 0.3:
        discount = -lines[0].net_amount.times(Decimal("0.1"))
        lines.append(
            InvoiceLine(
                id="disc",
                description="Discount 10 %",
                product_family=lines[0].product_family,
                net_amount=discount,
                tax_code=code,
            )
        )
    if zero_rated_line:
        lines.append(
            InvoiceLine(
                id="zero",
                description="Zero-rated training",
                product_family="Training",
                net_amount=unit,
                tax_code="ZERO_RATED",
            )
        )
    taxes = []
    for tax_code, tax_rate in ((code, rate), ("ZERO_RATED", "0")):
        tied = [ln.net_amount for ln in lines if ln.tax_code == tax_code]
        if not tied:
            continue
        base = sum(tied[1:], tied[0])
        taxes.append(
            TaxLine(
                code=tax_code,
                name=f"Tax {tax_code}",
                rate=tax_rate,
                taxable_amount=base,
                amount=tax_amount(base, tax_rate),
            )
        )
    cn = customer_n if customer_n is not None else n
    return Invoice.build(
        id=f"inv-{number_prefix}-{n}",
        refs={"lago": f"lago-{n}"},
        invoice_number=f"{number_prefix}-{n:06d}",
        customer=customer(cn, currency),
        currency=currency,
        status="finalized",
        issue_date=issue_date,
        lines=lines,
        taxes=taxes,
    )
