"""The product catalogue and currencies the three simulators agree on.

Salesforce seeds Product2/PricebookEntry from it, Lago seeds plans and add-ons with the same codes, SAP
seeds the GL accounts the shipped mapping tables point at. Prices are strings: Decimal only.
"""

from __future__ import annotations

from dataclasses import dataclass

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "KWD")

# Country of the billing address per currency, and the VAT/sales tax rate (percent) that applies there.
COUNTRY_BY_CURRENCY = {"USD": "US", "EUR": "DE", "GBP": "GB", "JPY": "JP", "KWD": "KW"}
TAX_BY_COUNTRY = {
    "US": ("US_EXEMPT", "0"),
    "DE": ("DE_VAT_19", "19"),
    "GB": ("GB_VAT_20", "20"),
    "JP": ("JP_CT_10", "10"),
    "KW": ("KW_ZERO", "0"),
}


@dataclass(frozen=True)
class CatalogProduct:
    code: str
    name: str
    family: str
    recurring: bool
    interval: str | None  # monthly | quarterly | yearly for recurring products
    prices: dict[str, str]  # currency -> unit price


PRODUCTS: tuple[CatalogProduct, ...] = (
    CatalogProduct(
        "PLAT-BASE",
        "Platform subscription",
        "Software",
        True,
        "monthly",
        {"USD": "499.00", "EUR": "459.00", "GBP": "399.00", "JPY": "72000", "KWD": "152.500"},
    ),
    CatalogProduct(
        "PLAT-PRO",
        "Platform Pro (annual)",
        "Software",
        True,
        "yearly",
        {"USD": "11988.00", "EUR": "10990.00", "GBP": "9588.00", "JPY": "1780000", "KWD": "3660.000"},
    ),
    CatalogProduct(
        "SEAT-ADD",
        "Additional seat",
        "Software",
        True,
        "monthly",
        {"USD": "29.90", "EUR": "27.50", "GBP": "23.90", "JPY": "4400", "KWD": "9.125"},
    ),
    CatalogProduct(
        "SUPP-PREM",
        "Premium support",
        "Services",
        True,
        "quarterly",
        {"USD": "1500.00", "EUR": "1390.00", "GBP": "1190.00", "JPY": "220000", "KWD": "458.750"},
    ),
    CatalogProduct(
        "ONB-STD",
        "Onboarding package",
        "Services",
        False,
        None,
        {"USD": "2500.00", "EUR": "2300.00", "GBP": "1990.00", "JPY": "365000", "KWD": "765.000"},
    ),
    CatalogProduct(
        "TRN-DAY",
        "Training day",
        "Training",
        False,
        None,
        {"USD": "1200.00", "EUR": "1100.00", "GBP": "950.00", "JPY": "175000", "KWD": "366.500"},
    ),
    CatalogProduct(
        "HW-GW",
        "IoT gateway",
        "Hardware",
        False,
        None,
        {"USD": "349.99", "EUR": "329.99", "GBP": "289.99", "JPY": "51000", "KWD": "107.125"},
    ),
)

PRODUCTS_BY_CODE = {p.code: p for p in PRODUCTS}
