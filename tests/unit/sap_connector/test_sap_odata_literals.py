"""OData V2 literals: an injection corpus goes through the escaping function and an independent $filter
parser (the sandbox's lark grammar) reads back exactly one comparison with the original value."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lead2cash.connectors.sap.odata import (
    ODataLiteralError,
    and_,
    eq,
    key_predicate,
    odata_literal,
    odata_property,
)
from lead2cash.sandbox.sap.filter import compile_filter

PROPS = {"SearchTerm1": "Edm.String", "CompanyCode": "Edm.String"}

INJECTIONS = [
    "O'Brien",
    "'",
    "''",
    "' or '1' eq '1",
    "x' or SearchTerm1 ne 'x",
    "abc') or (SearchTerm1 eq 'abc",
    "' and substringof('',SearchTerm1) and '' eq '",
    "%27 or 1 eq 1",
    "&$top=1000&$filter=",
    "#fragment",
    "a\\' or 'b",
    "x eq x",
    "Ünïcödé ∑ 漢字 🚀",
    "",
    " ",
    "\u2019 curly quote",
    "null",
    "datetime'2020-01-01T00:00:00'",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_corpus_reads_back_as_one_literal(value: str) -> None:
    text = and_(eq("SearchTerm1", value), eq("CompanyCode", "1010"))
    compiled = compile_filter(text, PROPS, "A_BusinessPartnerType")
    assert compiled.eq_pairs == [("SearchTerm1", value), ("CompanyCode", "1010")]
    assert compiled({"SearchTerm1": value, "CompanyCode": "1010"})
    assert not compiled({"SearchTerm1": value + "x", "CompanyCode": "1010"})
    assert not compiled({"SearchTerm1": "1", "CompanyCode": "1010"})


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_any_printable_text_round_trips(value: str) -> None:
    compiled = compile_filter(eq("SearchTerm1", value), PROPS, "T")
    assert compiled.eq_pairs == [("SearchTerm1", value)]


@pytest.mark.parametrize("value", ["a\x00b", "line\nbreak\x0b", "\x1f"])
def test_control_characters_are_refused(value: str) -> None:
    with pytest.raises(ODataLiteralError):
        odata_literal(value)


@pytest.mark.parametrize("name", ["SearchTerm1 eq 'x' or 1", "A B", "", "1abc", "x'", "A/../B", "a;b"])
def test_property_names_are_identifiers(name: str) -> None:
    with pytest.raises(ODataLiteralError):
        odata_property(name)
    with pytest.raises(ODataLiteralError):
        eq(name, "v")


def test_typed_literals() -> None:
    assert odata_literal(None) == "null"
    assert odata_literal(True) == "true"
    assert odata_literal(42) == "42"
    assert odata_literal(2**40) == f"{2**40}L"
    assert odata_literal(Decimal("12.50")) == "12.50M"
    assert odata_literal(Decimal("1E+3")) == "1000M"
    assert odata_literal(date(2024, 11, 5)) == "datetime'2024-11-05T00:00:00'"
    assert odata_literal(datetime(2024, 11, 5, 7, 8, 9)) == "datetime'2024-11-05T07:08:09'"
    assert odata_literal(datetime(2024, 11, 5, tzinfo=UTC)).startswith("datetimeoffset'2024-11-05T00:00:00")
    u = uuid.UUID(int=5)
    assert odata_literal(u) == f"guid'{u}'"
    for bad in (1.5, Decimal("NaN"), object()):
        with pytest.raises(ODataLiteralError):
            odata_literal(bad)
    assert key_predicate({"BusinessPartner": "100'1"}) == "('100''1')"
    assert key_predicate({"Customer": "1", "CompanyCode": "1010"}) == "(Customer='1',CompanyCode='1010')"
    assert and_("a eq 1 or b eq 2", "c eq 3") == "(a eq 1 or b eq 2) and c eq 3"
