"""A deal's whole life in billing, on the shipped routes, the Salesforce and Lago sandboxes over sockets and
the Lago billing clock: a price change after the first invoice, a deal lost or reopened after billing, a
deal that is never won, and an order whose recurring line has no Lago plan. Every subscription fee is
checked per billed span to the minor unit.

The proration rule checked (Lago's, calendar periods): a span of d days of a period of n days bills
round_half_up(amount_cents * d / n). A changed price ends the old subscription on the day the change
reaches Lago (billed up to and including that day) and starts the replacement the next day.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from lead2cash.demo.environment import LeadToCash

ROUTE = "won-opportunity-to-billing"
API = "/services/data/v62.0"


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _prorated(cents: int, start: date, end: date) -> int:
    """What Lago bills for [start, end] (both included) of one calendar month: exact, then half up."""
    days_in_month = calendar.monthrange(start.year, start.month)[1]
    days = (end - start).days + 1
    return int((Decimal(cents) * days / days_in_month).quantize(Decimal(1), ROUND_HALF_UP))


class Deals:
    """Salesforce as a salesperson changes it, over the REST API."""

    def __init__(self, env: LeadToCash) -> None:
        self.env = env

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.env._token()}"}
        r = self.env.request("salesforce", method, f"{API}{path}", json=body, headers=headers)
        return r.json() if r.content else None

    def create(self, sobject: str, values: dict[str, Any]) -> str:
        return str(self._call("POST", f"/sobjects/{sobject}", values)["id"])

    def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        self._call("PATCH", f"/sobjects/{sobject}/{record_id}", values)

    def query(self, soql: str) -> list[dict[str, Any]]:
        return self.env.soql(soql)

    def entry(self, product_code: str) -> dict[str, Any]:
        [entry] = self.query(
            "SELECT Id, Pricebook2Id FROM PricebookEntry WHERE CurrencyIsoCode = 'EUR' "
            f"AND ProductCode = '{product_code}'"
        )
        return entry

    def deal(self, name: str, close: date, lines: list[tuple[str, Decimal]]) -> tuple[str, list[str]]:
        """An open EUR deal of a new account, with (product code, unit price) lines."""
        account = self.create(
            "Account",
            {"Name": f"{name} GmbH", "BillingCity": "Berlin", "BillingCountry": "Germany",
             "BillingPostalCode": "10115", "CurrencyIsoCode": "EUR"},
        )  # fmt: skip
        entries = [self.entry(code) for code, _ in lines]
        opp = self.create(
            "Opportunity",
            {"Name": name, "AccountId": account, "StageName": "Prospecting", "CloseDate": close.isoformat(),
             "CurrencyIsoCode": "EUR", "Pricebook2Id": entries[0]["Pricebook2Id"]},
        )  # fmt: skip
        line_ids = [
            self.create(
                "OpportunityLineItem",
                {"OpportunityId": opp, "PricebookEntryId": e["Id"], "Quantity": 1, "UnitPrice": str(price)},
            )
            for e, (_, price) in zip(entries, lines, strict=True)
        ]
        return opp, line_ids

    def stage(self, opp: str, stage: str) -> None:
        self.update("Opportunity", opp, {"StageName": stage})


def _fees(env: LeadToCash, opp: str) -> list[tuple[date, date, int]]:
    """Every subscription fee Lago invoiced for the deal's subscriptions: (from, to, cents)."""
    out = []
    for invoice in env.lago_invoices(detailed=True):
        for fee in invoice.get("fees") or []:
            if str(fee.get("external_subscription_id") or "").startswith(f"{opp}:"):
                out.append((date.fromisoformat(fee["from_date"][:10]), date.fromisoformat(fee["to_date"][:10]),
                            int(fee["amount_cents"])))  # fmt: skip
    return sorted(out)


def _one_off_invoices(env: LeadToCash, opp: str) -> list[dict[str, Any]]:
    return [
        i
        for i in env.lago_invoices(detailed=True)
        if i["invoice_type"] == "one_off"
        and any(f"(order {opp})" in str(f["description"]) for f in i["fees"])
    ]


def _handled(env: LeadToCash, opp: str, status: str, versions: int = 1) -> bool:
    """The billing route has delivered (or dead-lettered) that many versions of the deal in this stage."""
    done = 0
    for message in env.hub.store.messages_for(ROUTE):
        payload = json.loads(message.payload)
        if payload["id"] == opp and payload["status"] == status and message.status in ("delivered", "dead"):
            done += 1
    return done >= versions


async def _until(check: Callable[[], bool], env: LeadToCash, timeout: float = 45.0) -> bool:
    """Poll until the check holds; False on time-out (the amounts checked afterwards say what is wrong)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await env.poll_now()
        await asyncio.sleep(0.3)
    return False


def _advance(env: LeadToCash, day: date) -> None:
    r = env.http["lago"].post(
        "/__sandbox/lago/clock", json={"to": f"{day.isoformat()}T09:00:00Z"}, timeout=120
    )
    r.raise_for_status()


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(tmp_path / "l2c", seed=21, seed_size=4, store_url=store_url)
    yield environment
    environment.close()


@pytest.mark.timeout(600)
def test_a_deals_life_in_billing_bills_each_day_once(env: LeadToCash) -> None:
    deals = Deals(env)
    today = datetime.now(UTC).date()
    d0 = _first_of_next_month(_first_of_next_month(today)) + timedelta(days=3)  # the 4th, ahead of today
    m1 = _first_of_next_month(d0)
    change = m1 + timedelta(
        days=7
    )  # the 8th: the day the price change, the loss and the reopening reach Lago
    m2 = _first_of_next_month(m1)
    _advance(env, d0)

    # A plan with no Lago plan behind it (NOPLAN__EUR): its deal must not be billed at all.
    product = deals.create(
        "Product2",
        {"Name": "Unplanned", "ProductCode": "NOPLAN", "Family": "Software", "IsActive": True,
         "Billing_Type__c": "Recurring", "Billing_Period__c": "Monthly"},
    )  # fmt: skip
    book = deals.entry("ONB-STD")["Pricebook2Id"]
    deals.create(
        "PricebookEntry",
        {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": "100.00", "IsActive": True,
         "UseStandardPrice": False, "CurrencyIsoCode": "EUR"},
    )  # fmt: skip

    repriced, [repriced_line] = deals.deal("Repriced", d0, [("PLAT-BASE", Decimal("499.00"))])
    lost, _ = deals.deal("Lost", d0, [("PLAT-BASE", Decimal("499.00")), ("ONB-STD", Decimal("2300.00"))])
    reopened, _ = deals.deal("Reopened", d0, [("PLAT-BASE", Decimal("499.00"))])
    never, _ = deals.deal("Never", d0, [("PLAT-BASE", Decimal("499.00"))])
    unmapped, _ = deals.deal("Unmapped", d0, [("ONB-STD", Decimal("2300.00")), ("NOPLAN", Decimal("100.00"))])
    never_account = deals.query(f"SELECT AccountId FROM Opportunity WHERE Id = '{never}'")[0]["AccountId"]

    waits: list[bool] = []

    async def scenario() -> None:
        await env.start()
        waits.append(await _until(lambda: _handled(env, never, "open"), env))  # read; nothing sent to Lago
        for opp in (repriced, lost, reopened, unmapped):
            deals.stage(opp, "Closed Won")
        waits.append(
            await _until(
                lambda: all(_handled(env, o, "won") for o in (repriced, lost, reopened, unmapped)), env
            )
        )
        assert await env.wait_settled(timeout=120)

        _advance(env, m1)
        assert await env.wait_settled(timeout=120)
        _advance(env, change)
        # The price goes from 499 to 599 after the first invoice; one deal is lost, one reopened, and the
        # deal never won is lost.
        deals.update("OpportunityLineItem", repriced_line, {"UnitPrice": "599.00"})
        deals.update("Opportunity", repriced, {"Description": "repriced"})  # roll-ups move no modstamp
        deals.stage(lost, "Closed Lost")
        deals.stage(reopened, "Negotiation/Review")
        deals.stage(never, "Closed Lost")
        done = await _until(
            lambda: (
                _handled(env, lost, "lost")
                and _handled(env, reopened, "open")
                and _handled(env, never, "lost")
                and _handled(env, repriced, "won", versions=2)
            ),
            env,
        )
        waits.append(done)
        assert await env.wait_settled(timeout=120)
        _advance(env, m2)
        assert await env.wait_settled(timeout=120)
        await env.stop()

    asyncio.run(scenario())

    # 1. The new price from the day after the change reached Lago; no day billed twice.
    assert _fees(env, repriced) == [
        (d0, m1 - timedelta(days=1), _prorated(49900, d0, m1 - timedelta(days=1))),
        (m1, change, _prorated(49900, m1, change)),
        (change + timedelta(days=1), m2 - timedelta(days=1), _prorated(59900, change + timedelta(days=1), m2 - timedelta(days=1))),
    ]  # fmt: skip

    # 2. Lost and reopened deals stop being billed the day the change reached Lago; the lost deal's issued
    #    one-off invoice is a "credit note needed" dead letter naming it (the default policy).
    first_period = (d0, m1 - timedelta(days=1), _prorated(49900, d0, m1 - timedelta(days=1)))
    last_days = (m1, change, _prorated(49900, m1, change))
    assert _fees(env, lost) == [first_period, last_days]
    assert _fees(env, reopened) == [first_period, last_days]
    [invoice] = _one_off_invoices(env, lost)
    dead = {d.idempotency_key.split(":")[1]: d for d in env.hub.store.dlq_list(ROUTE)}
    assert "credit note is needed" in dead[lost].error_message
    assert invoice["number"] in dead[lost].error_message
    assert reopened not in dead and repriced not in dead and never not in dead
    # A deal never won costs no Lago customer, open or lost.
    assert never_account not in env.effects("lago").get("customer.create", {})

    # Every change reached the billing route (each stage change is a new version of the order).
    assert all(waits), waits

    # 4. An order whose recurring line has no Lago plan is billed not at all: no one-off invoice was
    #    issued (nor posted, nor written back), and the dead letter says which plan is missing.
    assert _one_off_invoices(env, unmapped) == []
    assert "plan NOPLAN__EUR" in dead[unmapped].error_message
    [shown] = deals.query(f"SELECT Billing_Invoice_Number__c FROM Opportunity WHERE Id = '{unmapped}'")
    assert not shown["Billing_Invoice_Number__c"]
    assert set(dead) == {lost, unmapped}
