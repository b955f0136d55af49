"""Amendments of a deal already billed, on the shipped routes against the Salesforce and Lago sandboxes
over sockets, the hub run to idle after each change (``run --until-idle``) and the Lago clock moved by
hand, so the day each change reaches Lago is known:

* a line added to a billed deal is billed from the day the change reaches Lago, never from the deal's
  close date (a subscription backdated to the close date bills its current period from the period's
  start: days before the line existed);
* a line added and removed again ({A} -> {A, B} -> {A}) ends the line's subscription: the deal's version
  moves with its line items' own SystemModstamp (deleted ones included), so the reverted content is not
  taken for the version already billed, and a deleted line read with the deal (queryAll answers deleted
  children) is not billed;
* price changes on consecutive days each take effect the next day: no day is left unbilled nor billed
  twice.

Each subscription fee is checked per billed span to the minor unit.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from test_deal_lifecycle_billing import Deals, _advance, _first_of_next_month, _prorated

from lead2cash.demo.environment import LeadToCash

ROUTE = "won-opportunity-to-billing"


def fees_by_subscription(env: LeadToCash, opp: str) -> dict[str, list[tuple[date, date, int]]]:
    """Every subscription fee Lago invoiced for the deal, per line (the subscription's key without
    its ``@v<n>``): (from, to, cents), sorted."""
    out: dict[str, list[tuple[date, date, int]]] = {}
    for invoice in env.lago_invoices(detailed=True):
        for fee in invoice.get("fees") or []:
            external = str(fee.get("external_subscription_id") or "")
            if external.startswith(f"{opp}:"):
                line = external.split(":", 1)[1].split("@v", 1)[0]
                out.setdefault(line, []).append(
                    (date.fromisoformat(fee["from_date"][:10]), date.fromisoformat(fee["to_date"][:10]),
                     int(fee["amount_cents"]))
                )  # fmt: skip
    return {k: sorted(v) for k, v in out.items()}


async def run_to_idle(env: LeadToCash) -> None:
    """Past the source's safety lag (1 s, on the org clock read from a Date header in whole seconds), then every route until it has no work."""
    await asyncio.sleep(2.1)
    assert await env.hub.run_until_idle(timeout=120)


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(tmp_path / "l2c", seed=23, seed_size=4, store_url=store_url)
    yield environment
    environment.close()


def add_line(deals: Deals, opp: str, code: str, price: Decimal) -> str:
    entry = deals.entry(code)
    return deals.create(
        "OpportunityLineItem",
        {"OpportunityId": opp, "PricebookEntryId": entry["Id"], "Quantity": 1, "UnitPrice": str(price)},
    )


def span(cents: int, start: date, end: date) -> tuple[date, date, int]:
    return (start, end, _prorated(cents, start, end))


@pytest.mark.timeout(600)
def test_lines_added_removed_and_repriced_after_billing_bill_each_day_once(env: LeadToCash) -> None:
    deals = Deals(env)
    today = datetime.now(UTC).date()
    d0 = _first_of_next_month(_first_of_next_month(today)) + timedelta(days=3)  # the 4th, ahead of today
    m1 = _first_of_next_month(d0)
    m2 = _first_of_next_month(m1)
    added_on, removed_on = m1 + timedelta(days=7), m1 + timedelta(days=14)
    _advance(env, d0)
    grown, [grown_a] = deals.deal("Grown", d0, [("PLAT-BASE", Decimal("499.00"))])
    reverted, [reverted_a] = deals.deal("Reverted", d0, [("PLAT-BASE", Decimal("499.00"))])
    touched, [touched_a] = deals.deal("Touched", d0, [("PLAT-BASE", Decimal("499.00"))])
    stepped, [stepped_a] = deals.deal("Stepped", d0, [("PLAT-BASE", Decimal("499.00"))])
    seats: dict[str, str] = {}

    async def scenario() -> None:
        for opp in (grown, reverted, touched, stepped):
            deals.stage(opp, "Closed Won")
        await run_to_idle(env)
        _advance(env, m1)
        await run_to_idle(env)

        # Day 8: a seat is added to three billed deals; one deal's price goes up.
        _advance(env, added_on)
        for opp in (grown, reverted, touched):
            seats[opp] = add_line(deals, opp, "SEAT-ADD", Decimal("100.00"))
        deals.update("OpportunityLineItem", stepped_a, {"UnitPrice": "599.00"})
        await run_to_idle(env)
        # Day 9: the price goes up again.
        _advance(env, added_on + timedelta(days=1))
        deals.update("OpportunityLineItem", stepped_a, {"UnitPrice": "699.00"})
        await run_to_idle(env)

        # Day 15: the seat is removed again: {A} -> {A, B} -> {A}. On one deal only the line goes (its
        # Opportunity is read again for the line's change); on the other the Opportunity is edited too
        # (read by its own change, with the deleted line among its children).
        _advance(env, removed_on)
        for opp in (reverted, touched):
            deals._call("DELETE", f"/sobjects/OpportunityLineItem/{seats[opp]}")
        deals.update("Opportunity", touched, {"Description": "seat removed"})
        await run_to_idle(env)
        _advance(env, m2)
        await run_to_idle(env)
        await env.hub.aclose_systems()

    asyncio.run(scenario())

    first = span(49900, d0, m1 - timedelta(days=1))
    month = span(49900, m1, m2 - timedelta(days=1))
    seat_added = span(10000, added_on, m2 - timedelta(days=1))
    seat_removed = span(10000, added_on, removed_on)
    # The seat from the day it reached Lago, not from the deal's close date (nor its current period's start).
    assert fees_by_subscription(env, grown) == {grown_a: [first, month], seats[grown]: [seat_added]}
    # Added on the 8th, removed on the 15th: billed from the one to the other, both days included.
    assert fees_by_subscription(env, reverted) == {
        reverted_a: [first, month],
        seats[reverted]: [seat_removed],
    }
    assert fees_by_subscription(env, touched) == {touched_a: [first, month], seats[touched]: [seat_removed]}
    # 499 up to and including the day of the first change, 599 for the one day after, 699 from the next.
    assert fees_by_subscription(env, stepped) == {
        stepped_a: [
            first,
            span(49900, m1, added_on),
            span(59900, added_on + timedelta(days=1), added_on + timedelta(days=1)),
            span(69900, added_on + timedelta(days=2), m2 - timedelta(days=1)),
        ]
    }
    assert env.hub.store.dlq_list(ROUTE) == []


@pytest.mark.timeout(600)
def test_a_billed_deal_whose_lines_are_all_removed_ends_as_a_lost_deal(env: LeadToCash) -> None:
    """Every line item of a billed, still won deal deleted: its subscriptions end the day the change
    reaches Lago (billed up to and including it, the shipped policy ``on_reversal_subscriptions:
    immediately``), and its one-off invoice already issued is a "credit note is needed" dead letter naming
    it (``on_reversal_invoice: dead_letter``). A won deal that never had a line billed is a dead letter
    of its own ("no line items"), never silence. Before, the mapping dead-lettered the emptied deal and
    Lago went on billing its subscription."""
    deals = Deals(env)
    today = datetime.now(UTC).date()
    d0 = _first_of_next_month(_first_of_next_month(today)) + timedelta(days=3)
    m1 = _first_of_next_month(d0)
    m2 = _first_of_next_month(m1)
    change = m1 + timedelta(days=9)
    _advance(env, d0)
    emptied, [emptied_a] = deals.deal("Emptied", d0, [("PLAT-BASE", Decimal("499.00"))])
    with_invoice, [invoiced_a, onboarding] = deals.deal(
        "Emptied One-Off", d0, [("PLAT-BASE", Decimal("499.00")), ("ONB-STD", Decimal("2300.00"))]
    )
    bare, [bare_a] = deals.deal("Bare", d0, [("PLAT-BASE", Decimal("499.00"))])
    deals._call("DELETE", f"/sobjects/OpportunityLineItem/{bare_a}")  # won with no products at all

    async def scenario() -> None:
        for opp in (emptied, with_invoice, bare):
            deals.stage(opp, "Closed Won")
        await run_to_idle(env)
        _advance(env, m1)
        await run_to_idle(env)
        _advance(env, change)
        for line in (emptied_a, invoiced_a, onboarding):
            deals._call("DELETE", f"/sobjects/OpportunityLineItem/{line}")
        await run_to_idle(env)
        _advance(env, m2)
        await run_to_idle(env)
        await env.hub.aclose_systems()

    asyncio.run(scenario())

    first = span(49900, d0, m1 - timedelta(days=1))
    last_days = span(49900, m1, change)
    assert fees_by_subscription(env, emptied) == {emptied_a: [first, last_days]}
    assert fees_by_subscription(env, with_invoice) == {invoiced_a: [first, last_days]}
    assert fees_by_subscription(env, bare) == {}
    dead = {d.idempotency_key.split(":")[1]: d.error_message or "" for d in env.hub.store.dlq_list(ROUTE)}
    assert set(dead) == {with_invoice, bare}, dead
    [invoice] = [
        i
        for i in env.lago_invoices(detailed=True)
        if i["invoice_type"] == "one_off"
        and any(f"(order {with_invoice})" in str(f["description"]) for f in i["fees"])
    ]
    assert "credit note is needed" in dead[with_invoice] and invoice["number"] in dead[with_invoice]
    assert "every line item removed" in dead[with_invoice]
    assert "no line items" in dead[bare] and "nothing of it was billed" in dead[bare]
