"""The near-real-time billing summary: latency from a usage event published to the summary updated and to
the Salesforce Account updated, and the batch recompute beside the incremental upkeep. One run.

    .venv/bin/python bench/billing_summary.py [--probes 200] [--load 200] [--interval 2] [--rebuild 2000]

1. Latency. The Lago and Salesforce sandboxes run in this process (a thread, HTTPS on loopback), a private
   ``nats-server -js``, the hub as ``lead2cash run`` (SQLite): the usage routes, the invoice route and the
   billing summary writing Accounts at most once per ``--interval`` per customer. While ``--load`` call
   records per second go to the busy customers, 10 probe customers publish one call record at a time
   (``--probes`` in all): the time from the publish (acknowledged by JetStream) to the summary row showing
   the event (its ``updated_at_ms``) and to the Account showing it (polled every 10 ms), p50/p95/p99. The
   busy Accounts' writes are sampled too: the shortest gap between two writes of one Account.
2. Batch recompute. A Lago sandbox holding ``--rebuild`` customers (a subscription, usage, a one-off invoice
   each) is recomputed as ``summary rebuild`` does (API calls over HTTPS, 16 at a time): seconds, API
   calls per customer, and the time for 100,000 customers at that rate.
3. Incremental upkeep. ``SummaryState.apply`` for 100,000 customers' events in batches of 1,000 on a
   fresh SQLite store: the hub's cost per event of keeping the summaries current.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx

from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.sandbox.server import SandboxCluster
from lead2cash.testing import summary_scenario
from lead2cash.testing import usage_scenario as scenario
from lead2cash.testing.nats_server import NatsServer

ROOT = Path(__file__).resolve().parent.parent
PROBES = 10


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def cents(seconds: int) -> int:
    return int((Decimal(seconds) * scenario.CALL_SECOND_PRICE * 100).quantize(Decimal(1), ROUND_HALF_UP))


def cdr(customer: int, call: str, at: datetime, seconds: int) -> bytes:
    return json.dumps(
        {
            "switch": "bench-1",
            "call_id": call,
            "answered_at": at.isoformat(),
            "duration_s": seconds,
            "callee": "+4930123456",
            "subscriber": {"customer": f"usage-cust-{customer}", "subscription": f"usage-sub-{customer}"},
        }
    ).encode()


# ------------------------------------------------------------------------------------------- latency
def latency(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    lago_sb, sf_sb = LagoSandbox(seed=9, seed_size=0), SalesforceSandbox(seed=9, seed_size=0)
    cluster = SandboxCluster(systems=[lago_sb, sf_sb], state_dir=work / "sandboxes")
    cluster.start_in_thread()
    nats = NatsServer(work / "nats")
    nats.start()
    hub: subprocess.Popen[bytes] | None = None
    try:
        lago = httpx.Client(
            base_url=cluster.base_url("lago"),
            verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
            headers={"Authorization": f"Bearer {lago_sb.api_key}"},
            timeout=30,
        )
        period = scenario.set_up_lago(lago, args.customers)
        accounts = {
            i: sf_sb.store.create(
                "Account", {"Name": f"Customer {i}", "Lead2Cash_Key__c": f"usage-cust-{i}"}, datetime.now(UTC)
            )
            for i in range(args.customers)
        }
        asyncio.run(scenario.publish(nats.url, []))  # the stream
        port = summary_scenario.free_port()
        state = work / "hub.db"
        cfg = summary_scenario.hub_config(
            f"sqlite:///{state}", nats.url, cluster.hub_config(), work / "out", port, args.interval
        )
        cfg["logging"]["level"] = "WARNING"
        config = work / "summary.json"
        config.write_text(json.dumps(cfg))
        with (work / "hub.log").open("ab") as log:
            hub = subprocess.Popen(
                [sys.executable, "-m", "lead2cash.cli", "run", str(config)], stdout=log, stderr=log, cwd=ROOT
            )
        admin = f"http://127.0.0.1:{port}/health"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(admin, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        return asyncio.run(_probe(args, period, nats.url, state, sf_sb, accounts))
    finally:
        if hub is not None and hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(timeout=20)
            except subprocess.TimeoutExpired:
                hub.kill()
        nats.stop()
        cluster.stop()


async def _probe(
    args: argparse.Namespace, period: date, nats_url: str, state: Path, sf: Any, accounts: dict[int, str]
) -> dict[str, Any]:
    import nats as nats_py

    nc = await nats_py.connect(servers=[nats_url])
    js = nc.jetstream()
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
    t0 = datetime.combine(period, datetime.min.time(), UTC) + timedelta(hours=2)
    to_summary: list[float] = []
    to_sf: list[float] = []
    stop = asyncio.Event()
    writes: dict[int, list[float]] = {i: [] for i in range(PROBES, args.customers)}
    rng = random.Random(3)

    async def load() -> None:
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            customer = rng.randrange(PROBES, args.customers)
            await js.publish(
                "usage.cdr", cdr(customer, f"load-{n}", t0 + timedelta(seconds=n), rng.randint(1, 600))
            )
            n += 1
            ahead = n / args.load - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def sample_writes() -> None:
        last: dict[int, Any] = {}
        while not stop.is_set():
            now = time.monotonic()
            for i in writes:
                stamp = (sf.store.get(accounts[i]) or {}).get("Billing_Summary_Updated__c")
                if stamp is not None and stamp != last.get(i):
                    if i in last:
                        writes[i].append(now)
                    last[i] = stamp
            await asyncio.sleep(0.02)

    def summary_usage(customer: int) -> tuple[int, int] | None:
        row = db.execute(
            "SELECT doc, updated_at_ms FROM billing_summaries WHERE customer = ?", (f"usage-cust-{customer}",)
        ).fetchone()
        return None if row is None else (json.loads(row[0])["usage_charges"], int(row[1]))

    async def probe(customer: int, count: int) -> None:
        seconds = 0
        for k in range(count):
            d = rng.randint(1, 600)
            seconds += d
            want = cents(seconds)
            published = time.time()
            await js.publish(
                "usage.cdr",
                cdr(customer, f"probe-{customer}-{k}", t0 + timedelta(minutes=k, seconds=customer), d),
            )
            got_summary = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if not got_summary:
                    seen = summary_usage(customer)
                    if seen is not None and seen[0] == want:
                        to_summary.append(max(0.0, seen[1] / 1000 - published))
                        got_summary = True
                if got_summary:
                    account = sf.store.get(accounts[customer]) or {}
                    if account.get("Billing_Usage_Charges__c") == Decimal(want) / 100:
                        to_sf.append(time.time() - published)
                        break
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.random() * 0.5)

    background = [asyncio.create_task(load()), asyncio.create_task(sample_writes())]
    await asyncio.sleep(2)
    started = time.monotonic()
    await asyncio.gather(*(probe(c, args.probes // PROBES) for c in range(PROBES)))
    window = time.monotonic() - started
    stop.set()
    await asyncio.gather(*background)
    await nc.close()
    db.close()
    gaps = [b - a for ts in writes.values() for a, b in itertools.pairwise(ts)]
    return {
        "probes": len(to_summary),
        "summary": to_summary,
        "salesforce": to_sf,
        "window_s": window,
        "busy_writes": sum(len(v) for v in writes.values()),
        "busy_accounts": len(writes),
        "min_gap_s": min(gaps) if gaps else None,
    }


# ------------------------------------------------------------------------------------------- rebuild
def rebuild(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from lead2cash.connectors.lago import LagoClient
    from lead2cash.summary.rebuild import recompute_all

    sandbox = LagoSandbox(seed=5, seed_size=0)
    cluster = SandboxCluster(systems=[sandbox], state_dir=work / "rebuild-sandbox")
    cluster.start_in_thread()
    try:
        lago = httpx.Client(
            base_url=cluster.base_url("lago"),
            verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
            headers={"Authorization": f"Bearer {sandbox.api_key}"},
            timeout=30,
        )
        period = scenario.set_up_lago(lago, 1)
        store = sandbox.store
        store.add_add_on("SETUP", "Setup", 15000, "EUR")
        t0 = datetime.combine(period, datetime.min.time(), UTC) + timedelta(hours=1)
        for i in range(1, args.rebuild):
            c = f"usage-cust-{i}"
            store.upsert_customer({"external_id": c, "name": c, "country": "DE", "currency": "EUR"})
            store.create_subscription({"external_customer_id": c, "plan_code": "METERED__EUR", "external_id":
                                       f"usage-sub-{i}", "billing_time": "calendar",
                                       "subscription_at": f"{period}T00:00:00Z"})  # fmt: skip
            for k in range(3):
                store.usage.ingest({"transaction_id": f"r{i}-{k}", "external_subscription_id": f"usage-sub-{i}",
                                    "code": "call_seconds", "timestamp": int((t0 + timedelta(seconds=k)).timestamp()),
                                    "properties": {"seconds": 60 * (k + 1)}})  # fmt: skip
            store.create_one_off_invoice({"external_customer_id": c, "fees": [{"add_on_code": "SETUP"}]})
        cfg = cluster.hub_config()["lago"]
        client = LagoClient(cfg["base_url"], cfg["api_key"], ca_bundle=cfg["ca_bundle"])

        async def run() -> tuple[int, float]:
            started = time.perf_counter()
            summaries = await recompute_all(client, None, concurrency=16)
            took = time.perf_counter() - started
            await client.aclose()
            return len(summaries), took

        n, took = asyncio.run(run())
        return {"customers": n, "seconds": took, "calls_per_customer": client.calls / max(n, 1)}
    finally:
        cluster.stop()


# ------------------------------------------------------------------------------------------- upkeep
def upkeep(customers: int, work: Path) -> dict[str, Any]:
    from lead2cash.store import Store
    from lead2cash.summary.model import ChargeDef, Period
    from lead2cash.summary.state import SummaryState, UsageItem

    store = Store(f"sqlite:///{work / 'upkeep.db'}")
    state = SummaryState(store)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    charge = ChargeDef("call_seconds", "sum_agg", "seconds", "standard", {"amount": "0.002"})
    periods = {
        f"c{i}": [Period(f"s{i}", f"c{i}", "EUR", "P", start, datetime(2026, 2, 1, tzinfo=UTC))]
        for i in range(customers)
    }
    charges = {f"s{i}": {"call_seconds": charge} for i in range(customers)}
    events = customers
    started = time.perf_counter()
    cpu = time.process_time()
    for b in range(0, events, 1000):
        items = [
            UsageItem(
                f"c{i}",
                f"s{i}",
                "call_seconds",
                start.isoformat(),
                start.isoformat(),
                {"seconds": 61},
                charge,
            )
            for i in range(b, min(events, b + 1000))
        ]
        state.apply(
            "bench", b + len(items), items, [], {u.customer: periods[u.customer] for u in items}, charges
        )
    took = time.perf_counter() - started
    cpu = time.process_time() - cpu
    # The same customers again: each event now updates a stored aggregate.
    again = time.perf_counter()
    for b in range(0, min(events, 20_000), 1000):
        items = [
            UsageItem(
                f"c{i}", f"s{i}", "call_seconds", start.isoformat(), start.isoformat(), {"seconds": 7}, charge
            )
            for i in range(b, b + 1000)
        ]
        state.apply("bench", events + b, items, [], {u.customer: periods[u.customer] for u in items}, charges)
    again_took = time.perf_counter() - again
    # A busier mix: each batch of 1,000 events holds 10 events of each of 100 customers.
    busy = time.perf_counter()
    for b in range(20):
        items = [
            UsageItem(
                f"c{i}", f"s{i}", "call_seconds", start.isoformat(), start.isoformat(), {"seconds": 3}, charge
            )
            for i in range(b * 100, b * 100 + 100)
            for _ in range(10)
        ]
        seq = events + 20_000 + b * 1000
        state.apply("bench", seq, items, [], {u.customer: periods[u.customer] for u in items}, charges)
    busy_took = time.perf_counter() - busy
    store.close()
    return {
        "events": events,
        "seconds": took,
        "cpu_s": cpu,
        "ms_per_event": took / events * 1000,
        "update_ms_per_event": again_took / min(events, 20_000) * 1000,
        "busy_ms_per_event": busy_took / 20_000 * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=40, help="latency run: 10 probes + busy ones")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--load", type=float, default=200.0, help="call records per second to the busy ones")
    parser.add_argument("--interval", type=float, default=2.0, help="Salesforce write interval per customer")
    parser.add_argument("--rebuild", type=int, default=2000, help="customers recomputed in the batch run")
    parser.add_argument("--upkeep", type=int, default=100_000, help="customers of the incremental upkeep")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: latency,rebuild,upkeep")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="l2c-summary-bench-") as tmp:
        work = Path(tmp)
        print(f"billing summary bench, {os.cpu_count()} cores")
        if "latency" not in skip:
            r = latency(args, work)
            print(f"\nlatency: {r['probes']} probes over {r['window_s']:.0f} s, {args.load:.0f} records/s to "
                  f"{r['busy_accounts']} busy customers, Salesforce interval {args.interval:g} s")  # fmt: skip
            for name in ("summary", "salesforce"):
                v = r[name]
                if v:
                    print(f"  -> {name:10} p50 {pct(v, 50):6.3f} s  p95 {pct(v, 95):6.3f} s  p99 {pct(v, 99):6.3f} s"
                          f"  max {max(v):6.3f} s  (n={len(v)}, mean {statistics.mean(v):.3f})")  # fmt: skip
            gap = r["min_gap_s"]
            print(f"  busy Accounts: {r['busy_writes']} writes sampled, shortest gap between two writes of one "
                  f"Account {gap if gap is None else round(gap, 3)} s")  # fmt: skip
        if "rebuild" not in skip:
            b = rebuild(args, work)
            per = b["seconds"] / b["customers"]
            print(f"\nbatch recompute: {b['customers']} customers in {b['seconds']:.1f} s "
                  f"({per * 1000:.1f} ms and {b['calls_per_customer']:.1f} API calls per customer); "
                  f"100,000 customers: {per * 100_000 / 60:.0f} min")  # fmt: skip
        if "upkeep" not in skip:
            u = upkeep(args.upkeep, work)
            print(f"\nincremental upkeep: {u['events']} events for as many customers applied in "
                  f"{u['seconds']:.1f} s ({u['ms_per_event']:.3f} ms per event, first event of a customer; "
                  f"{u['update_ms_per_event']:.3f} ms per later event; {u['busy_ms_per_event']:.3f} ms per event "
                  "when a batch of 1,000 holds 10 events of each of 100 customers)")  # fmt: skip


if __name__ == "__main__":
    main()
