"""The canonical order-to-cash model: the shapes every route speaks, independent of any system.

Imports nothing else from lead2cash. Entities are frozen pydantic models that round-trip through JSON; the
router stores ``entity_type`` by name and revives payloads with :func:`entity_from_json`.
"""

from __future__ import annotations

from typing import Final

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
from lead2cash.canonical_model.money import MAX_AMOUNT, CurrencyMismatchError, Money, MoneyError, sum_money
from lead2cash.canonical_model.order import LINE_ROUNDING, Order, OrderLine, OrderStatus
from lead2cash.canonical_model.party import Address, Contact, Customer
from lead2cash.canonical_model.payment import Payment, PaymentStatus
from lead2cash.canonical_model.product import BillingPeriod, ChargeKind, Product
from lead2cash.canonical_model.subscription import Subscription, SubscriptionStatus
from lead2cash.canonical_model.usage import UsageEvent
from lead2cash.canonical_model.wallet import WalletTransaction

ENTITY_TYPES: Final[dict[str, type[CanonicalEntity]]] = {
    cls.__name__: cls
    for cls in (
        Contact,
        Customer,
        Product,
        Order,
        Subscription,
        Invoice,
        CreditNote,
        Payment,
        JournalEntry,
        UsageEvent,
        WalletTransaction,
    )
}
"""Entity class name -> class, for reviving stored payloads by their recorded ``entity_type``."""


def entity_from_json(entity_type: str, payload: str | bytes) -> CanonicalEntity:
    """Revive a stored entity: ``entity_from_json("Invoice", invoice.model_dump_json())``."""
    try:
        cls = ENTITY_TYPES[entity_type]
    except KeyError:
        raise KeyError(
            f"unknown canonical entity type {entity_type!r}; known: {sorted(ENTITY_TYPES)}"
        ) from None
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
