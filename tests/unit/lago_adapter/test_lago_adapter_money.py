"""Exact amounts between Lago's integer minor units and canonical Money, for 0, 2 and 3 minor units."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from lead2cash.adapters.lago import billing_plan, invoice_from_lago
from lead2cash.canonical_model import MINOR_UNITS, Money, Order

CURRENCIES = ["JPY", "USD", "EUR", "KWD", "BHD"]  # 0, 2, 2, 3, 3 minor units
cents = st.integers(min_value=0, max_value=10**12)


def _invoice(currency: str, fees: list[int], tax_rate: str, coupons: int) -> dict:
    fees_total = sum(fees)
    base = fees_total - coupons
    tax = int((Decimal(base) * Decimal(tax_rate) / 100).to_integral_value())
    return {
        "lago_id": "inv-1", "number": "INV-1", "currency": currency, "status": "finalized",
        "payment_status": "pending", "issuing_date": "2026-01-01", "payment_due_date": "2026-01-31",
        "invoice_type": "one_off", "customer": {"external_id": "C1", "name": "C", "country": "DE"},
        "fees": [
            {"lago_id": f"fee-{i}", "amount_cents": c, "units": "1", "item": {"type": "add_on", "code": "X"},
             "applied_taxes": [{"tax_code": "T", "tax_rate": Decimal(tax_rate), "amount_cents": 0}]}
            for i, c in enumerate(fees)
        ],
        "coupons_amount_cents": coupons,
        "applied_taxes": [{"tax_code": "T", "tax_name": "T", "tax_rate": Decimal(tax_rate),
                           "amount_cents": tax, "fees_amount_cents": base}],
        "fees_amount_cents": fees_total,
        "sub_total_excluding_taxes_amount_cents": base,
        "taxes_amount_cents": tax,
        "sub_total_including_taxes_amount_cents": base + tax,
        "prepaid_credit_amount_cents": 0,
        "credit_notes_amount_cents": 0,
        "total_amount_cents": base + tax,
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    fees=st.lists(cents, min_size=1, max_size=5),
    rate=st.sampled_from(["0", "10", "19", "20", "7.5"]),
    data=st.data(),
)
def test_invoice_amounts_are_the_minor_units_exactly(currency: str, fees: list[int], rate: str, data) -> None:
    coupons = data.draw(st.integers(min_value=0, max_value=sum(fees)))
    raw = _invoice(currency, fees, rate, coupons)
    invoice = invoice_from_lago({"webhook_type": "invoice.created", "invoice": raw})
    assert [line.net_amount.to_minor_units() for line in invoice.lines[: len(fees)]] == fees
    assert invoice.subtotal.to_minor_units() == raw["sub_total_excluding_taxes_amount_cents"]
    assert invoice.tax_total.to_minor_units() == raw["taxes_amount_cents"]
    assert invoice.total.to_minor_units() == raw["total_amount_cents"]
    assert invoice.total.amount == Decimal(raw["total_amount_cents"]).scaleb(-MINOR_UNITS[currency])
    assert invoice.total.amount.as_tuple().exponent == -MINOR_UNITS[currency]


@settings(max_examples=300, deadline=None)
@given(
    currency=st.sampled_from(CURRENCIES),
    unit=st.integers(min_value=0, max_value=10**9),
    quantity=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3),
    discount=st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=2)),
)
def test_order_lines_become_lago_amounts_that_sum_to_the_order(currency, unit, quantity, discount) -> None:
    price = Money.from_minor_units(unit, currency)
    line = {"id": "L1", "product_code": "ONB-STD", "product_name": "Onboarding", "kind": "one_time",
            "quantity": str(quantity), "unit_price": price.model_dump(mode="json")}  # fmt: skip
    if discount is not None:
        line["discount_percent"] = str(discount)
    recurring = {
        **line,
        "id": "L2",
        "product_code": "PLAT-BASE",
        "kind": "recurring",
        "billing_period": "monthly",
    }
    order = Order.model_validate({
        "id": "O1", "customer": {"id": "C1", "name": "C"}, "currency": currency, "order_date": "2026-01-01",
        "lines": [line, recurring],
    })  # fmt: skip
    plan = billing_plan(order)
    [fee] = plan.fees
    lago_amount = fee.units * fee.unit_amount_cents  # what Lago bills: units x unit amount, in minor units
    assert lago_amount == lago_amount.to_integral_value()
    assert int(lago_amount) == order.lines[0].net_amount.to_minor_units()
    [sub] = plan.subscriptions
    assert sub.amount_cents == order.lines[1].net_amount.to_minor_units()
    assert Money.from_minor_units(sub.amount_cents, currency) == order.lines[1].net_amount
