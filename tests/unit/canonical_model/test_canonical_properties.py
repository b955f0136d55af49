"""Property tests: Money arithmetic, rounding, minor units and allocation; invoice and journal invariants."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal
from fractions import Fraction

import pytest
from canonical_factories import make_customer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lead2cash.canonical_model import (
    MINOR_UNITS,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalEntryItem,
    Money,
    OrderLine,
    TaxLine,
    sum_money,
)

CURRENCIES = ["JPY", "KRW", "USD", "EUR", "KWD", "BHD", "CLF"]
REFERENCE = Context(prec=100)  # wide enough that the reference computation itself never rounds

currencies = st.sampled_from(CURRENCIES)
# Bounded so that sums of a few values stay far below the 10**15 amount bound in every currency.
minor_units = st.integers(min_value=-(10**12), max_value=10**12)


@st.composite
def money_triples(draw: st.DrawFn) -> tuple[Money, Money, Money]:
    currency = draw(currencies)
    a, b, c = (Money.from_minor_units(draw(minor_units), currency) for _ in range(3))
    return a, b, c


@st.composite
def decimals(draw: st.DrawFn) -> Decimal:
    """Decimals with up to 8 places, including exact ties such as x.5, x.005, x.0005."""
    places = draw(st.integers(min_value=0, max_value=8))
    digits = draw(st.integers(min_value=-(10**14), max_value=10**14))
    if draw(st.booleans()):
        digits = digits - digits % 10 + 5  # force a 5 in the last place: rounding ties are the hard case
    return Decimal(digits).scaleb(-places)


def unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[currency])


common = settings(max_examples=150, deadline=None)


# --- arithmetic --------------------------------------------------------------------------------------


@common
@given(money_triples())
def test_addition_is_commutative_and_associative(abc: tuple[Money, Money, Money]) -> None:
    a, b, c = abc
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b) - b == a
    assert a + (-a) == Money.zero(a.currency)
    assert sum_money([a, b, c], a.currency) == a + b + c
    assert (a + b).amount == a.amount + b.amount  # exact, never rounded


@common
@given(money_triples())
def test_ordering_agrees_with_amounts(abc: tuple[Money, Money, Money]) -> None:
    a, b, _ = abc
    assert (a < b) == (a.amount < b.amount)
    assert (a <= b) == (a.amount <= b.amount)
    assert (a == b) == (a.amount == b.amount)


# --- rounding ----------------------------------------------------------------------------------------


@common
@given(decimals(), currencies)
def test_rounding_modes_match_decimal_reference(value: Decimal, currency: str) -> None:
    for mode in (ROUND_HALF_EVEN, ROUND_HALF_UP):
        expected = value.quantize(unit(currency), rounding=mode, context=REFERENCE)
        assert Money.of(value, currency, rounding=mode).amount == expected
        assert Money.of(str(value), currency, rounding=mode).amount == expected
    even = Money.of(value, currency, rounding=ROUND_HALF_EVEN)
    up = Money.of(value, currency, rounding=ROUND_HALF_UP)
    scaled = value.scaleb(MINOR_UNITS[currency], context=REFERENCE)
    fraction = scaled - scaled.to_integral_value(rounding=ROUND_DOWN, context=REFERENCE)
    is_tie = abs(fraction) == Decimal("0.5")
    if is_tie:
        assert abs((up - even).to_minor_units()) <= 1
    else:
        assert up == even
    assert abs(even.amount - value) <= unit(currency) / 2


@common
@given(decimals(), currencies)
def test_constructor_accepts_exactly_the_representable_values(value: Decimal, currency: str) -> None:
    representable = value == value.quantize(unit(currency), context=REFERENCE)
    if representable:
        assert Money(amount=value, currency=currency).amount == value
    else:
        with pytest.raises(ValidationError, match=r"Money\.of"):
            Money(amount=value, currency=currency)


# --- minor units and JSON ----------------------------------------------------------------------------


@common
@given(st.integers(min_value=-(10**14), max_value=10**14), st.sampled_from(["JPY", "USD", "KWD"]))
def test_minor_unit_round_trip(units: int, currency: str) -> None:
    money = Money.from_minor_units(units, currency)
    assert money.to_minor_units() == units
    assert money.amount == Decimal(units) * unit(currency)
    assert Money.of(money.amount, currency) == money
    assert Money.model_validate_json(money.model_dump_json()) == money


# --- allocation --------------------------------------------------------------------------------------


def assert_fair_allocation(total: Money, shares: list[Money], weights: list[Fraction]) -> None:
    assert sum_money(shares, total.currency) == total
    weight_sum = sum(weights, Fraction(0))
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total.to_minor_units()) * weight / weight_sum
        assert abs(Fraction(share.to_minor_units()) - exact) < 1
        assert share.currency == total.currency


@common
@given(minor_units, currencies, st.integers(min_value=1, max_value=60))
def test_allocate_into_n_shares(units: int, currency: str, n: int) -> None:
    total = Money.from_minor_units(units, currency)
    shares = total.allocate(n)
    assert len(shares) == n
    assert_fair_allocation(total, shares, [Fraction(1)] * n)
    spread = [s.to_minor_units() for s in shares]
    assert max(spread) - min(spread) <= 1
    assert shares == total.allocate(n)  # deterministic


@common
@given(
    minor_units,
    currencies,
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30).filter(any),
)
def test_allocate_by_integer_weights(units: int, currency: str, weights: list[int]) -> None:
    total = Money.from_minor_units(units, currency)
    shares = total.allocate(weights)
    assert_fair_allocation(total, shares, [Fraction(w) for w in weights])
    for share, weight in zip(shares, weights, strict=True):
        if weight == 0:
            assert share.is_zero()


@common
@given(
    minor_units,
    currencies,
    st.lists(
        st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=20,
    ).filter(any),
)
def test_allocate_by_decimal_weights(units: int, currency: str, weights: list[Decimal]) -> None:
    total = Money.from_minor_units(units, currency)
    assert_fair_allocation(total, total.allocate(weights), [Fraction(w) for w in weights])


# --- order lines -------------------------------------------------------------------------------------


@common
@given(
    st.integers(min_value=1, max_value=10**6).map(lambda q: Decimal(q).scaleb(-2)),
    st.integers(min_value=0, max_value=10**7),
    st.sampled_from(["USD", "JPY", "KWD"]),
    st.integers(min_value=0, max_value=10000).map(lambda p: Decimal(p).scaleb(-2)),
)
def test_order_line_net_matches_reference(
    quantity: Decimal, price_units: int, currency: str, pct: Decimal
) -> None:
    price = Money.from_minor_units(price_units, currency)
    line = OrderLine(
        id="l", product_code="P", product_name="P", kind="one_time", quantity=quantity, unit_price=price,
        discount_percent=pct,
    )  # fmt: skip
    exact = quantity * price.amount * (1 - pct / 100)
    expected = Decimal(exact).quantize(unit(currency), rounding=ROUND_HALF_UP, context=REFERENCE)
    assert line.net_amount.amount == expected
    assert Money.zero(currency) <= line.net_amount <= line.gross_amount
    assert line.gross_amount - line.discount_total == line.net_amount


# --- invoice invariant -------------------------------------------------------------------------------


@st.composite
def invoice_parts(draw: st.DrawFn) -> tuple[str, list[InvoiceLine], list[TaxLine]]:
    currency = draw(currencies)
    amounts = draw(st.lists(st.integers(min_value=-(10**9), max_value=10**10), min_size=0, max_size=12))
    lines = [
        InvoiceLine(id=f"fee-{i}", description=f"fee {i}", net_amount=Money.from_minor_units(u, currency))
        for i, u in enumerate(amounts)
    ]
    rates = draw(st.lists(st.integers(min_value=0, max_value=2500), min_size=0, max_size=3))
    taxes = [
        TaxLine(
            code=f"tax-{i}",
            rate=Decimal(r).scaleb(-2),
            amount=Money.from_minor_units(draw(st.integers(min_value=0, max_value=10**9)), currency),
        )
        for i, r in enumerate(rates)
    ]
    return currency, lines, taxes


def _build_invoice(currency: str, lines: list[InvoiceLine], taxes: list[TaxLine]) -> Invoice:
    return Invoice.build(
        id="inv", invoice_number="N-1", customer=make_customer(), status="finalized",
        issue_date=date(2024, 1, 1), currency=currency, lines=lines, taxes=taxes,
    )  # fmt: skip


@common
@given(invoice_parts(), st.sampled_from(["total", "subtotal", "tax_total"]), st.sampled_from([-1, 1]))
def test_invoice_invariant(
    parts: tuple[str, list[InvoiceLine], list[TaxLine]], field: str, delta: int
) -> None:
    currency, lines, taxes = parts
    invoice = _build_invoice(currency, lines, taxes)
    line_sum = sum_money((line.net_amount for line in lines), currency)
    tax_sum = sum_money((tax.amount for tax in taxes), currency)
    assert invoice.subtotal == line_sum
    assert invoice.tax_total == tax_sum
    assert invoice.total == line_sum + tax_sum
    assert Invoice.model_validate_json(invoice.model_dump_json()) == invoice

    # Off by a single minor unit in any one total must be caught, and the message must name the field.
    fields = invoice.model_dump()
    fields[field] = getattr(invoice, field) + Money.from_minor_units(delta, currency)
    with pytest.raises(ValidationError, match=field):
        Invoice(**fields)


# --- journal invariant -------------------------------------------------------------------------------


@st.composite
def balanced_items(draw: st.DrawFn) -> list[JournalEntryItem]:
    items: list[JournalEntryItem] = []
    for currency in draw(st.lists(currencies, min_size=1, max_size=3, unique=True)):
        debits = draw(st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=4))
        total = Money.from_minor_units(sum(debits), currency)
        # Credits: the debit total spread over up to 6 accounts by random positive weights.
        weights = draw(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=6))
        credits = [c for c in total.allocate(weights) if c.is_positive()]
        items += [
            JournalEntryItem(side="debit", gl_account="12100000", amount=Money.from_minor_units(d, currency))
            for d in debits
        ]
        items += [JournalEntryItem(side="credit", gl_account="41000000", amount=c) for c in credits]
    return draw(st.permutations(items))


def _entry(items: list[JournalEntryItem]) -> JournalEntry:
    return JournalEntry(
        id="je", company_code="1010", document_type="DR", document_date=date(2024, 1, 1),
        posting_date=date(2024, 1, 1), reference_id="N-1", items=items,
    )  # fmt: skip


@common
@given(balanced_items(), st.data())
def test_journal_invariant(items: list[JournalEntryItem], data: st.DataObject) -> None:
    entry = _entry(items)
    for currency, (debits, credits) in entry.totals().items():
        assert debits == credits
        assert debits.is_positive() and debits.currency == currency
    assert JournalEntry.model_validate_json(entry.model_dump_json()) == entry

    index = data.draw(st.integers(min_value=0, max_value=len(items) - 1))
    victim = items[index]
    bumped = victim.model_copy(
        update={"amount": victim.amount + Money.from_minor_units(1, victim.amount.currency)}
    )
    with pytest.raises(ValidationError, match="items: debits"):
        _entry([*items[:index], bumped, *items[index + 1 :]])
    with pytest.raises(ValidationError, match="items"):
        _entry([*items[:index], *items[index + 1 :]])
