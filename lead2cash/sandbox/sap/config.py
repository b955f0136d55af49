"""Financial configuration of the SAP sandbox: company codes, chart of accounts, tax codes, number ranges.

Choices (the hub's shipped mapping tables point at these):

* One company code per catalogue currency, each posting in its local currency (foreign-currency postings are
  accepted too and translated at the fixed rates below):
  ``1010`` DE/EUR, ``1110`` GB/GBP, ``1510`` JP/JPY, ``1710`` US/USD, ``4810`` KW/KWD. All use chart of
  accounts ``YCOA`` and fiscal year variant ``K4`` (fiscal year = calendar year, period = month).
* Accounts: ``12100000`` receivables (reconciliation account for customers, not postable directly),
  ``22000000`` output tax, ``21800000`` customer advances (wallet top-ups, a liability), revenue per product family ``41000000`` Software, ``41100000`` Services,
  ``41200000`` Training, ``41300000`` Hardware, ``11001020`` bank (incoming payments), ``11002020`` bank (transfers received:
  manual payments).
* Tax codes are two characters per country, as in SAP's country tax procedures. Catalogue code -> SAP code:
  ``DE_VAT_19`` -> ``A1`` (DE, 19 %), ``GB_VAT_20`` -> ``A1`` (GB, 20 %), ``JP_CT_10`` -> ``A1`` (JP, 10 %),
  ``KW_ZERO`` -> ``A0`` (KW, 0 %), ``US_EXEMPT`` -> ``O0`` (US, 0 %). ``A0`` (0 %) exists in DE and GB too.
* Accounting document numbers per company code and fiscal year, from the number range of the document type:
  ``DR`` (customer invoice) 1800000000+, ``DG`` (customer credit memo) 1600000000+, ``SA`` (G/L document)
  0100000000+, ``RV`` 0090000000+, any other type 1900000000+.
* Every posting period is open unless closed through the admin API (``PUT /__sandbox/sap/periods``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from lead2cash.sandbox.catalog import COUNTRY_BY_CURRENCY, CURRENCIES, TAX_BY_COUNTRY

CHART_OF_ACCOUNTS = "YCOA"
FISCAL_YEAR_VARIANT = "K4"
LEDGER = "0L"
LEDGER_NAME = "Leading Ledger"


@dataclass(frozen=True)
class CompanyCode:
    code: str
    name: str
    country: str
    currency: str
    city: str
    language: str


COMPANY_CODES: dict[str, CompanyCode] = {
    c.code: c
    for c in (
        CompanyCode("1010", "Company Code 1010", "DE", "EUR", "Walldorf", "DE"),
        CompanyCode("1110", "Company Code 1110", "GB", "GBP", "London", "EN"),
        CompanyCode("1510", "Company Code 1510", "JP", "JPY", "Tokyo", "JA"),
        CompanyCode("1710", "Company Code 1710", "US", "USD", "Palo Alto", "EN"),
        CompanyCode("4810", "Company Code 4810", "KW", "KWD", "Kuwait City", "EN"),
    )
}

COMPANY_CODE_BY_CURRENCY = {c.currency: c.code for c in COMPANY_CODES.values()}
assert set(COMPANY_CODE_BY_CURRENCY) == set(CURRENCIES)
assert all(
    COMPANY_CODES[COMPANY_CODE_BY_CURRENCY[cur]].country == COUNTRY_BY_CURRENCY[cur] for cur in CURRENCIES
)

# Minor units per currency (ISO 4217), for amount checks and OData decimal formatting.
CURRENCY_DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}

# Fixed translation rates: 1 unit of the key currency in EUR. Only used for foreign-currency postings.
EUR_RATE = {
    "EUR": Decimal("1"),
    "USD": Decimal("0.92"),
    "GBP": Decimal("1.17"),
    "JPY": Decimal("0.0062"),
    "KWD": Decimal("2.99"),
}


@dataclass(frozen=True)
class GLAccount:
    number: str
    name: str
    balance_sheet: bool
    group: str
    reconciliation_for: str | None = None  # "D" = customers: only postable through debtor items
    blocked: bool = False


RECEIVABLES_ACCOUNT = "12100000"
OUTPUT_TAX_ACCOUNT = "22000000"
ADVANCES_ACCOUNT = "21800000"
# Granted (free) wallet credits consumed on invoices: a sales deduction (contra-revenue), not the advance.
GRANTED_CREDITS_ACCOUNT = "44000000"
# Paid wallet credits voided without a refund: the advance released to other operating income.
VOIDED_CREDITS_ACCOUNT = "48000000"
REVENUE_ACCOUNT_BY_FAMILY = {
    "Software": "41000000",
    "Services": "41100000",
    "Training": "41200000",
    "Hardware": "41300000",
}

GL_ACCOUNTS: dict[str, GLAccount] = {
    a.number: a
    for a in (
        GLAccount("11001020", "Bank 1 (Incoming)", True, "BANK"),
        GLAccount("11002020", "Bank 2 (Transfers received)", True, "BANK"),
        GLAccount(RECEIVABLES_ACCOUNT, "Receivables Domestic", True, "RECV", reconciliation_for="D"),
        GLAccount(OUTPUT_TAX_ACCOUNT, "Output Tax", True, "LIAB"),
        GLAccount(ADVANCES_ACCOUNT, "Customer Advances (Prepaid Credits)", True, "LIAB"),
        GLAccount(GRANTED_CREDITS_ACCOUNT, "Sales Deductions (Granted Credits)", False, "REV"),
        GLAccount(VOIDED_CREDITS_ACCOUNT, "Other Operating Income (Voided Credits)", False, "REV"),
        GLAccount("41000000", "Revenue Software", False, "REV"),
        GLAccount("41100000", "Revenue Services", False, "REV"),
        GLAccount("41200000", "Revenue Training", False, "REV"),
        GLAccount("41300000", "Revenue Hardware", False, "REV"),
        GLAccount("41999000", "Revenue (blocked)", False, "REV", blocked=True),
    )
}


@dataclass(frozen=True)
class TaxCode:
    country: str
    code: str
    rate: Decimal  # percent
    account: str = OUTPUT_TAX_ACCOUNT


TAX_CODES: dict[tuple[str, str], TaxCode] = {
    (t.country, t.code): t
    for t in (
        TaxCode("DE", "A1", Decimal("19")),
        TaxCode("DE", "A0", Decimal("0")),
        TaxCode("GB", "A1", Decimal("20")),
        TaxCode("GB", "A0", Decimal("0")),
        TaxCode("JP", "A1", Decimal("10")),
        TaxCode("KW", "A0", Decimal("0")),
        TaxCode("US", "O0", Decimal("0")),
    )
}

SAP_TAX_CODE_BY_CATALOG = {
    "DE_VAT_19": "A1",
    "GB_VAT_20": "A1",
    "JP_CT_10": "A1",
    "KW_ZERO": "A0",
    "US_EXEMPT": "O0",
}
assert all(
    (country, SAP_TAX_CODE_BY_CATALOG[code]) in TAX_CODES
    and TAX_CODES[(country, SAP_TAX_CODE_BY_CATALOG[code])].rate == Decimal(rate)
    for country, (code, rate) in TAX_BY_COUNTRY.items()
)

NUMBER_RANGE_START = {"DR": 1800000000, "DG": 1600000000, "SA": 100000000, "RV": 90000000}
DEFAULT_NUMBER_RANGE_START = 1900000000

BUSINESS_PARTNER_ROLES = {
    "FLCU00": "FI Customer",
    "FLCU01": "Customer",
    "FLVN00": "FI Vendor",
    "FLVN01": "Supplier",
}
CUSTOMER_ROLES = {"FLCU00", "FLCU01"}
