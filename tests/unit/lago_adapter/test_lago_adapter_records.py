"""Lago records -> canonical entities, order -> Lago payloads, and the rules that keep billing exactly once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from lead2cash.adapters import lago as adapter
from lead2cash.canonical_model import Order
from lead2cash.errors import PermanentError


def _invoice(**over: Any) -> dict[str, Any]:
    base = {
        "lago_id": "inv-1", "number": "LAG-001", "currency": "EUR", "status": "finalized",
        "payment_status": "pending", "issuing_date": "2026-01-05", "payment_due_date": "2026-02-04",
        "invoice_type": "one_off", "updated_at": "2026-01-05T10:00:00Z",
        "customer": {"lago_id": "c-1", "external_id": "001ACC", "name": "Acme GmbH", "country": "de",
                     "email": "billing@acme.example", "tax_identification_number": "DE123", "currency": "EUR"},
        "metadata": [{"lago_id": "m1", "key": "lead2cash_order", "value": "006OPP"}],
        "fees": [{"lago_id": "fee-1", "amount_cents": 65998, "units": "2.0", "precise_unit_amount": "329.99",
                  "amount_currency": "EUR", "description": "IoT gateway (order 006OPP)",
                  "item": {"type": "add_on", "code": "HW-GW", "name": "IoT gateway"},
                  "applied_taxes": [{"tax_code": "DE_VAT_19", "tax_rate": Decimal("19.0"), "amount_cents": 12540}]},
                 {"lago_id": "fee-2", "amount_cents": 45900, "units": "1.0", "precise_unit_amount": "459.0",
                  "amount_currency": "EUR", "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-31T23:59:59Z",
                  "external_subscription_id": "006OPP:00k1",
                  "item": {"type": "subscription", "code": "PLAT-BASE__EUR", "name": "Platform"},
                  "applied_taxes": [{"tax_code": "DE_VAT_19", "tax_rate": 19.0, "amount_cents": 8721}]}],
        "coupons_amount_cents": 0,
        "applied_taxes": [{"tax_code": "DE_VAT_19", "tax_name": "DE 19%", "tax_rate": Decimal("19.0"),
                           "amount_cents": 21261, "fees_amount_cents": 111898}],
        "fees_amount_cents": 111898, "sub_total_excluding_taxes_amount_cents": 111898, "taxes_amount_cents": 21261,
        "sub_total_including_taxes_amount_cents": 133159, "credit_notes_amount_cents": 0,
        "prepaid_credit_amount_cents": 10000, "total_amount_cents": 123159,
    }  # fmt: skip
    base.update(over)
    return base


def test_invoice_maps_fees_taxes_customer_and_order() -> None:
    invoice = adapter.invoice_from_lago(
        {"webhook_type": "invoice.created", "invoice": _invoice(), adapter.SEQUENCE_FIELD: 3}
    )
    assert invoice.id == "inv-1" and invoice.refs == {"lago": "inv-1"}
    assert invoice.version == 3 and invoice.status.value == "finalized"
    assert invoice.order_id == "006OPP" and invoice.customer.id == "001ACC"
    assert invoice.customer.billing_address is not None and invoice.customer.billing_address.country == "DE"
    first, second = invoice.lines
    assert (first.product_code, first.kind.value, first.quantity, str(first.unit_price)) == (
        "HW-GW", "one_time", Decimal(2), "329.99 EUR")  # fmt: skip
    assert (second.product_code, second.kind.value, str(second.service_end)) == (
        "PLAT-BASE",
        "recurring",
        "2026-01-31",
    )
    assert second.subscription_id == "006OPP:00k1" and second.tax_code == "DE_VAT_19"
    assert str(invoice.total) == "1331.59 EUR" and str(invoice.tax_total) == "212.61 EUR"
    assert invoice.taxes[0].rate == Decimal("19.0") and str(invoice.taxes[0].taxable_amount) == "1118.98 EUR"


def test_invoice_with_totals_that_do_not_add_up_is_refused_by_field() -> None:
    with pytest.raises(ValueError, match="taxes_amount_cents"):
        adapter.invoice_from_lago(_invoice(taxes_amount_cents=21262))
    with pytest.raises(ValueError, match="total_amount_cents"):
        adapter.invoice_from_lago(_invoice(total_amount_cents=133159))  # the prepaid credit was ignored
    with pytest.raises(ValueError, match=r"fees\[0\].amount_cents"):
        adapter.invoice_from_lago(_invoice(fees=[{**_invoice()["fees"][0], "amount_cents": 659.98}]))


def test_coupons_are_a_negative_line_and_taxes_apply_after_them() -> None:
    raw = _invoice(coupons_amount_cents=1898, sub_total_excluding_taxes_amount_cents=110000,
                   taxes_amount_cents=20900, sub_total_including_taxes_amount_cents=130900,
                   total_amount_cents=120900,
                   applied_taxes=[{"tax_code": "DE_VAT_19", "tax_rate": "19", "amount_cents": 20900,
                                   "fees_amount_cents": 110000}])  # fmt: skip
    invoice = adapter.invoice_from_lago(raw)
    assert str(invoice.lines[-1].net_amount) == "-18.98 EUR" and str(invoice.subtotal) == "1100.00 EUR"


@pytest.mark.parametrize(
    ("status", "payment", "canonical"),
    [
        ("draft", "pending", "draft"),
        ("finalized", "pending", "finalized"),
        ("finalized", "failed", "finalized"),
        ("finalized", "succeeded", "paid"),
        ("voided", "pending", "voided"),
    ],
)
def test_lago_states_map_to_canonical_statuses(status: str, payment: str, canonical: str) -> None:
    invoice = adapter.invoice_from_lago(_invoice(status=status, payment_status=payment))
    assert invoice.status.value == canonical and invoice.payment_status.value == payment


def test_version_is_the_gates_sequence_else_the_update_second() -> None:
    raw = _invoice(updated_at="2026-01-06T10:00:05Z")
    assert adapter.invoice_from_lago({"invoice": raw, adapter.SEQUENCE_FIELD: 7}).version == 7
    assert adapter.invoice_from_lago(raw).version == 1767693605  # a bare object: its update second
    with pytest.raises(ValueError, match=adapter.SEQUENCE_FIELD):
        adapter.invoice_from_lago({"invoice": raw, adapter.SEQUENCE_FIELD: "7"})
    with pytest.raises(ValueError, match=r"invoice\.updated_at"):
        adapter.invoice_from_lago(_invoice(updated_at="yesterday"))


def test_a_lost_dispute_and_overdue_are_mapped_from_their_own_webhook_shape() -> None:
    raw = _invoice(payment_status="succeeded", payment_dispute_lost_at="2026-01-09T08:00:00Z")
    record = {"webhook_type": "invoice.payment_dispute_lost", "object_type": "payment_dispute_lost",
              "payment_dispute_lost": raw}  # fmt: skip
    invoice = adapter.invoice_from_lago(record)
    assert invoice.payment_dispute_lost_at is not None and invoice.payment_dispute_lost_at.day == 9
    assert invoice.payment_status.value == "succeeded"  # Lago leaves it; the dispute shows over it
    assert adapter.invoice_from_lago(_invoice(payment_overdue=True)).payment_overdue is True
    with pytest.raises(ValueError, match=r"invoice\.payment_overdue"):
        adapter.invoice_from_lago(_invoice(payment_overdue="yes"))


def test_payment_is_the_amount_left_to_pay() -> None:
    payment = adapter.payment_from_lago(
        {"webhook_type": "invoice.payment_status_updated", "invoice": _invoice(payment_status="succeeded")}
    )
    assert str(payment.amount) == "1231.59 EUR" and payment.status.value == "succeeded"
    assert payment.invoice_ids == ("inv-1",) and payment.customer_id == "001ACC"
    assert payment.id == "inv-1:payment"


def test_invoice_type_prepaid_credits_and_product_family_from_the_declared_table() -> None:
    families = {"HW-GW": "Hardware", "PLAT-BASE": "Software"}
    invoice = adapter.invoice_from_lago(_invoice(), {adapter.FAMILY_TABLE: families})
    assert invoice.billing_type == "one_off" and str(invoice.prepaid_credit) == "100.00 EUR"
    assert [(ln.product_code, ln.product_family) for ln in invoice.lines] == [
        ("HW-GW", "Hardware"),
        ("PLAT-BASE", "Software"),  # the plan code less its currency
    ]
    assert [ln.product_family for ln in adapter.invoice_from_lago(_invoice()).lines] == [None, None]
    other = adapter.invoice_from_lago(_invoice(), {adapter.FAMILY_TABLE: {"_default": "Services"}})
    assert {ln.product_family for ln in other.lines} == {"Services"}
    assert (
        adapter.invoice_from_lago(
            _invoice(prepaid_credit_amount_cents=0, total_amount_cents=133159)
        ).prepaid_credit
        is None
    )
    with pytest.raises(ValueError, match=r"invoice\.invoice_type: 'gift' is not a Lago invoice type"):
        adapter.invoice_from_lago(_invoice(invoice_type="gift"))


def test_a_payment_is_refused_without_its_customer_or_for_an_invoice_not_finalized() -> None:
    record = {"webhook_type": "invoice.payment_status_updated", "invoice": _invoice(payment_status="failed")}
    del record["invoice"]["customer"]
    with pytest.raises(ValueError, match=r"invoice\.customer\.external_id: missing"):
        adapter.payment_from_lago(record)
    for status in ("voided", "draft"):
        with pytest.raises(ValueError, match=rf"invoice\.status: '{status}' is not a payment"):
            adapter.payment_from_lago({"invoice": _invoice(status=status, payment_status="failed")})


def test_credit_note_maps_items_and_checks_totals() -> None:
    raw = {
        "lago_id": "cn-1", "number": "LAG-001-CN001", "lago_invoice_id": "inv-1", "invoice_number": "LAG-001",
        "issuing_date": "2026-01-06", "credit_status": "available", "reason": "order_change", "currency": "JPY",
        "customer": {"external_id": "001ACC"},
        "items": [{"lago_id": "it-1", "amount_cents": 1000, "fee": {"lago_id": "fee-1",
                   "item": {"code": "HW-GW", "name": "IoT gateway"}}}],
        "applied_taxes": [{"tax_code": "JP_CT_10", "tax_rate": "10", "amount_cents": 100, "base_amount_cents": 1000}],
        "sub_total_excluding_taxes_amount_cents": 1000, "taxes_amount_cents": 100, "total_amount_cents": 1100,
    }  # fmt: skip
    note = adapter.credit_note_from_lago({"credit_note": raw})
    assert str(note.total) == "1100 JPY" and note.lines[0].invoice_line_id == "fee-1"
    assert note.reason.value == "order_change" and note.invoice_id == "inv-1"
    with pytest.raises(ValueError, match="total_amount_cents"):
        adapter.credit_note_from_lago({**raw, "total_amount_cents": 1101})
    with pytest.raises(ValueError, match=r"credit_note\.customer\.external_id: missing"):
        adapter.credit_note_from_lago({**raw, "customer": {}})
    assert note.refund is None  # no refund_amount_cents: all of it is credit
    # The refund part and the provider it goes through (the customer's payment provider).
    refunded = adapter.credit_note_from_lago({**raw, "refund_amount_cents": 600, "credit_amount_cents": 500,
        "customer": {"external_id": "001ACC", "billing_configuration": {"payment_provider": "stripe"}}})  # fmt: skip
    assert (str(refunded.refund), refunded.payment_method) == ("600 JPY", "stripe")
    for bad in ("600", -1, 1101):
        with pytest.raises(ValueError, match="refund"):
            adapter.credit_note_from_lago({**raw, "refund_amount_cents": bad})


ORDER = {
    "id": "006OPP", "customer": {"id": "001ACC", "name": "Acme", "email": "b@acme.example", "tax_id": "DE1",
                                 "refs": {"salesforce": "001SF"},
                                 "billing_address": {"line1": "Hauptstr. 1", "city": "Berlin", "country": "DE"}},
    "currency": "EUR", "order_date": "2026-01-10",
    "lines": [
        {"id": "00k1", "product_code": "PLAT-BASE", "product_name": "Platform", "kind": "recurring",
         "billing_period": "monthly", "quantity": "2", "unit_price": {"amount": "459.00", "currency": "EUR"},
         "service_start": "2026-02-01"},
        {"id": "00k2", "product_code": "ONB-STD", "product_name": "Onboarding", "kind": "one_time",
         "quantity": "3", "unit_price": {"amount": "2300.00", "currency": "EUR"}, "discount_percent": "10"},
        {"id": "00k3", "product_code": "HW-GW", "product_name": "IoT gateway", "kind": "one_time",
         "quantity": "2", "unit_price": {"amount": "329.99", "currency": "EUR"}},
    ],
}  # fmt: skip


def test_order_becomes_subscriptions_and_add_on_fees() -> None:
    order = Order.model_validate(ORDER)
    plan = adapter.billing_plan(
        order, plan_table={"_default": "{product_code}__{currency}"}, addon_table=None
    )
    [sub] = plan.subscriptions
    assert (sub.key, sub.plan_code, sub.amount_cents, str(sub.start)) == (
        "006OPP:00k1",
        "PLAT-BASE__EUR",
        91800,
        "2026-02-01",
    )
    payload = sub.payload("001SF", sub.key, "calendar")
    assert payload["subscription_at"] == "2026-02-01T00:00:00Z"
    assert payload["plan_overrides"] == {"amount_cents": 91800, "amount_currency": "EUR"}
    discounted, plain = plan.fees
    assert (discounted.units, discounted.unit_amount_cents) == (Decimal(1), 621000)  # 3 x 2300 less 10 %
    assert (plain.units, plain.unit_amount_cents) == (Decimal(2), 32999)
    assert all(f.description.endswith("(order 006OPP)") for f in plan.fees)
    body = adapter.customer_payload(order.customer, "001SF", "EUR")
    assert body["tax_identification_number"] == "DE1" and body["country"] == "DE" and body["city"] == "Berlin"


def test_unmapped_product_is_a_permanent_error_naming_the_table() -> None:
    order = Order.model_validate(ORDER)
    with pytest.raises(PermanentError) as info:
        adapter.billing_plan(order, plan_table={"SEAT-ADD": "seats"}, plan_table_name="lago_plans")
    assert "PLAT-BASE" in info.value.describe() and "lago_plans" in info.value.describe()


def test_reopened_order_needs_nothing_and_per_plan_groups() -> None:
    assert adapter.billing_plan(Order.model_validate({**ORDER, "status": "open"})).subscriptions == ()
    extra = {**ORDER["lines"][0], "id": "00k4", "quantity": "1", "service_start": "2026-01-15"}
    order = Order.model_validate({**ORDER, "lines": [*ORDER["lines"], extra]})
    [sub] = adapter.billing_plan(order, grouping="per_plan").subscriptions
    assert (sub.key, sub.amount_cents, str(sub.start), sub.line_ids) == (
        "006OPP:PLAT-BASE",
        137700,
        "2026-01-15",
        ("00k1", "00k4"),
    )


def test_an_invoice_without_metadata_is_recognised_by_its_order_marker_and_fees() -> None:
    order = Order.model_validate(ORDER)
    plan = adapter.billing_plan(order)
    created = {
        "invoice_type": "one_off", "metadata": [],
        "fees": [{"amount_cents": 621000, "units": "1.0", "precise_unit_amount": "6210.0", "amount_currency": "EUR",
                  "description": plan.fees[0].description, "item": {"code": "ONB-STD"}},
                 {"amount_cents": 65998, "units": "2.0", "precise_unit_amount": "329.99", "amount_currency": "EUR",
                  "description": plan.fees[1].description, "item": {"code": "HW-GW"}}],
    }  # fmt: skip
    assert adapter.unmarked_order_invoice(created, "006OPP")
    assert adapter.invoice_fee_signatures(created) == plan.fee_signatures()
    assert not adapter.unmarked_order_invoice(created, "006OP")  # another order's marker never matches
    typed_by_hand = {**created, "fees": [{**created["fees"][0], "description": "Onboarding"}]}
    assert not adapter.unmarked_order_invoice(typed_by_hand, "006OPP")
    marked = {**created, "metadata": [{"key": "lead2cash_order", "value": "006OPP", "lago_id": "m1"}]}
    assert not adapter.unmarked_order_invoice(marked, "006OPP")
    assert adapter.metadata_update(marked, {"lead2cash_key": "k"}) == [
        {"key": "lead2cash_order", "value": "006OPP", "id": "m1"}, {"key": "lead2cash_key", "value": "k"}]  # fmt: skip


def test_the_invoice_status_clears_only_what_no_payment_record_paid() -> None:
    """``total_paid_amount_cents`` (Lago's payment records, manual ones in part) is cleared by the payment
    route: the invoice's payment status carries the rest; an invoice its records paid whole has none."""
    invoice = _invoice(payment_status="succeeded", total_paid_amount_cents=31_159)
    assert str(adapter.payment_from_lago({"invoice": invoice}).amount) == "920.00 EUR"
    with pytest.raises(ValueError, match=r"invoice\.total_paid_amount_cents: 123159 of 123159 paid"):
        adapter.payment_from_lago(
            {"invoice": _invoice(payment_status="succeeded", total_paid_amount_cents=123159)}
        )
    with pytest.raises(ValueError, match=r"invoice\.total_paid_amount_cents: expected non-negative"):
        adapter.payment_from_lago(
            {"invoice": _invoice(payment_status="succeeded", total_paid_amount_cents="1")}
        )


def _payment(**over: Any) -> dict[str, Any]:
    base = {
        "lago_id": "4cf085a7-c196-4f07-a543-97c50ec6e8b2", "external_customer_id": "001ACC",
        "invoice_ids": ["inv-1"], "invoice_numbers": ["LAG-001"], "lago_payable_id": "inv-1",
        "payable_type": "Invoice", "amount_cents": 40_000, "amount_currency": "EUR", "status": "succeeded",
        "payment_status": "succeeded", "type": "manual", "reference": "wire 1", "payment_provider_code": None,
        "payment_provider_type": None, "created_at": "2026-01-09T00:00:00Z",
    }  # fmt: skip
    return {**base, **over}


def test_a_payment_record_is_one_payment_of_one_invoice() -> None:
    payment = adapter.payment_record_from_lago({"payment": _payment(), adapter.SEQUENCE_FIELD: 2})
    assert (payment.id, payment.version, payment.invoice_ids) == (
        "4cf085a7-c196-4f07-a543-97c50ec6e8b2", 2, ("inv-1",),
    )  # fmt: skip
    assert (str(payment.amount), payment.status.value, payment.method) == (
        "400.00 EUR",
        "succeeded",
        "manual",
    )
    assert payment.reference == "LAG-001" and payment.customer_id == "001ACC"
    provider = adapter.payment_record_from_lago(
        _payment(type="provider", payment_provider_type="stripe", payment_status="processing")
    )
    assert (provider.method, provider.status.value) == ("stripe", "pending")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"external_customer_id": None}, r"payment\.external_customer_id: missing"),
        ({"payable_type": "PaymentRequest"}, r"payment\.payable_type: 'PaymentRequest' is not an invoice's"),
        ({"invoice_ids": ["inv-1", "inv-2"]}, r"payment\.invoice_ids: expected the one invoice"),
        ({"payment_status": "refunded"}, r"payment\.payment_status: 'refunded' is not a Lago payment status"),
        ({"amount_currency": "XXX"}, r"payment\.amount_currency: 'XXX' is not an ISO 4217"),
        ({"type": "cash"}, r"payment\.type: 'cash' is neither manual nor provider"),
        ({"created_at": None}, r"payment\.created_at: missing"),
    ],
)
def test_a_payment_record_is_refused_naming_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        adapter.payment_record_from_lago({"payment": _payment(**over)})


def test_a_declined_refund_is_no_refund_and_each_credit_note_state_is_a_version() -> None:
    raw = {
        "lago_id": "cn-1", "number": "LAG-001-CN001", "lago_invoice_id": "inv-1", "invoice_number": "LAG-001",
        "issuing_date": "2026-01-06", "credit_status": "available", "reason": "order_change", "currency": "EUR",
        "customer": {"external_id": "001ACC"}, "refund_amount_cents": 500, "refund_status": "pending",
        "items": [{"lago_id": "it-1", "amount_cents": 1000, "fee": {"lago_id": "fee-1", "item": {"code": "HW-GW"}}}],
        "sub_total_excluding_taxes_amount_cents": 1000, "taxes_amount_cents": 0, "total_amount_cents": 1000,
    }  # fmt: skip
    issued = adapter.credit_note_from_lago({"credit_note": raw, adapter.SEQUENCE_FIELD: 1})
    assert (str(issued.refund), issued.refund_declined, issued.version) == ("5.00 EUR", None, 1)
    declined = adapter.credit_note_from_lago(
        {"credit_note": {**raw, "refund_status": "failed"}, adapter.SEQUENCE_FIELD: 2}
    )
    assert (declined.refund, str(declined.refund_declined), declined.version) == (None, "5.00 EUR", 2)
