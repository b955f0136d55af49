"""Salesforce records <-> the canonical model. Pure functions, no I/O.

Inbound (route ``mapping.adapter``):
* ``salesforce.opportunity``: an Opportunity with its ``Account`` and ``OpportunityLineItems`` (each with
  ``PricebookEntry.Product2``) -> ``Order`` with its ``Customer``.
* ``salesforce.account``: an Account -> ``Customer``.

Ids: ``Order.id`` is the Opportunity Id, ``Customer.id`` the Account Id, ``OrderLine.id`` the line's Id;
each entity's ``refs["salesforce"]`` repeats it.

Version: ``version`` is a fingerprint of the mapped content (a 48-bit number from SHA-256 of the entity
without ``version`` and ``source_modstamp``), and ``source_modstamp`` carries SystemModstamp. So the key
``order:{id}:v{version}`` is new whenever what billing sees changes, even if SystemModstamp did not move
(formula or roll-up fields, caught by the sweep), and is unchanged when only fields the mapping ignores
changed (such as the billing fields this hub writes back, or a sweep re-reading an unchanged record): the
router's idempotent consumer then drops the record. An Opportunity's fingerprint also takes the latest
SystemModstamp of its line items when they carry one (deleted lines included, which queryAll answers and
the mapping leaves out of the order): content that returns to a state already billed ({A} -> {A, B} ->
{A}) is a new version, not the old one. Fingerprints are not ordered; ``source_modstamp`` is.

Outbound: :func:`invoice_writeback` turns an ``Invoice`` into the Opportunity field values for write-back.
The Opportunity is the Invoice's ``refs["salesforce"]``, else its ``order_id`` (an Order from this adapter
has the Opportunity Id as its id). The SAP accounting document is ``refs["sap"]``.

Records that cannot be mapped raise :class:`SalesforceMappingError`, whose message starts with the field
path; the router dead-letters the record with that message (never dropped, never half-synced).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from lead2cash.canonical_model import (
    Address,
    BillingPeriod,
    ChargeKind,
    Customer,
    Invoice,
    InvoicePaymentStatus,
    InvoiceStatus,
    Money,
    Order,
    OrderLine,
    OrderStatus,
)
from lead2cash.canonical_model.country import COUNTRY_CODES
from lead2cash.canonical_model.currency import MINOR_UNITS


class SalesforceMappingError(ValueError):
    """A record that cannot be mapped; the message starts with the field path."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


DEFAULT_OPTIONS: dict[str, Any] = {
    # Where a line's recurring/one-time indicator and billing period live (a path from the line).
    "recurring_field": "PricebookEntry.Product2.Billing_Type__c",
    "recurring_values": ["Recurring"],
    "period_field": "PricebookEntry.Product2.Billing_Period__c",
    "period_values": {
        "Weekly": "weekly",
        "Monthly": "monthly",
        "Quarterly": "quarterly",
        "Semi-Annual": "semiannual",
        "Semiannual": "semiannual",
        "Yearly": "yearly",
        "Annual": "yearly",
    },
    "service_end_field": "Service_End_Date__c",
    "default_currency": None,  # for orgs without multi-currency (no CurrencyIsoCode)
    "country_names": {},  # extra BillingCountry spellings -> ISO 3166-1 alpha-2
    "email_field": None,  # Account field with the billing e-mail, if the org has one
}

# BillingCountry is free text unless the org enables State and Country picklists; common English names.
COUNTRY_NAMES: dict[str, str] = {
    "united states": "US", "united states of america": "US", "usa": "US", "u.s.a.": "US",
    "germany": "DE", "deutschland": "DE", "united kingdom": "GB", "great britain": "GB", "uk": "GB",
    "england": "GB", "japan": "JP", "kuwait": "KW", "france": "FR", "italy": "IT", "spain": "ES",
    "netherlands": "NL", "the netherlands": "NL", "belgium": "BE", "austria": "AT", "switzerland": "CH",
    "ireland": "IE", "sweden": "SE", "norway": "NO", "denmark": "DK", "finland": "FI", "poland": "PL",
    "portugal": "PT", "canada": "CA", "mexico": "MX", "brazil": "BR", "australia": "AU",
    "new zealand": "NZ", "india": "IN", "china": "CN", "singapore": "SG", "south korea": "KR",
    "united arab emirates": "AE", "saudi arabia": "SA", "south africa": "ZA", "israel": "IL",
}  # fmt: skip

_OPP_ID = re.compile(r"^006[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")


def _opts(options: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(DEFAULT_OPTIONS)
    merged.update(options or {})
    return merged


def get_path(record: Mapping[str, Any] | None, path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _text(value: Any, field: str = "<text>") -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping | list | tuple | set | bool):
        raise SalesforceMappingError(field, f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _flag(record: Mapping[str, Any], field: str) -> bool:
    value = record.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SalesforceMappingError(field, f"expected a boolean, got {type(value).__name__}")
    return value


def _decimal(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SalesforceMappingError(field, "expected a number, got a boolean")
    try:
        # Decimal(str(float)) keeps the shortest repr: the number Salesforce sent, not binary noise.
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise SalesforceMappingError(field, f"not a number: {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise SalesforceMappingError(field, "not a finite number")
    return number


def _date(value: Any, field: str) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise SalesforceMappingError(field, f"not a date: {str(value)[:40]!r}") from None


def _datetime(value: Any, field: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise SalesforceMappingError(field, f"not a date-time: {str(value)[:40]!r}") from None


def _currency(value: Any, field: str) -> str:
    code = (_text(value, field) or "").upper()
    if code not in MINOR_UNITS:
        raise SalesforceMappingError(field, f"unknown currency {code[:10] or '<empty>'!r}")
    return code


def _country(value: str, field: str, extra: Mapping[str, str]) -> str:
    text = value.strip()
    if text.upper() in COUNTRY_CODES:
        return text.upper()
    names = {**COUNTRY_NAMES, **{k.lower(): v for k, v in extra.items()}}
    code = names.get(text.lower())
    if code is None or code.upper() not in COUNTRY_CODES:
        raise SalesforceMappingError(field, f"unknown country {text[:60]!r}; add it to country_names")
    return code.upper()


def fingerprint(data: Mapping[str, Any]) -> int:
    """A positive 48-bit number from the content, stable across processes and versions of Python."""
    content = {k: v for k, v in data.items() if k not in ("version", "source_modstamp")}
    if content.get("status_since") is None:
        content.pop("status_since", None)  # records read without LastStageChangeDate keep their version
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return int(digest[:12], 16) + 1


def _customer(account: Mapping[str, Any] | None, account_id: Any, o: dict[str, Any], prefix: str) -> Customer:
    if not isinstance(account, Mapping) or not (account.get("Id") or account_id):
        raise SalesforceMappingError(prefix or "Account", "the opportunity has no account")
    name = _text(account.get("Name"), f"{prefix}Name")
    if name is None:
        raise SalesforceMappingError(f"{prefix}Name", "the account has no name")
    address = None
    country_raw = _text(account.get("BillingCountryCode"), f"{prefix}BillingCountryCode") or _text(
        account.get("BillingCountry"), f"{prefix}BillingCountry"
    )
    if country_raw is not None:
        address = Address(
            line1=_text(account.get("BillingStreet"), f"{prefix}BillingStreet"),
            city=_text(account.get("BillingCity"), f"{prefix}BillingCity"),
            region=_text(account.get("BillingStateCode"), f"{prefix}BillingStateCode")
            or _text(account.get("BillingState"), f"{prefix}BillingState"),
            postal_code=_text(account.get("BillingPostalCode"), f"{prefix}BillingPostalCode"),
            country=_country(country_raw, f"{prefix}BillingCountry", o["country_names"]),
        )
    currency = account.get("CurrencyIsoCode")
    email = _text(get_path(account, o["email_field"])) if o.get("email_field") else None
    account_id = _text(account.get("Id") or account_id, f"{prefix}Id") or ""
    return Customer(
        id=account_id,
        refs={"salesforce": account_id},
        name=name,
        currency=_currency(currency, f"{prefix}CurrencyIsoCode") if currency else None,
        email=email,
        billing_address=address,
    )


def _line(line: Mapping[str, Any], i: int, currency: str, o: dict[str, Any]) -> OrderLine:
    at = f"OpportunityLineItems[{i}]"
    if not isinstance(line, Mapping):
        raise SalesforceMappingError(at, f"expected a line item record, got {type(line).__name__}")
    line_id = _text(line.get("Id"), f"{at}.Id")
    if line_id is None:
        raise SalesforceMappingError(f"{at}.Id", "line has no Id")
    product = get_path(line, "PricebookEntry.Product2") or {}
    if not isinstance(product, Mapping):
        raise SalesforceMappingError(f"{at}.PricebookEntry.Product2", "expected a product record")
    code = _text(product.get("ProductCode"), f"{at}.PricebookEntry.Product2.ProductCode") or _text(
        line.get("ProductCode"), f"{at}.ProductCode"
    )
    if code is None:
        raise SalesforceMappingError(f"{at}.ProductCode", "line has no product code")
    name = (
        _text(product.get("Name"), f"{at}.PricebookEntry.Product2.Name")
        or _text(get_path(line, "PricebookEntry.Name"), f"{at}.PricebookEntry.Name")
        or code
    )
    quantity = _decimal(line.get("Quantity"), f"{at}.Quantity")
    if quantity is None or quantity <= 0:
        raise SalesforceMappingError(f"{at}.Quantity", f"quantity must be positive, got {quantity}")
    price = _decimal(line.get("UnitPrice"), f"{at}.UnitPrice")
    if price is None:
        raise SalesforceMappingError(f"{at}.UnitPrice", "line has no sales price")
    if price < 0:
        raise SalesforceMappingError(f"{at}.UnitPrice", f"negative sales price {price}")
    line_currency = line.get("CurrencyIsoCode")
    if line_currency and _currency(line_currency, f"{at}.CurrencyIsoCode") != currency:
        raise SalesforceMappingError(f"{at}.CurrencyIsoCode", f"{line_currency} differs from {currency}")
    indicator = (
        _text(get_path(line, o["recurring_field"]), f"{at}.{o['recurring_field']}")
        if o.get("recurring_field")
        else None
    )
    recurring = indicator is not None and indicator in set(o["recurring_values"])
    period = None
    if recurring:
        raw_period = (
            _text(get_path(line, o["period_field"]), f"{at}.{o['period_field']}")
            if o.get("period_field")
            else None
        )
        mapped = o["period_values"].get(raw_period) if raw_period else None
        if mapped is None:
            raise SalesforceMappingError(
                f"{at}.{o['period_field']}", f"recurring product {code} has no known billing period"
            )
        period = BillingPeriod(mapped)
    discount = _decimal(line.get("Discount"), f"{at}.Discount")
    if discount is not None and not Decimal(0) <= discount <= Decimal(100):
        raise SalesforceMappingError(f"{at}.Discount", f"discount {discount}% is outside 0..100")
    try:
        unit_price = Money.of(price, currency)
    except ValueError as exc:
        raise SalesforceMappingError(f"{at}.UnitPrice", str(exc)) from None
    end_field = o.get("service_end_field")
    return OrderLine(
        id=line_id,
        refs={"salesforce": line_id},
        product_code=code,
        product_name=name,
        product_family=_text(product.get("Family"), f"{at}.PricebookEntry.Product2.Family"),
        kind=ChargeKind.RECURRING if recurring else ChargeKind.ONE_TIME,
        billing_period=period,
        quantity=quantity,
        unit_price=unit_price,
        discount_percent=discount if discount else None,
        service_start=_date(line.get("ServiceDate"), f"{at}.ServiceDate"),
        service_end=_date(get_path(line, end_field), f"{at}.{end_field}") if end_field else None,
    )


def opportunity(record: Mapping[str, Any], options: Mapping[str, Any]) -> Order:
    """An Opportunity (with Account and line items) as an ``Order``."""
    o = _opts(options)
    if record.get("Id") is not None and not isinstance(record.get("Id"), str):
        raise SalesforceMappingError("Id", f"expected an Id string, got {type(record.get('Id')).__name__}")
    opp_id = _text(record.get("Id"), "Id")
    if opp_id is None:
        raise SalesforceMappingError("Id", "record has no Id")
    raw_currency = record.get("CurrencyIsoCode") or o.get("default_currency")
    if not raw_currency:
        raise SalesforceMappingError(
            "CurrencyIsoCode", "no currency on the record and no default_currency configured"
        )
    currency = _currency(raw_currency, "CurrencyIsoCode")
    customer = _customer(record.get("Account"), record.get("AccountId"), o, "Account.")
    if "OpportunityLineItems" not in record:
        # Salesforce answers a subquery with no rows as null; a record without the key was read without
        # its line items, and must not look like a deal whose lines were all removed.
        raise SalesforceMappingError("OpportunityLineItems", "the record was read without its line items")
    children = record.get("OpportunityLineItems")
    rows = children.get("records", []) if isinstance(children, Mapping) else (children or [])
    if not isinstance(rows, list):
        raise SalesforceMappingError("OpportunityLineItems", f"expected records, got {type(rows).__name__}")
    # Every line's SystemModstamp, deleted ones included, goes into the version: a line removed again
    # ({A} -> {A, B} -> {A}) leaves the live content as it was billed first, and only the deleted line's
    # stamp tells the new version apart.
    line_stamps = [
        str(r["SystemModstamp"]) for r in rows if isinstance(r, Mapping) and r.get("SystemModstamp")
    ]
    if not _flag(record, "IsDeleted"):
        # queryAll answers a live deal's deleted line items among its children: they are not sold.
        rows = [r for r in rows if not (isinstance(r, Mapping) and r.get("IsDeleted") is True)]
    # No line items (never any, or every one removed) maps to an order without lines: a billed deal
    # whose lines were all removed must reach billing, which ends its subscriptions as a lost deal's.
    lines = tuple(_line(line, i, currency, o) for i, line in enumerate(rows))
    close_date = _date(record.get("CloseDate"), "CloseDate")
    if close_date is None:
        raise SalesforceMappingError("CloseDate", "the opportunity has no close date")
    if _flag(record, "IsDeleted"):
        status = OrderStatus.CANCELLED
    elif _flag(record, "IsWon"):
        status = OrderStatus.WON
    elif _flag(record, "IsClosed"):
        status = OrderStatus.LOST
    else:
        status = OrderStatus.OPEN
    data = {
        "id": opp_id,
        "refs": {"salesforce": opp_id},
        "name": _text(record.get("Name"), "Name"),
        "status": status,
        "customer": customer,
        "currency": currency,
        "order_date": close_date,
        "status_since": _datetime(record.get("LastStageChangeDate"), "LastStageChangeDate"),
        "lines": lines,
    }
    draft = Order(**data)  # type: ignore[arg-type]
    dumped = draft.model_dump(mode="json")
    if line_stamps:
        dumped["lines_modstamp"] = max(line_stamps)
    return draft.model_copy(
        update={"version": fingerprint(dumped), "source_modstamp": _text(record.get("SystemModstamp"))}
    )


def account(record: Mapping[str, Any], options: Mapping[str, Any]) -> Customer:
    """An Account as a ``Customer``."""
    o = _opts(options)
    customer = _customer(record, record.get("Id"), o, "")
    dumped = customer.model_dump(mode="json")
    return customer.model_copy(
        update={"version": fingerprint(dumped), "source_modstamp": _text(record.get("SystemModstamp"))}
    )


INBOUND = {"salesforce.opportunity": opportunity, "salesforce.account": account}


# --------------------------------------------------------------------------------------------- write-back
WRITEBACK_FIELDS: dict[str, str | None] = {
    "invoice_number": "Billing_Invoice_Number__c",
    "invoiced_amount": "Billing_Invoiced_Amount__c",
    "payment_status": "Billing_Payment_Status__c",
    "accounting_document": "SAP_Accounting_Document__c",
    "last_sync": "Billing_Last_Sync__c",
}
PAYMENT_STATUS_VALUES: dict[str, str] = {
    "pending": "Pending",
    "partially_paid": "Partially Paid",
    "succeeded": "Paid",
    "failed": "Payment Failed",
    # Not payment statuses but what the invoice shows over them (see payment_status_key).
    "overdue": "Overdue",
    "dispute_lost": "Dispute Lost",
    "refunded": "Refunded",
    "voided": "Voided",
}


def payment_status_key(invoice: Invoice) -> str:
    """What an invoice's payment stands at now, the key into the picklist values: a voided invoice shows
    voided; money gone back to the payer shows over the payment status, a lost dispute (chargeback) first,
    then a refund (issued by a credit note; a declined one is not counted); an unpaid invoice past its due
    date shows overdue; otherwise the latest payment status as the billing engine reports it (a payment
    that failed after it succeeded shows failed)."""
    if invoice.status is InvoiceStatus.VOIDED:
        return "voided"
    if invoice.payment_dispute_lost_at is not None:
        return "dispute_lost"
    if invoice.refunded is not None and invoice.refunded.is_positive():
        return "refunded"
    status = InvoicePaymentStatus(invoice.payment_status).value
    if invoice.payment_overdue and status in ("pending", "partially_paid"):
        return "overdue"
    return status


def opportunity_id_of(invoice: Invoice) -> str:
    candidate = invoice.refs.get("salesforce") or invoice.order_id
    if not candidate:
        raise SalesforceMappingError("refs.salesforce", "the invoice names no Opportunity (nor order_id)")
    if not _OPP_ID.match(candidate):
        raise SalesforceMappingError("refs.salesforce", f"{candidate[:40]!r} is not an Opportunity id")
    return candidate


def invoice_writeback(
    invoice: Invoice,
    fields: Mapping[str, str | None] | None = None,
    payment_status_values: Mapping[str, str] | None = None,
    synced_at: dt.datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """(Opportunity Id, field values) for the write-back. Fields mapped to None are not written; the SAP
    document is only written once known (an absent ``refs["sap"]`` never clears it)."""
    names = {**WRITEBACK_FIELDS, **(fields or {})}
    statuses = {**PAYMENT_STATUS_VALUES, **(payment_status_values or {})}
    opp_id = opportunity_id_of(invoice)
    status_key = payment_status_key(invoice)
    values: dict[str, Any] = {}
    if names.get("invoice_number"):
        values[str(names["invoice_number"])] = invoice.invoice_number
    if names.get("invoiced_amount"):
        values[str(names["invoiced_amount"])] = invoice.total.amount
    if names.get("payment_status"):
        if status_key not in statuses:
            raise SalesforceMappingError("payment_status", f"no picklist value for {status_key!r}")
        values[str(names["payment_status"])] = statuses[status_key]
    sap = invoice.refs.get("sap")
    if names.get("accounting_document") and sap:
        values[str(names["accounting_document"])] = sap
    if names.get("last_sync") and synced_at is not None:
        values[str(names["last_sync"])] = synced_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return opp_id, values


def writeback_applied(current: Mapping[str, Any], wanted: Mapping[str, Any], ignore: set[str]) -> bool:
    """Whether the Opportunity already holds the wanted values (the crash-recovery lookup)."""
    for name, value in wanted.items():
        if name in ignore:
            continue
        have = current.get(name)
        if isinstance(value, Decimal):
            try:
                if have is None or Decimal(str(have)) != value:
                    return False
            except InvalidOperation:
                return False
        elif have != value:
            return False
    return True
