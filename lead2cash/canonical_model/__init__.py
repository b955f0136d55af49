"""The canonical order-to-cash model: the shapes every route speaks, independent of any system.

Imports nothing else from lead2cash. Entities are frozen pydantic models that round-trip through JSON; the
router stores ``entity_type`` by name and revives payloads with :func:`entity_from_json`.

The names below load on first use (PEP 562): a command that needs only the currency table or the Decimal
context does not pay for pydantic and the entity classes (about 95 ms).
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lead2cash.canonical_model._decimal import DECIMAL_CONTEXT, ROUNDING_MODES, InvalidAmountError
    from lead2cash.canonical_model.base import (
        MAX_QUANTITY,
        CanonicalEntity,
        CanonicalModel,
        CountryCode,
        CurrencyCode,
        NonEmptyStr,
        NonNegativeQuantity,
        Percent,
        Quantity,
        SystemRefs,
    )
    from lead2cash.canonical_model.country import COUNTRY_CODES, UnknownCountryError, normalize_country
    from lead2cash.canonical_model.credit_note import (
        CreditNote,
        CreditNoteLine,
        CreditNoteReason,
        CreditNoteStatus,
    )
    from lead2cash.canonical_model.currency import (
        MINOR_UNITS,
        UnknownCurrencyError,
        minor_units,
        normalize_currency,
    )
    from lead2cash.canonical_model.invoice import (
        Invoice,
        InvoiceLine,
        InvoicePaymentStatus,
        InvoiceStatus,
        TaxLine,
    )
    from lead2cash.canonical_model.journal import DebitCredit, JournalEntry, JournalEntryItem, JournalItemKind
    from lead2cash.canonical_model.money import (
        MAX_AMOUNT,
        CurrencyMismatchError,
        Money,
        MoneyError,
        sum_money,
    )
    from lead2cash.canonical_model.order import LINE_ROUNDING, Order, OrderLine, OrderStatus
    from lead2cash.canonical_model.party import Address, Contact, Customer
    from lead2cash.canonical_model.payment import Payment, PaymentStatus
    from lead2cash.canonical_model.product import BillingPeriod, ChargeKind, Product
    from lead2cash.canonical_model.subscription import Subscription, SubscriptionStatus
    from lead2cash.canonical_model.usage import UsageEvent
    from lead2cash.canonical_model.wallet import WalletTransaction

    ENTITY_TYPES: dict[str, type[CanonicalEntity]]

# Public name -> the submodule that defines it.
_SOURCES: dict[str, str] = {
    "Address": "party",
    "BillingPeriod": "product",
    "COUNTRY_CODES": "country",
    "CanonicalEntity": "base",
    "CanonicalModel": "base",
    "ChargeKind": "product",
    "Contact": "party",
    "CountryCode": "base",
    "CreditNote": "credit_note",
    "CreditNoteLine": "credit_note",
    "CreditNoteReason": "credit_note",
    "CreditNoteStatus": "credit_note",
    "CurrencyCode": "base",
    "CurrencyMismatchError": "money",
    "Customer": "party",
    "DECIMAL_CONTEXT": "_decimal",
    "DebitCredit": "journal",
    "InvalidAmountError": "_decimal",
    "Invoice": "invoice",
    "InvoiceLine": "invoice",
    "InvoicePaymentStatus": "invoice",
    "InvoiceStatus": "invoice",
    "JournalEntry": "journal",
    "JournalEntryItem": "journal",
    "JournalItemKind": "journal",
    "LINE_ROUNDING": "order",
    "MAX_AMOUNT": "money",
    "MAX_QUANTITY": "base",
    "MINOR_UNITS": "currency",
    "Money": "money",
    "MoneyError": "money",
    "NonEmptyStr": "base",
    "NonNegativeQuantity": "base",
    "Order": "order",
    "OrderLine": "order",
    "OrderStatus": "order",
    "Payment": "payment",
    "PaymentStatus": "payment",
    "Percent": "base",
    "Product": "product",
    "Quantity": "base",
    "ROUNDING_MODES": "_decimal",
    "Subscription": "subscription",
    "SubscriptionStatus": "subscription",
    "SystemRefs": "base",
    "TaxLine": "invoice",
    "UnknownCountryError": "country",
    "UnknownCurrencyError": "currency",
    "UsageEvent": "usage",
    "WalletTransaction": "wallet",
    "minor_units": "currency",
    "normalize_country": "country",
    "normalize_currency": "currency",
    "sum_money": "money",
}


def __getattr__(name: str) -> Any:
    if name == "ENTITY_TYPES":
        value: Any = _entity_types()
    elif name in _SOURCES:
        value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


@functools.cache
def _entity_types() -> dict[str, type[CanonicalEntity]]:
    """Entity class name -> class, for reviving stored payloads by their recorded ``entity_type``."""
    from lead2cash.canonical_model.credit_note import CreditNote
    from lead2cash.canonical_model.invoice import Invoice
    from lead2cash.canonical_model.journal import JournalEntry
    from lead2cash.canonical_model.order import Order
    from lead2cash.canonical_model.party import Contact, Customer
    from lead2cash.canonical_model.payment import Payment
    from lead2cash.canonical_model.product import Product
    from lead2cash.canonical_model.subscription import Subscription
    from lead2cash.canonical_model.usage import UsageEvent
    from lead2cash.canonical_model.wallet import WalletTransaction

    classes = (Contact, Customer, Product, Order, Subscription, Invoice, CreditNote, Payment, JournalEntry,
               UsageEvent, WalletTransaction)  # fmt: skip
    return {cls.__name__: cls for cls in classes}


def entity_from_json(entity_type: str, payload: str | bytes) -> CanonicalEntity:
    """Revive a stored entity: ``entity_from_json("Invoice", invoice.model_dump_json())``."""
    types = _entity_types()
    try:
        cls = types[entity_type]
    except KeyError:
        raise KeyError(f"unknown canonical entity type {entity_type!r}; known: {sorted(types)}") from None
    return cls.model_validate_json(payload)


__all__ = [
    "COUNTRY_CODES",
    "DECIMAL_CONTEXT",
    "ENTITY_TYPES",
    "LINE_ROUNDING",
    "MAX_AMOUNT",
    "MAX_QUANTITY",
    "MINOR_UNITS",
    "ROUNDING_MODES",
    "Address",
    "BillingPeriod",
    "CanonicalEntity",
    "CanonicalModel",
    "ChargeKind",
    "Contact",
    "CountryCode",
    "CreditNote",
    "CreditNoteLine",
    "CreditNoteReason",
    "CreditNoteStatus",
    "CurrencyCode",
    "CurrencyMismatchError",
    "Customer",
    "DebitCredit",
    "InvalidAmountError",
    "Invoice",
    "InvoiceLine",
    "InvoicePaymentStatus",
    "InvoiceStatus",
    "JournalEntry",
    "JournalEntryItem",
    "JournalItemKind",
    "Money",
    "MoneyError",
    "NonEmptyStr",
    "NonNegativeQuantity",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Payment",
    "PaymentStatus",
    "Percent",
    "Product",
    "Quantity",
    "Subscription",
    "SubscriptionStatus",
    "SystemRefs",
    "TaxLine",
    "UnknownCountryError",
    "UnknownCurrencyError",
    "UsageEvent",
    "WalletTransaction",
    "entity_from_json",
    "minor_units",
    "normalize_country",
    "normalize_currency",
    "sum_money",
]
