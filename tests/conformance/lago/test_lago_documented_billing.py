"""The Lago sandbox bills the way Lago's own guide says, where the hub's exactly-once rests on it.

guide/subscriptions/assign-plan.mdx (getlago/lago-doc), "Subscription start date", tab "Start date in the
past": "If the start date of the subscription is in the past, the subscription is considered active.
Lago will not generate any invoices for past periods already completed." and, for a subscription fee paid
in arrears, "it will be included in the next invoice" (the current period's). The sandbox's plans are all
paid in arrears.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from lead2cash.sandbox.lago import LagoSandbox, plan_code_for

CLOCK_START = datetime.fromisoformat("2026-01-01T09:00:00+00:00")


@pytest.fixture(scope="module")
def lago(start_sandboxes: Any) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    sandbox = LagoSandbox(seed=3, seed_size=0, clock_start=CLOCK_START)
    cluster = start_sandboxes(sandbox)
    tls = ssl.create_default_context(cafile=str(cluster.ca_bundle))
    base = cluster.base_url("lago")
    api = httpx.Client(
        base_url=f"{base}/api/v1", verify=tls, headers={"Authorization": f"Bearer {sandbox.api_key}"}
    )
    admin = httpx.Client(base_url=f"{base}/__sandbox", verify=tls, timeout=30)
    yield api, admin
    api.close()
    admin.close()


def _subscribe(api: httpx.Client, billing_time: str, start: str) -> tuple[str, str]:
    customer = f"doc-{uuid.uuid4().hex[:8]}"
    r = api.post("/customers", json={"customer": {"external_id": customer, "name": "Doc", "currency": "EUR"}})
    assert r.status_code == 200, r.text
    body = {"external_customer_id": customer, "plan_code": plan_code_for("PLAT-BASE", "EUR"),
            "external_id": f"{customer}-sub", "billing_time": billing_time, "subscription_at": start}  # fmt: skip
    created = api.post("/subscriptions", json={"subscription": body})
    assert created.status_code == 200, created.text
    assert created.json()["subscription"]["status"] == "active"  # "considered active"
    return customer, f"{customer}-sub"


def _periods(api: httpx.Client, customer: str) -> list[tuple[str, str, int]]:
    invoices = api.get("/invoices", params={"external_customer_id": customer}).json()["invoices"]
    out = []
    for listed in invoices:
        invoice = api.get(f"/invoices/{listed['lago_id']}").json()["invoice"]
        for fee in invoice["fees"]:
            out.append((fee["from_date"][:10], fee["to_date"][:10], fee["amount_cents"]))
    return sorted(out)


def test_a_backdated_subscription_bills_no_completed_past_period(lago: Any) -> None:
    """Started 2025-11-10 (calendar) and 2025-10-15 (anniversary) on 2026-01-01: November, December and
    the completed anniversary periods are never invoiced; the current period is, at its end, in full."""
    api, admin = lago
    calendar_customer, _ = _subscribe(api, "calendar", "2025-11-10T00:00:00Z")
    anniversary_customer, _ = _subscribe(api, "anniversary", "2025-10-15T00:00:00Z")
    assert _periods(api, calendar_customer) == [] and _periods(api, anniversary_customer) == []

    admin.post("/lago/clock", json={"to": "2026-01-15"}).raise_for_status()
    assert _periods(api, calendar_customer) == []
    # The anniversary period running on the creation day (Dec 15 - Jan 14) is the first one billed.
    assert _periods(api, anniversary_customer) == [("2025-12-15", "2026-01-14", 45900)]

    admin.post("/lago/clock", json={"to": "2026-02-01"}).raise_for_status()
    assert _periods(api, calendar_customer) == [("2026-01-01", "2026-01-31", 45900)]
