"""The new engine's side of a parallel run: what Lago billed, read over its API and flattened per fee into
the reconciliation's line shape (``billing.LINES``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl

from lead2cash.canonical_model import MINOR_UNITS
from lead2cash.migration.ids import contract_of
from lead2cash.reconcile.billing import LINES


def months_around(cycle: str, before: int = 1, after: int = 1) -> list[str]:
    """``2026-01`` -> ``[2025-12, 2026-01, 2026-02]``: the cycles each side brings for the timing match."""
    year, month = (int(x) for x in cycle.split("-"))
    out = []
    for delta in range(-before, after + 1):
        m = year * 12 + month - 1 + delta
        out.append(f"{m // 12:04d}-{m % 12 + 1:02d}")
    return out


def _minor(amount: Any, currency: str) -> int:
    return int(Decimal(str(amount)).scaleb(MINOR_UNITS[currency]).to_integral_value())


def _date(ts: str) -> dt.date:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).date()


def invoice_lines(invoices: list[dict[str, Any]]) -> pl.DataFrame:
    """Subscription fees of Lago invoices as lines; the cycle is the calendar month of the issuing date."""
    rows = []
    for inv in invoices:
        issued = dt.date.fromisoformat(inv["issuing_date"])
        for fee in inv.get("fees") or []:
            item = fee.get("item") or {}
            if item.get("type") != "subscription" or not fee.get("external_subscription_id"):
                continue
            cur = fee["amount_currency"]
            start = _date(fee["from_date"])
            end = _date(fee["to_date"]) + dt.timedelta(days=1)  # Lago's to_date is the period's last second
            rows.append(
                {
                    "invoice_id": inv.get("number") or inv["lago_id"],
                    "customer_id": fee["external_customer_id"],
                    "contract_id": contract_of(
                        fee["external_subscription_id"]
                    ),  # <contract>~N after a re-cutover
                    "segment": None,
                    "plan": str(item["code"]).split("__")[0],
                    "currency": cur,
                    "period_start": start,
                    "period_end": end,
                    "bill_date": issued,
                    "cycle": issued.strftime("%Y-%m"),
                    "quantity": int(Decimal(str(fee["units"]))),
                    "unit_price": _minor(fee["precise_unit_amount"], cur),
                    "amount": int(fee["amount_cents"]),
                    "tax_rate_bp": int((Decimal(str(fee["taxes_rate"])) * 100).to_integral_value()),
                    "tax": int(fee["taxes_amount_cents"]),
                    "days": (end - start).days,
                    "full_days": None,
                }
            )
    return pl.DataFrame(rows, schema=LINES)


async def fetch(client: Any, cycle: str, concurrency: int = 16) -> pl.DataFrame:
    """Lago's subscription invoices issued in ``cycle`` and the months around it, as lines."""
    cycles = months_around(cycle)
    first = dt.date.fromisoformat(cycles[0] + "-01")
    y, m = (int(x) for x in cycles[-1].split("-"))
    last = dt.date(y + (m == 12), 1 if m == 12 else m + 1, 1) - dt.timedelta(days=1)
    return await fetch_issued(client, first, last, concurrency=concurrency)


# A fee is created by the billing run of its invoice; with an invoice grace period the invoice is issued
# up to that many days later. The fee listing is read from this long before the first issuing date, and an
# invoice whose fees were not found there is read whole, so the margin only ever costs calls.
FEE_CREATION_MARGIN = dt.timedelta(days=31)


async def fetch_issued(
    client: Any, first: dt.date, last: dt.date | None = None, concurrency: int = 16
) -> pl.DataFrame:
    """Lago's finalized subscription invoices issued from ``first`` to ``last`` (inclusive), as lines.

    Two listings, 100 a page: ``GET /invoices`` (issuing dates, ``invoice_type=subscription``) for the
    invoices, and ``GET /fees`` (``fee_type=subscription``, creation time) for their fees, which the invoice
    listing does not carry (``InvoiceObject`` has no ``fees``): two calls per 100 invoices instead of one per
    invoice."""
    params: dict[str, Any] = {"issuing_date_from": first.isoformat(), "invoice_type": "subscription"}
    if last is not None:
        params["issuing_date_to"] = last.isoformat()
    invoices = {
        inv["lago_id"]: dict(inv)
        async for inv in client.pages("/invoices", "invoices.list", "invoices", params)
        if inv.get("invoice_type") == "subscription" and inv.get("status") == "finalized"
    }
    if not invoices:
        return invoice_lines([])
    since = dt.datetime.combine(first, dt.time(), dt.UTC) - FEE_CREATION_MARGIN
    fee_params: dict[str, Any] = {
        "fee_type": "subscription",
        "created_at_from": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if last is not None:  # an invoice's fees are never created after it was issued
        until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
        fee_params["created_at_to"] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    joined = await with_fees(client, invoices, fee_params, concurrency=concurrency)
    return invoice_lines(joined)


async def with_fees(
    client: Any,
    invoices: dict[str, dict[str, Any]],
    fee_params: dict[str, Any],
    *,
    complete: Callable[[dict[str, Any]], bool] | None = None,
    concurrency: int = 16,
) -> list[dict[str, Any]]:
    """``invoices`` (from ``GET /invoices``, by ``lago_id``) with their ``fees``, which that listing does not
    carry: read from the paged ``GET /fees`` (``fee_params`` its filters) and joined on ``lago_invoice_id``,
    two calls per 100 invoices instead of one per invoice. An invoice ``complete`` refuses (by default: one
    with no fee in the listing) is read whole with ``GET /invoices/{id}``, at most ``concurrency`` at once.

    A fee listed twice (the listing moved between two pages) is joined once."""
    if not invoices:
        return []
    seen: set[str] = set()
    for inv in invoices.values():
        inv["fees"] = []
    async for fee in client.pages("/fees", "fees.list", "fees", fee_params):
        inv = invoices.get(fee.get("lago_invoice_id") or "")
        if inv is not None and fee["lago_id"] not in seen:
            seen.add(fee["lago_id"])
            inv["fees"].append(fee)
    accept = complete or (lambda inv: bool(inv["fees"]))
    missing = [i for i, inv in invoices.items() if not accept(inv)]
    gate = asyncio.Semaphore(concurrency)

    async def one(lago_id: str) -> None:
        async with gate:
            invoices[lago_id] = dict(await client.get_invoice(lago_id))

    await asyncio.gather(*(one(i) for i in missing))
    return list(invoices.values())
