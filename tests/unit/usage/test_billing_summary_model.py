"""The billing summary's pure parts: usage aggregated and priced as Lago does, invoices' facts, and the
summary composed from them, to the minor unit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from lead2cash.summary.model import ChargeDef, InvoiceFacts, Period, UsageState, compose, invoice_facts
from lead2cash.summary.rebuild import compare

GRADUATED = {
    "graduated_ranges": [
        {"from_value": 0, "to_value": 100, "flat_amount": "0", "per_unit_amount": "0"},
        {"from_value": 101, "to_value": 200, "flat_amount": "1.00", "per_unit_amount": "0.01"},
        {"from_value": 201, "to_value": None, "flat_amount": "0", "per_unit_amount": "0.005"},
    ]
}


def test_charges_are_priced_like_lago_and_rounded_once() -> None:
    standard = ChargeDef("s", "sum_agg", "seconds", "standard", {"amount": "0.002"})
    assert standard.price(Decimal("2.5"), "EUR") == 1  # 0.005 EUR -> half up
    assert standard.price(Decimal("1001"), "EUR") == 200
    assert standard.price(Decimal("1001"), "JPY") == 2
    package = ChargeDef(
        "p", "count_agg", None, "package", {"amount": "5", "package_size": 10, "free_units": 3}
    )
    assert package.price(Decimal(3), "EUR") == 0
    assert package.price(Decimal(4), "EUR") == 500
    assert package.price(Decimal(14), "EUR") == 1000
    graduated = ChargeDef("g", "count_agg", None, "graduated", GRADUATED)
    assert graduated.price(Decimal(100), "EUR") == 0
    assert graduated.price(Decimal(101), "EUR") == 101  # 1 x 0.01 + 1.00
    assert graduated.price(Decimal(250), "EUR") == 200 + 25  # 100 x 0.01 + 1.00, then 50 x 0.005


def test_aggregates_take_one_event_at_a_time() -> None:
    total = ChargeDef("m", "sum_agg", "mb", "standard", {"amount": "1"})
    peak = ChargeDef("m", "max_agg", "mb", "standard", {"amount": "1"})
    s, m = UsageState(), UsageState()
    for value in ("1.25", "7", "not a number", "2"):
        s.add(total, "2026-01-01T00:00:00+00:00", {"mb": value})
        m.add(peak, "2026-01-01T00:00:00+00:00", {"mb": value})
    assert s.units(total) == Decimal("10.25") and m.units(peak) == Decimal(7)
    assert UsageState.from_json(s.to_json()).units(total) == Decimal("10.25")


def test_unique_count_follows_the_latest_operation_whatever_the_arrival_order() -> None:
    users = ChargeDef("u", "unique_count_agg", "user", "standard", {"amount": "1"})
    st = UsageState()
    st.add(users, "2026-01-01T00:00:03+00:00", {"user": "a", "operation_type": "remove"})  # arrives first
    st.add(users, "2026-01-01T00:00:01+00:00", {"user": "a"})
    st.add(users, "2026-01-01T00:00:02+00:00", {"user": "b"})
    st.add(users, "2026-01-01T00:00:02+00:00", {"other": "c"})
    assert st.units(users) == Decimal(1)


def _invoice(**kw: object) -> InvoiceFacts:
    base: dict[str, object] = dict(
        lago_id="i1", customer="c", currency="EUR", number="N-1", status="finalized", payment_status="pending",
        issuing_date="2026-02-03", updated="2026-02-03T00:00:00Z", subscription_cents=0, usage_cents=0,
        one_off_cents=0, credit_cents=0, tax_cents=0, due_cents=0,
    )  # fmt: skip
    base.update(kw)
    return InvoiceFacts(**base)  # type: ignore[arg-type]


def test_the_summary_splits_the_period_from_the_previous_balance() -> None:
    period = Period(
        "sub", "c", "EUR", "P", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    )
    invoices = [
        _invoice(lago_id="old", number="N-1", issuing_date="2026-01-15", due_cents=10_000, payment_status="failed"),
        _invoice(lago_id="paid", number="N-2", issuing_date="2026-01-20", due_cents=5_000, payment_status="succeeded"),
        _invoice(lago_id="now", number="N-3", subscription_cents=2_000, one_off_cents=1_000, tax_cents=570,
                 credit_cents=300, due_cents=3_270, payment_status="succeeded"),
        _invoice(lago_id="void", number="N-4", issuing_date="2026-02-04", status="voided", due_cents=999),
        _invoice(lago_id="usd", currency="USD", due_cents=123),
    ]  # fmt: skip
    s = compose("c", "EUR", period, invoices, accrued_usage=1_234)
    assert (s.period_start, s.period_end, s.next_bill_date) == ("2026-02-01", "2026-02-28", "2026-03-01")
    assert (s.subscription_charges, s.one_off_charges, s.usage_charges) == (2_000, 1_000, 1_234)
    assert (s.taxes, s.credits, s.previous_balance, s.payments_received) == (570, 300, 10_000, 3_270)
    assert s.amount_due == 10_000
    assert (s.last_invoice_number, s.last_invoice_status) == ("N-4", "voided")
    public = s.public()
    assert public["amounts"]["amount_due"] == "100.00" and public["minor_units"]["usage_charges"] == 1_234


def test_invoice_facts_from_lago() -> None:
    facts = invoice_facts(
        {
            "invoice": {
                "lago_id": "x", "number": "LAG-1", "currency": "EUR", "status": "finalized",
                "payment_status": "succeeded", "issuing_date": "2026-02-01", "updated_at": "2026-02-01T10:00:00Z",
                "customer": {"external_id": "c"}, "taxes_amount_cents": 190, "total_amount_cents": 1090,
                "credit_notes_amount_cents": 100, "coupons_amount_cents": 0,
                "fees": [
                    {"amount_cents": 500, "item": {"type": "subscription"}},
                    {"amount_cents": 300, "item": {"type": "charge"}},
                    {"amount_cents": 200, "item": {"type": "add_on"}},
                ],
            }
        }
    )  # fmt: skip
    assert (facts.subscription_cents, facts.usage_cents, facts.one_off_cents) == (500, 300, 200)
    assert (facts.credit_cents, facts.tax_cents, facts.paid_cents) == (100, 190, 1090)


def test_compare_names_what_differs_and_ignores_empty_summaries() -> None:
    a = compose("c", "EUR", None, [_invoice(due_cents=5)], 0)
    b = compose("c", "EUR", None, [_invoice(due_cents=6)], 0)
    empty = compose("d", "EUR", None, [], 0)
    diff = compare([a, empty], [b])
    assert list(diff) == [("c", "EUR")] and diff[("c", "EUR")]["amount_due"] == (5, 6)
