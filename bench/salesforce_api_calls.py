"""Salesforce API calls per 1,000 opportunities synchronized (read + write-back), against the sandbox.

    .venv/bin/python bench/salesforce_api_calls.py [--opportunities 10000] [--trickle-rounds 20] [--trickle-size 5]

Backfill: ``--opportunities`` won deals are read through the Opportunity source (keyset pages of 2,000 with
Account and line items in the same query) and each gets its invoice state written back through the
``writeback`` target, delivered concurrently the way the router does (200 in flight), which the target
coalesces into sObject Collections of 200. Trickle: ``--trickle-size`` deals are won per poll; each poll
reads them and writes them back. Calls are counted by the sandbox (every REST call against the allocation,
including the server-clock probe and ``/limits``). Target: <= 10 calls per 1,000 for the backfill.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from lead2cash.adapters.salesforce import opportunity
from lead2cash.canonical_model import Customer, Invoice, InvoiceLine, Order
from lead2cash.config.salesforce import SalesforceSystemConfig
from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.sandbox.server import SandboxCluster
from lead2cash.systems import BindingContext
from lead2cash.systems.salesforce.binding import build


def _invoice(order: Order, n: int) -> Invoice:
    return Invoice.build(
        id=f"inv-{n}",
        refs={"salesforce": order.id, "sap": f"51{n:08d}"},
        invoice_number=f"INV-{n:07d}",
        customer=Customer(id=order.customer.id, name=order.customer.name),
        currency=order.currency,
        status="finalized",
        issue_date=dt.date(2025, 1, 1),
        lines=[InvoiceLine(id="l1", description="deal", net_amount=order.total)],
    )


async def _sync(
    source: Any, target: Any, checkpoint: str | None, start: int, seen: set[str]
) -> tuple[int, str | None]:
    """Read everything new, then write each new order's invoice state back (200 in flight).

    The write-back moves the Opportunity's SystemModstamp, so the next poll reads those records again
    (their content, hence their key, is unchanged): ``seen`` plays the router's idempotent consumer."""
    orders: list[Order] = []
    more = True
    while more:
        batch = await source.read(checkpoint, 2000)
        checkpoint, more = batch.checkpoint, batch.more
        for record in batch.records:
            order = opportunity(record, {})
            key = f"{order.id}:{order.version}"
            if key not in seen:
                seen.add(key)
                orders.append(order)
    gate = asyncio.Semaphore(200)

    async def one(i: int, order: Order) -> None:
        async with gate:
            await target.deliver(_invoice(order, start + i), f"k{start + i}")

    await asyncio.gather(*(one(i, o) for i, o in enumerate(orders)))
    return len(orders), checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=10000)
    parser.add_argument("--trickle-rounds", type=int, default=20)
    parser.add_argument("--trickle-size", type=int, default=5)
    args = parser.parse_args()

    # Seeded deals: a tenth won, eight tenths open. Win enough open ones for the backfill, keep some open.
    seed_size = int(args.opportunities * 1.25) + args.trickle_rounds * args.trickle_size * 2
    started = time.perf_counter()
    sandbox = SalesforceSandbox(seed=3, seed_size=seed_size)
    cluster = SandboxCluster(systems=[sandbox], state_dir=Path(tempfile.mkdtemp()))
    cluster.start_in_thread()
    base = cluster.base_url("salesforce")
    http = httpx.Client(
        base_url=base, verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)), timeout=120
    )
    offset = 0.0

    def advance(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        http.put("/__sandbox/salesforce/clock", json={"offset_seconds": offset}).raise_for_status()

    def used() -> int:
        return int(http.get("/__sandbox/salesforce/limits").json()["used"])

    seeded_won = sum(1 for r in sandbox.store.tables["Opportunity"].values() if r["IsWon"])
    http.post(
        "/__sandbox/salesforce/close-won", json={"count": max(0, args.opportunities - seeded_won)}
    ).raise_for_status()
    advance(120)
    cfg = sandbox.hub_config(base)
    cfg.pop("ca_note", None)
    cfg.update(ca_bundle=str(cluster.ca_bundle), safety_lag=0, sweep_interval=None, page_size=2000)
    binding = build("sf", SalesforceSystemConfig.model_validate(cfg), BindingContext(None, {}, Path(".")))
    source = binding.source("Opportunity", {})
    target = binding.target("writeback", {})
    print(f"sandbox ready in {time.perf_counter() - started:.1f}s ({seed_size} seeded opportunities)")

    seen: set[str] = set()
    before = used()
    t0 = time.perf_counter()
    count, checkpoint = asyncio.run(_sync(source, target, None, 0, seen))
    elapsed = time.perf_counter() - t0
    backfill_calls = used() - before
    advance(61)
    # The next poll re-reads the records the write-back touched; it belongs to the backfill's bill.
    echo, checkpoint = asyncio.run(_sync(source, target, checkpoint, 0, seen))
    assert echo == 0
    total_calls = used() - before
    print(
        f"backfill: {count} opportunities read + written back with {backfill_calls} API calls in "
        f"{elapsed:.1f}s; with the next poll re-reading the write-back's echo: {total_calls} calls"
        f" -> {total_calls / count * 1000:.1f} calls per 1,000 (target <= 10)"
    )

    before = used()
    synced = 0
    for r in range(args.trickle_rounds):
        http.post("/__sandbox/salesforce/close-won", json={"count": args.trickle_size}).raise_for_status()
        advance(61)  # the server-clock probe has minute granularity
        n, checkpoint = asyncio.run(_sync(source, target, checkpoint, 1_000_000 + r * 1000, seen))
        synced += n
    trickle_calls = used() - before
    print(
        f"trickle: {synced} opportunities in {args.trickle_rounds} polls of {args.trickle_size} with "
        f"{trickle_calls} API calls -> {trickle_calls / max(synced, 1) * 1000:.0f} calls per 1,000 "
        f"({trickle_calls / args.trickle_rounds:.1f} per poll)"
    )
    binding.close()
    http.close()
    cluster.stop()


if __name__ == "__main__":
    main()
