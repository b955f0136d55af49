"""ISO 4217 currency codes and their minor units (decimal places).

A static table rather than a dependency: the set changes a few times a decade, and Money must not depend on
the locale data of whatever machine the hub runs on. Source: ISO 4217 list one (amendments up to 2025).
Codes without minor units in ISO (precious metals, bond units, XDR, XSU, XUA, XTS, XXX) are left out because
they can never be invoiced.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

_ZERO_DECIMALS: Final = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS: Final = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS: Final = "CLF UYW"
_TWO_DECIMALS: Final = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
    "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR "
    "PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY "
    "TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)
# Withdrawn recently, but still found on historical invoices and ledger documents that a reconciliation
# sweep may read back, so they stay valid.
_HISTORIC_TWO_DECIMALS: Final = "HRK SLL ZWL"


def _table() -> dict[str, int]:
    table: dict[str, int] = {}
    for codes, units in (
        (_ZERO_DECIMALS, 0),
        (_TWO_DECIMALS, 2),
        (_THREE_DECIMALS, 3),
        (_FOUR_DECIMALS, 4),
        (_HISTORIC_TWO_DECIMALS, 2),
    ):
        for code in codes.split():
            if code in table:
                raise AssertionError(f"currency {code} listed twice")
            table[code] = units
    return table


MINOR_UNITS: Final = MappingProxyType(_table())
"""ISO 4217 alphabetic code -> number of minor-unit digits (JPY 0, USD 2, KWD 3, CLF 4)."""


class UnknownCurrencyError(ValueError):
    """The code is not an ISO 4217 currency this model can carry."""


def normalize_currency(code: object) -> str:
    """Return the upper-case ISO 4217 code, or raise UnknownCurrencyError."""
    if not isinstance(code, str):
        raise UnknownCurrencyError(f"currency must be an ISO 4217 code string, got {type(code).__name__}")
    normalized = code.strip().upper()
    if normalized not in MINOR_UNITS:
        raise UnknownCurrencyError(f"currency {code!r} is not an ISO 4217 code with minor units")
    return normalized


def minor_units(code: str) -> int:
    """Decimal places of the currency's minor unit (e.g. 2 for USD)."""
    return MINOR_UNITS[normalize_currency(code)]


def is_currency(code: str) -> bool:
    return code in MINOR_UNITS
