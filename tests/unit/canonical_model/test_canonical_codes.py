"""ISO 4217 and ISO 3166-1 tables, checked against the host's iso-codes data when it is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lead2cash.canonical_model import (
    COUNTRY_CODES,
    MINOR_UNITS,
    Address,
    UnknownCurrencyError,
    minor_units,
    normalize_country,
)

ISO_CODES = Path("/usr/share/iso-codes/json")


@pytest.mark.parametrize(
    ("code", "units"),
    [
        ("JPY", 0), ("KRW", 0), ("CLP", 0), ("VND", 0), ("XOF", 0),
        ("USD", 2), ("EUR", 2), ("GBP", 2), ("CHF", 2), ("INR", 2),
        ("KWD", 3), ("BHD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3), ("LYD", 3), ("IQD", 3),
        ("CLF", 4), ("UYW", 4),
    ],
)  # fmt: skip
def test_minor_units(code: str, units: int) -> None:
    assert MINOR_UNITS[code] == units
    assert minor_units(code.lower()) == units


def test_currency_table_shape() -> None:
    assert len(MINOR_UNITS) >= 155
    assert all(len(c) == 3 and c.isalpha() and c.isupper() for c in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3, 4}
    # No minor units in ISO, so they can never be invoiced.
    assert not {"XAU", "XAG", "XDR", "XXX", "XTS"} & set(MINOR_UNITS)
    with pytest.raises(UnknownCurrencyError):
        minor_units("XAU")


def test_currency_table_covers_the_hosts_iso_4217_list() -> None:
    source = ISO_CODES / "iso_4217.json"
    if not source.exists():
        pytest.skip("iso-codes data not installed")
    listed = {entry["alpha_3"] for entry in json.loads(source.read_text())["4217"]}
    no_minor_units = {
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XDR",
        "XPD",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
    }
    assert listed - no_minor_units <= set(MINOR_UNITS)


def test_country_table_matches_the_hosts_iso_3166_list() -> None:
    assert len(COUNTRY_CODES) == 249
    source = ISO_CODES / "iso_3166-1.json"
    if not source.exists():
        pytest.skip("iso-codes data not installed")
    listed = {entry["alpha_2"] for entry in json.loads(source.read_text())["3166-1"]}
    assert listed == COUNTRY_CODES


def test_address_country_is_normalized_and_validated() -> None:
    assert Address(country=" de ").country == "DE"
    assert normalize_country("gb") == "GB"
    for bad in ("XX", "DEU", "UK", "", 276):
        with pytest.raises(ValidationError) as info:
            Address(country=bad)
        assert info.value.errors()[0]["loc"] == ("country",)
