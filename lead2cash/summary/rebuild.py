"""``lead2cash summary rebuild``: every summary computed again from the systems of record (Lago's
customers, subscriptions, invoices with their fees, and each subscription's ``current_usage``) and compared
with the one the keeper maintains."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from lead2cash.summary.model import (
    MONEY_FIELDS,
    BillingSummary,
    InvoiceFacts,
    Period,
    compose,
    first_period,
    invoice_facts,
)


async def recompute_customer(client: Any, customer: str) -> list[BillingSummary]:
    subs = [
        s
        async for s in client.pages(
            "/subscriptions", "subscriptions.list", "subscriptions", {"external_customer_id": customer}
        )
    ]
    periods = [p for s in subs if (p := Period.from_lago(s)) is not None]
    listed = [
        i
        async for i in client.pages(
            "/invoices", "invoices.list", "invoices", {"external_customer_id": customer}
        )
    ]
    invoices: list[InvoiceFacts] = []
    for item in listed:
        if item.get("status") == "draft":
            continue
        whole = await client.request("GET", f"/invoices/{item['lago_id']}", "invoices.get")
        invoices.append(invoice_facts(whole))
    accrued: dict[str, int] = {}
    for p in periods:
        data = await client.request(
            "GET",
            f"/customers/{customer}/current_usage",
            "customers.current_usage",
            params={"external_subscription_id": p.subscription, "apply_taxes": "false"},
        )
        usage = data["customer_usage"]
        accrued[p.currency] = accrued.get(p.currency, 0) + int(usage["amount_cents"])
    currencies = {i.currency for i in invoices} | {p.currency for p in periods}
    return [
        compose(customer, c, first_period(periods, c), invoices, accrued.get(c, 0))
        for c in sorted(x for x in currencies if x)
    ]


async def recompute_all(
    client: Any, customers: Sequence[str] | None = None, concurrency: int = 16
) -> list[BillingSummary]:
    if customers is None:
        customers = [
            str(c["external_id"]) async for c in client.pages("/customers", "customers.list", "customers")
        ]
    sem = asyncio.Semaphore(concurrency)

    async def one(customer: str) -> list[BillingSummary]:
        async with sem:
            return await recompute_customer(client, customer)

    out: list[BillingSummary] = []
    for summaries in await asyncio.gather(*(one(c) for c in customers)):
        out.extend(summaries)
    return out


def compare(
    incremental: Sequence[BillingSummary], batch: Sequence[BillingSummary]
) -> dict[tuple[str, str], dict[str, tuple[Any, Any]]]:
    """(customer, currency) -> field -> (incremental, batch), for every summary that differs (a summary
    on one side only differs in every field)."""
    mine = {(s.customer, s.currency): s for s in incremental}
    theirs = {(s.customer, s.currency): s for s in batch}
    out: dict[tuple[str, str], dict[str, tuple[Any, Any]]] = {}
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if a is None or b is None:
            present = a or b
            assert present is not None
            if _empty(present):
                continue  # nothing billed and nothing accrued: the same as no summary
            out[key] = {"summary": (a is not None, b is not None)}
        elif diff := a.differences(b):
            out[key] = diff
    return out


def _empty(s: BillingSummary) -> bool:
    return s.last_invoice_id is None and not any(s.as_dict()[f] for f in MONEY_FIELDS)
