"""The Opportunity -> Order adapter and the Invoice -> write-back values, without I/O."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead2cash.adapters.salesforce import (
    SalesforceMappingError,
    account,
    invoice_writeback,
    opportunity,
    writeback_applied,
)
from lead2cash.canonical_model import Customer, Invoice, InvoiceLine, Money
from lead2cash.systems.registry import inbound_adapters


def _opp(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "Id": "006Dx0000000009IAA",
        "SystemModstamp": "2025-01-02T03:04:05.000+0000",
        "IsDeleted": False,
        "Name": "Heinrich KG - Platform",
        "StageName": "Closed Won",
        "CloseDate": "2025-01-02",
        "IsClosed": True,
        "IsWon": True,
        "AccountId": "001Dx0000000002IAA",
        "CurrencyIsoCode": "EUR",
        "Account": {
            "Id": "001Dx0000000002IAA",
            "Name": "Heinrich KG",
            "BillingStreet": "Faustweg 2",
            "BillingCity": "München",
            "BillingPostalCode": "83220",
            "BillingCountry": "Germany",
            "CurrencyIsoCode": "EUR",
        },
        "OpportunityLineItems": {
            "totalSize": 2,
            "done": True,
            "records": [
                {
                    "Id": "00kDx000000000PIAQ",
                    "Quantity": Decimal("10.0"),
                    "UnitPrice": Decimal("2300.00"),
                    "Discount": Decimal("5.0"),
                    "ServiceDate": "2025-01-02",
                    "Service_End_Date__c": None,
                    "ProductCode": "ONB-STD",
                    "CurrencyIsoCode": "EUR",
                    "PricebookEntry": {
                        "Product2": {
                            "ProductCode": "ONB-STD",
                            "Name": "Onboarding",
                            "Family": "Services",
                            "Billing_Type__c": "One-Time",
                            "Billing_Period__c": None,
                        }
                    },
                },
                {
                    "Id": "00kDx000000000QIAQ",
                    "Quantity": "3",
                    "UnitPrice": "99.99",
                    "Discount": None,
                    "ServiceDate": "2025-01-02",
                    "Service_End_Date__c": "2026-01-01",
                    "ProductCode": "PLAT",
                    "CurrencyIsoCode": "EUR",
                    "PricebookEntry": {
                        "Product2": {
                            "ProductCode": "PLAT",
                            "Name": "Platform",
                            "Family": "Software",
                            "Billing_Type__c": "Recurring",
                            "Billing_Period__c": "Monthly",
                        }
                    },
                },
            ],
        },
    }
    record.update(over)
    return record


def test_maps_opportunity_account_and_lines() -> None:
    order = inbound_adapters()["salesforce.opportunity"](_opp(), {})
    assert order.id == "006Dx0000000009IAA" and order.refs["salesforce"] == order.id
    assert order.currency == "EUR" and order.status == "won" and order.order_date == dt.date(2025, 1, 2)
    assert order.customer.id == "001Dx0000000002IAA"
    assert order.customer.billing_address is not None and order.customer.billing_address.country == "DE"
    one, rec = order.lines
    assert (one.kind, one.billing_period, one.product_family) == ("one_time", None, "Services")
    assert one.discount_percent == Decimal("5") and one.net_amount == Money.of("21850.00", "EUR")
    assert (rec.kind, rec.billing_period, rec.service_end) == ("recurring", "monthly", dt.date(2026, 1, 1))
    assert rec.unit_price.amount == Decimal("99.99")
    assert order.source_modstamp == "2025-01-02T03:04:05.000+0000"


def test_currency_comes_from_the_record_or_the_configured_org_default() -> None:
    record = _opp()
    del record["CurrencyIsoCode"]
    for line in record["OpportunityLineItems"]["records"]:
        del line["CurrencyIsoCode"]
    with pytest.raises(SalesforceMappingError, match=r"^CurrencyIsoCode: no currency"):
        opportunity(record, {})
    assert opportunity(record, {"default_currency": "GBP"}).currency == "GBP"


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    record = copy.deepcopy(_opp())
    node = record
    for part in path[:-1]:
        node = node[part]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return record


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["Account"], None, "Account."),
        (["CurrencyIsoCode"], "XXX", "CurrencyIsoCode: unknown currency"),
        (["OpportunityLineItems", "records", 1, "Quantity"], "-2", "OpportunityLineItems[1].Quantity"),
        (["OpportunityLineItems", "records", 0, "ProductCode"], None, None),
        (["OpportunityLineItems"], KeyError, "OpportunityLineItems: the record was read without"),
        (["Account", "BillingCountry"], "Atlantis", "Account.BillingCountry"),
        (
            ["OpportunityLineItems", "records", 1, "CurrencyIsoCode"],
            "USD",
            "OpportunityLineItems[1].CurrencyIsoCode",
        ),
    ],
)
def test_unmappable_records_name_the_field(path: list[Any], value: Any, field: str | None) -> None:
    record = _broken(path, value)
    if field is None:  # product code also missing on the product: only then is the line unmappable
        record["OpportunityLineItems"]["records"][0]["PricebookEntry"]["Product2"]["ProductCode"] = None
        field = "OpportunityLineItems[0].ProductCode"
    with pytest.raises(SalesforceMappingError) as err:
        opportunity(record, {})
    assert str(err.value).startswith(field)


@pytest.mark.parametrize("children", [None, {"totalSize": 0, "done": True, "records": []}])
def test_a_deal_without_line_items_is_an_order_without_lines(children: Any) -> None:
    # Salesforce answers a subquery without rows as null: every line removed (or none added yet).
    record = _opp(OpportunityLineItems=children)
    order = opportunity(record, {})
    assert order.lines == () and order.status == "won"
    assert order.version != opportunity(_opp(), {}).version


def test_deleted_line_items_of_a_live_deal_are_not_sold() -> None:
    record = _opp()
    for line in record["OpportunityLineItems"]["records"]:
        line["IsDeleted"], line["SystemModstamp"] = True, "2025-02-01T00:00:00.000+0000"
    assert opportunity(record, {}).lines == ()


def test_recurring_indicator_and_period_are_configurable() -> None:
    record = _opp()
    line = record["OpportunityLineItems"]["records"][1]
    line["Kind__c"], line["Every__c"] = "Subscription", "Yearly"
    order = opportunity(
        record,
        {"recurring_field": "Kind__c", "recurring_values": ["Subscription"], "period_field": "Every__c"},
    )
    assert order.lines[1].billing_period == "yearly" and order.lines[0].kind == "one_time"
    line["Every__c"] = None
    with pytest.raises(SalesforceMappingError, match=r"^OpportunityLineItems\[1\]\.Every__c"):
        opportunity(
            record,
            {"recurring_field": "Kind__c", "recurring_values": ["Subscription"], "period_field": "Every__c"},
        )


def test_version_follows_content_not_modstamp() -> None:
    base = opportunity(_opp(), {})
    # Only SystemModstamp and fields the mapping ignores changed (e.g. our own write-back): same key.
    touched = opportunity(
        _opp(SystemModstamp="2025-02-01T00:00:00.000+0000", Billing_Invoice_Number__c="INV-1"), {}
    )
    assert touched.version == base.version and touched.source_modstamp != base.source_modstamp
    # A formula/roll-up change without a new SystemModstamp: a new version (the sweep delivers it).
    renamed = opportunity(_opp(Name="Recalculated"), {})
    assert renamed.version != base.version
    assert opportunity(_opp(IsDeleted=True), {}).status == "cancelled"


def test_account_adapter() -> None:
    customer = account(_opp()["Account"] | {"SystemModstamp": "2025-01-02T03:04:05.000+0000"}, {})
    assert customer.id == "001Dx0000000002IAA" and customer.currency == "EUR"


@settings(max_examples=60, deadline=None)
@given(
    quantity=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2),
    price=st.decimals(min_value=Decimal("0"), max_value=Decimal("1000000"), places=2),
    discount=st.one_of(st.none(), st.decimals(min_value=Decimal("0"), max_value=Decimal("100"), places=2)),
    as_text=st.booleans(),
)
def test_money_is_exact_from_the_record(
    quantity: Decimal, price: Decimal, discount: Decimal | None, as_text: bool
) -> None:
    record = _opp()
    line = record["OpportunityLineItems"]["records"][1]
    conv = str if as_text else (lambda d: d)  # records replayed from the inbox carry numbers as text
    line["Quantity"], line["UnitPrice"] = conv(quantity), conv(price)
    line["Discount"] = None if discount is None else conv(discount)
    order = opportunity(record, {})
    mapped = order.lines[1]
    assert mapped.quantity == quantity and mapped.unit_price.amount == price
    gross = quantity * price
    expected = gross * (1 - (discount or 0) / Decimal(100))
    assert mapped.net_amount == Money.of(expected, "EUR", rounding="ROUND_HALF_UP")


def _invoice(**refs: str) -> Invoice:
    return Invoice.build(
        id="inv-1",
        refs=refs,
        invoice_number="INV-000001",
        customer=Customer(id="c1", name="C"),
        currency="KWD",
        status="finalized",
        issue_date=dt.date(2025, 1, 1),
        lines=[InvoiceLine(id="l1", description="x", net_amount=Money.of("12.345", "KWD"))],
    )


def test_invoice_writeback_values_and_convention() -> None:
    when = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
    opp_id, values = invoice_writeback(
        _invoice(salesforce="006Dx0000000009IAA", sap="5100000001"), synced_at=when
    )
    assert opp_id == "006Dx0000000009IAA"
    assert values == {
        "Billing_Invoice_Number__c": "INV-000001",
        "Billing_Invoiced_Amount__c": Decimal("12.345"),
        "Billing_Payment_Status__c": "Pending",
        "SAP_Accounting_Document__c": "5100000001",
        "Billing_Last_Sync__c": "2025-01-01T12:00:00.000Z",
    }
    # Custom field names; no SAP document yet: the field is left alone, not cleared.
    _, custom = invoice_writeback(
        _invoice(salesforce="006Dx0000000009IAA"),
        {"invoice_number": "Inv__c", "last_sync": None},
        {"pending": "Open"},
    )
    assert custom == {
        "Inv__c": "INV-000001",
        "Billing_Invoiced_Amount__c": Decimal("12.345"),
        "Billing_Payment_Status__c": "Open",
    }
    with pytest.raises(SalesforceMappingError, match=r"^refs\.salesforce"):
        invoice_writeback(_invoice(lago="x"))
    with pytest.raises(SalesforceMappingError, match=r"^refs\.salesforce"):
        invoice_writeback(_invoice(salesforce="001Dx0000000002IAA"))  # an Account, not an Opportunity


def test_writeback_applied_compares_amounts_exactly() -> None:
    wanted = {"A__c": Decimal("12.345"), "B__c": "Paid"}
    assert writeback_applied({"A__c": Decimal("12.3450"), "B__c": "Paid"}, wanted, set())
    assert not writeback_applied({"A__c": Decimal("12.34"), "B__c": "Paid"}, wanted, set())
    assert not writeback_applied({"A__c": None, "B__c": "Paid"}, wanted, set())
