"""Lead-to-cash end to end: backfill throughput, trickle latency, and the ratio to a hand-written ceiling.

    .venv/bin/python bench/lead_to_cash.py [--size small|large] [--sandboxes process|thread] [--repeats N]
                                           [--trickle-seconds T] [--safety-lag 1s] [--profile FILE]
                                           [--latency-ms MS] [--store sqlite|postgresql]
    .venv/bin/python bench/lead_to_cash.py --matrix [--deals 300] [--repeats 1] [--matrix-workers 1,2,4]
                                           [--matrix-latencies 0,50,150] [--matrix-stores sqlite,postgresql]

small: a 1,000-deal backfill (3 repeats) and a 60 s trickle, a few minutes; large: the issue's 10,000 deals
(1 repeat) and a 300 s trickle. Figures are medians over the repeats.

1. Backfill. The Salesforce sandbox is seeded, and open deals are closed as won until N are won; then the
   hub starts on the shipped routes (config/lead-to-cash.yaml) and runs until settled: every won deal billed
   in Lago, every finalized invoice posted in SAP and its document written back (``LeadToCash.settled``).
   deals/s = N / (last confirmed delivery - hub start), from the hub's own store. No "poll now": the first
   poll at start reads the whole backlog (the reader pages until the source has no more).
2. Trickle. One deal with one-time lines (so its one-off invoice, and the journal entry, follow at once) is
   closed as won every second for T seconds, with the hub running on its triggers only (route 1 polls every
   10 s, invoices arrive by webhook). Latency = journal entry posted (the hub's record of SAP's confirmation:
   route 2 delivered, ``updated_at_ms``; SAP's documents carry only a CreationDate) - the moment before the
   close-won request was sent. Target: p99 <= route 1's poll interval + 2 s.
3. Ceiling. ``bench/lead_to_cash_baseline.py`` makes the same effect calls for the same N deals at the same
   concurrency without state, once with httpx on the aiohttp transport (as the hub) and once with plain
   aiohttp; the hub's deals/s over each is the ratio (target >= 0.8). CPU ms/deal is this process's CPU time
   (all threads) per deal: the hub or the script, without the sandboxes when they run in their child process.

``--latency-ms 50``: every sandbox API call answers 50 ms later, for hub and baseline alike. At 0 the sandboxes
answer in about a millisecond and both sides are bound by their own CPU (the hub's durable bookkeeping per
record against a script that keeps none); with a network's latency both are bound by round trips, which is
the situation against real systems.

4. ``--matrix`` (only that): per latency (0, 50, 150 ms) and per store (SQLite, PostgreSQL), the hub's
   backfill and the script on the same deals, in one table: deals/s, CPU ms per deal, calls per deal per
   system, and the hub's ratio to the script. Worker scaling is ``bench/workers.py``.

Sandboxes: ``process`` (default) serves the three simulators from a child process (``lead2cash sandbox --lead-to-cash``),
so the hub (or the baseline) has this process to itself; ``thread`` is ``LeadToCash`` as is (one process,
one GIL, which understates the hub). Each run gets fresh sandboxes.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import cProfile
import io
import json
import os
import pstats
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _l2c_support import (
    Org,
    RemoteLeadToCash,
    SandboxesProcess,
    SandboxThread,
    close_won_total,
    pg_schema,
    seed_size_for,
    set_lago_rate_limit,
    set_latency,
)
from lead_to_cash_baseline import Result, run_baseline

from lead2cash.connectors.lago import Spacer
from lead2cash.demo.environment import CONFIG_DIR, ROUTES, LeadToCash, order_of
from lead2cash.store.schema import messages

LAGO_RATE_SHARE = 0.95  # the hub's ``lago.rate_limit`` against a Lago limited to N requests/s
SIZES = {
    "small": {"deals": 1000, "repeats": 3, "trickle": 60, "timeout": 300},
    "large": {"deals": 10000, "repeats": 1, "trickle": 300, "timeout": 1800},
}
SHORT = {
    "won-opportunity-to-billing": "1 won-opportunity-to-billing",
    "posted-invoice-to-ledger": "2 posted-invoice-to-ledger",
    "billing-status-to-opportunity": "3 billing-status-to-opportunity",
    "ledger-document-to-opportunity": "3b ledger-document-to-opportunity",
}


def parse_duration(value: str) -> float:
    """``1s``, ``500ms``, ``10s``, ``2m`` -> seconds (the config's duration syntax)."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    text = str(value).strip()
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def route1_poll_interval() -> float:
    import yaml

    routes = yaml.safe_load((CONFIG_DIR / "lead-to-cash.yaml").read_text())["routes"]
    trigger = next(r for r in routes if r["name"] == "won-opportunity-to-billing")["source"]["trigger"]
    return float(parse_duration(trigger["interval"]))


STORE = {"backend": "sqlite"}  # --store
PG_URL = os.environ.get("LEAD2CASH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMAS = contextlib.ExitStack()  # one schema per environment, dropped at exit
atexit.register(PG_SCHEMAS.close)


def store_url() -> str | None:
    """None (SQLite in the environment's directory) or a fresh PostgreSQL schema for one environment."""
    if STORE["backend"] == "sqlite":
        return None
    return PG_SCHEMAS.enter_context(pg_schema(PG_URL, "bench"))


def make_env(mode: str, workdir: Path, seed_size: int, safety_lag: str) -> LeadToCash:
    url = store_url()
    if mode == "process":
        return RemoteLeadToCash(workdir, seed_size=seed_size, safety_lag=safety_lag, store_url=url)
    return LeadToCash(workdir, seed_size=seed_size, safety_lag=safety_lag, store_url=url)


def route_table(env: LeadToCash) -> dict[str, dict[str, dict[str, int]]]:
    """Per route and status: count, first/last ingested and last updated (ms), from the hub's store."""
    q = select(
        messages.c.route,
        messages.c.status,
        func.count(),
        func.min(messages.c.created_at_ms),
        func.max(messages.c.created_at_ms),
        func.max(messages.c.updated_at_ms),
    ).group_by(messages.c.route, messages.c.status)
    out: dict[str, dict[str, dict[str, int]]] = {}
    with env.hub.store.engine.connect() as conn:
        for route, status, count, first_in, last_in, last_upd in conn.execute(q):
            out.setdefault(route, {})[status] = {
                "count": int(count),
                "first_in": int(first_in),
                "last_in": int(last_in),
                "last_updated": int(last_upd),
            }
    return out


# ---------------------------------------------------------------------------------------------- 1. backfill
@dataclass
class Backfill:
    won: int
    seconds: float
    settled: bool
    routes: dict[str, dict[str, dict[str, int]]]
    t0_ms: int
    dead_letters: int
    api_calls: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = (
        0.0  # this process (the hub; the sandboxes are a child process by default), start to settled
    )

    @property
    def rate(self) -> float:
        return self.won / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / self.won * 1000


async def _wait_done(env: LeadToCash, won: int, timeout: float) -> tuple[bool, float]:
    """Until settled; the cheap store counts first, the full check (SOQL, Lago listing) only then.
    Returns whether it settled and this process's CPU time when the last check began."""
    deadline = time.monotonic() + timeout
    store = env.hub.store
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        billed = store.count_messages(ROUTES[0], "delivered") + store.dlq_count(ROUTES[0])
        if billed < won or any(store.count_messages(r, "pending") for r in ROUTES):
            continue
        posted = store.count_messages(ROUTES[1], "delivered")
        if store.count_messages(ROUTES[3], "delivered") < posted:
            continue
        cpu = time.process_time()
        if await asyncio.to_thread(env.settled):
            return True, cpu
        await asyncio.sleep(0.5)
    return False, time.process_time()


async def backfill(
    deals: int,
    mode: str,
    safety_lag: str,
    timeout: float,
    profile: cProfile.Profile | None,
    latency_ms: int = 0,
    lago_rate_limit: int = 0,
) -> Backfill:
    env = make_env(mode, Path(tempfile.mkdtemp(prefix="l2c-backfill-")), seed_size_for(deals), safety_lag)
    try:
        won = close_won_total(env.cluster, deals)  # type: ignore[arg-type]
        set_latency(env.cluster, latency_ms)
        if lago_rate_limit:
            set_lago_rate_limit(env.cluster, lago_rate_limit)
            # The hub as configured for it: ``lago.rate_limit`` a little below Lago's limit.
            env.hub.systems["lago"].client.limiter = Spacer(LAGO_RATE_SHARE * lago_rate_limit)  # type: ignore[attr-defined]
        # Every deal closed before the hub starts lies behind the reader's safety lag at the first poll.
        await asyncio.sleep(parse_duration(safety_lag) + 1.2)
        if profile is not None:
            profile.enable()
        t0_ms = int(time.time() * 1000)
        cpu0 = time.process_time()
        await env.start()
        settled, cpu1 = await _wait_done(env, won, timeout)
        if profile is not None:
            profile.disable()
        routes = route_table(env)
        last = max(s["last_updated"] for r in routes.values() for st, s in r.items() if st == "delivered")
        calls = {"salesforce (connector count)": int(env.hub.systems["salesforce"].client.calls)}  # type: ignore[attr-defined]
        lago = env.hub.systems["lago"].client  # type: ignore[attr-defined]
        calls["lago (connector count)"] = int(lago.calls)
        calls.update({f"  lago {op}": int(n) for op, n in lago.calls_by_operation.most_common()})
        sap = env.hub.systems["sap"]
        soap_calls = int(sap.soap.calls) if sap.soap is not None else 0  # type: ignore[attr-defined]
        calls["sap (connector count)"] = int(sap.odata.calls) + soap_calls  # type: ignore[attr-defined]
        calls["  sap SOAP bulk messages"] = soap_calls
        calls["  sap journal entries in them"] = int(sap.bulk.items)  # type: ignore[attr-defined]
        calls["  sap OData requests"] = int(sap.odata.calls)  # type: ignore[attr-defined]
        result = Backfill(
            won, (last - t0_ms) / 1000, settled, routes, t0_ms, env.hub.store.dlq_count(), calls
        )
        result.webhooks = webhook_stats(env, t0_ms)
        result.cpu_s = cpu1 - cpu0
        await env.stop()
        return result
    finally:
        env.close()


def webhook_stats(env: LeadToCash, t0_ms: int) -> dict[str, Any]:
    """What the Lago sandbox sent to the hub. It delivers up to ``workers`` (8) webhooks at once, as Lago's
    parallel webhook jobs do, so its rate is bounded by how fast the hub answers."""
    log = env.http["lago"].get("/__sandbox/lago/webhooks").json()["deliveries"]
    if not log:
        return {}
    sent = sorted(float(d["sent_at"]) for d in log)
    span = sent[-1] - sent[0] or 1e-9
    return {
        "sent": len(log),
        "failed": sum(1 for d in log if not (d["status_code"] and 200 <= d["status_code"] < 300)),
        "first_s": sent[0] - t0_ms / 1000,
        "last_s": sent[-1] - t0_ms / 1000,
        "per_s": (len(sent) - 1) / span,
        "mean_gap_ms": 1000 * span / max(1, len(sent) - 1),
        "types": Counter(str(d["webhook_type"]) for d in log).most_common(),
    }


# ---------------------------------------------------------------------------------------------- 2. trickle
@dataclass
class Trickle:
    closed: int
    latencies: list[float]
    to_ingest: list[float]
    to_billed: list[float]
    missing: list[str]


def one_time_candidates(org: Org, count: int) -> list[str]:
    rows = org.soql(
        "SELECT Id, (SELECT PricebookEntry.Product2.Billing_Type__c FROM OpportunityLineItems) "
        "FROM Opportunity WHERE IsClosed = false"
    )
    chosen = []
    for row in rows:
        lines = (row.get("OpportunityLineItems") or {}).get("records") or []
        if any(line["PricebookEntry"]["Product2"]["Billing_Type__c"] == "One-Time" for line in lines):
            chosen.append(row["Id"])
    if len(chosen) < count:
        raise RuntimeError(f"only {len(chosen)} open deals with one-time lines; seed more")
    return chosen[:count]


async def trickle(seconds: int, mode: str, safety_lag: str, poll_interval: float) -> Trickle:
    env = make_env(mode, Path(tempfile.mkdtemp(prefix="l2c-trickle-")), max(200, seconds * 3), safety_lag)
    org = Org(env.cluster)  # type: ignore[arg-type]
    try:
        ids = one_time_candidates(org, seconds)
        await env.start()
        # The seed's already-won deals are billed first: the trickle is measured on an idle hub.
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(env.settled):
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not settle on the seed's won deals")
            await asyncio.sleep(0.5)
        closed_at: dict[str, float] = {}
        start = time.monotonic()
        for i, opp_id in enumerate(ids):
            await asyncio.sleep(max(0.0, start + i - time.monotonic()))
            closed_at[opp_id] = time.time()  # before the request: the commit is no earlier than this
            await asyncio.to_thread(org.close_won, 0, [opp_id])
        wanted = set(ids)
        posted: dict[str, int] = {}
        deadline = time.monotonic() + poll_interval + 60
        while time.monotonic() < deadline:
            for m in _rows(env, ROUTES[1], with_source=True):
                invoice = json.loads(m["source_payload"] or "{}").get("invoice") or {}
                order = order_of(invoice)
                if order in wanted and m["status"] == "delivered":
                    posted[order] = min(posted.get(order, m["updated_at_ms"]), m["updated_at_ms"])
            if wanted <= set(posted):
                break
            await asyncio.sleep(1.0)
        billed = {
            json.loads(m["payload"])["id"]: m for m in _rows(env, ROUTES[0]) if m["status"] == "delivered"
        }
        done = [i for i in ids if i in posted]
        result = Trickle(
            closed=len(ids),
            latencies=[posted[i] / 1000 - closed_at[i] for i in done],
            to_ingest=[billed[i]["created_at_ms"] / 1000 - closed_at[i] for i in done if i in billed],
            to_billed=[billed[i]["updated_at_ms"] / 1000 - closed_at[i] for i in done if i in billed],
            missing=sorted(wanted - set(posted)),
        )
        await env.stop()
        return result
    finally:
        org.close()
        env.close()


def _rows(env: LeadToCash, route: str, with_source: bool = False) -> list[dict[str, Any]]:
    cols = [messages.c.payload, messages.c.status, messages.c.created_at_ms, messages.c.updated_at_ms]
    if with_source:
        cols.append(messages.c.source_payload)
    with env.hub.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(*cols).where(messages.c.route == route))]


# ---------------------------------------------------------------------------------------------- 3. ceiling
async def baseline(deals: int, mode: str, client: str, concurrency: int, latency_ms: int = 0) -> Result:
    state = Path(tempfile.mkdtemp(prefix="l2c-baseline-")) / "sandbox"
    seed_size = seed_size_for(deals)
    sandboxes: SandboxesProcess | SandboxThread = (
        SandboxesProcess.start(state, seed_size=seed_size)
        if mode == "process"
        else SandboxThread(state, seed_size=seed_size)
    )
    try:
        won = close_won_total(sandboxes, deals)
        set_latency(sandboxes, latency_ms)
        cpu0 = time.process_time()
        result = await run_baseline(
            sandboxes.hub_config(), str(sandboxes.ca_bundle), concurrency=concurrency, client=client
        )
        result.cpu_s = time.process_time() - cpu0
        if result.deals != won or result.errors:
            raise RuntimeError(f"baseline handled {result.deals} of {won} deals; errors: {result.errors[:3]}")
        return result
    finally:
        sandboxes.stop()


# ---------------------------------------------------------------------------------------------- report
def print_backfill(runs: list[Backfill]) -> None:
    print(f"\n== 1. backfill: {runs[0].won} won deals, {len(runs)} run(s) ==")
    for i, run in enumerate(runs, 1):
        flag = "" if run.settled else "  (NOT SETTLED: timed out)"
        print(
            f"  run {i}: {run.seconds:7.2f} s  {run.rate:8.1f} deals/s  {run.cpu_ms:5.1f} ms CPU per deal"
            f"  dead letters {run.dead_letters}{flag}"
        )
    median = statistics.median(r.rate for r in runs)
    cpu = statistics.median(r.cpu_ms for r in runs)
    print(f"  median: {median:,.1f} deals/s end to end, {cpu:.1f} ms of the hub's CPU per deal")
    run = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
    print("\n  per route (median run; seconds after hub start):")
    print(
        f"  {'route':<36}{'delivered':>10}{'dead':>6}{'pending':>8}{'first in':>10}{'last in':>9}{'last done':>11}{'msg/s':>9}"
    )
    for route in ROUTES:
        statuses = run.routes.get(route, {})
        d = statuses.get(
            "delivered", {"count": 0, "first_in": run.t0_ms, "last_in": run.t0_ms, "last_updated": run.t0_ms}
        )
        first_in = min((s["first_in"] for s in statuses.values()), default=run.t0_ms)
        span = (d["last_updated"] - first_in) / 1000 or 1e-9
        print(
            f"  {SHORT[route]:<36}{d['count']:>10}{statuses.get('dead', {}).get('count', 0):>6}"
            f"{statuses.get('pending', {}).get('count', 0):>8}{(first_in - run.t0_ms) / 1000:>10.2f}"
            f"{(d['last_in'] - run.t0_ms) / 1000:>9.2f}{(d['last_updated'] - run.t0_ms) / 1000:>11.2f}"
            f"{d['count'] / span:>9.1f}"
        )
    for name, count in run.api_calls.items():
        label = f"    {name.strip()}" if name.startswith(" ") else f"  calls, {name}"  # a breakdown line
        print(f"{label}: {count} ({count / run.won:.2f} per deal)")
    print(
        f"  CPU of the hub's process: {run.cpu_s:.1f} s in {run.seconds:.1f} s, "
        f"{run.cpu_s / run.won * 1000:.1f} ms per deal"
    )
    w = run.webhooks
    if w:
        print(
            f"  Lago webhooks to the hub: {w['sent']:.0f} sent ({w['failed']:.0f} failed), {w['first_s']:.2f}-"
            f"{w['last_s']:.2f} s, {w['per_s']:.1f}/s ({w['mean_gap_ms']:.1f} ms apart)"
        )
        print("    by type: " + ", ".join(f"{t} {n}" for t, n in w["types"]))


def print_rate_limited(run: Backfill, limit: int) -> None:
    """The backfill against a Lago that answers 429 beyond ``limit`` requests/s (Lago's own limit per
    organization is 50/s for everything but events): calls per deal decide the ceiling."""
    lago = run.api_calls.get("lago (connector count)", 0)
    flag = "" if run.settled else "  (NOT SETTLED: timed out)"
    print(
        f"\n== 1b. backfill against Lago limited to {limit} requests/s (the hub's lago.rate_limit: "
        f"{LAGO_RATE_SHARE * limit:g}): {run.won} won deals =="
    )
    print(f"  {run.rate:.1f} deals/s end to end (goal at 50/s: >= 14){flag}; dead letters {run.dead_letters}")
    print(
        f"  Lago calls: {lago} ({lago / run.won:.2f} per deal, answers 429 included; ceiling "
        f"{limit / max(lago / run.won, 1e-9):.1f} deals/s at that rate)"
    )
    for name, count in run.api_calls.items():
        if name.startswith("  lago"):
            print(f"    {name.strip()}: {count} ({count / run.won:.2f} per deal)")


def print_trickle(t: Trickle, poll: float, safety_lag: str) -> None:
    target = poll + 2
    print(f"\n== 2. trickle: 1 deal/s closed won for {t.closed} s, webhooks on, no poll-now ==")
    print(
        f"  route 1 poll interval {poll:g} s, Salesforce safety lag {safety_lag}; target p99 <= {target:g} s"
    )
    if not t.latencies:
        print("  no journal entry was posted")
        return
    print(f"  {'closed won ->':<28}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for label, values in (
        ("ingested by route 1", t.to_ingest),
        ("billed in Lago", t.to_billed),
        ("journal entry posted", t.latencies),
    ):
        if values:
            print(
                f"  {label:<28}{pct(values, 50):>8.2f}{pct(values, 95):>8.2f}{pct(values, 99):>8.2f}{max(values):>8.2f}"
            )
    p99 = pct(t.latencies, 99)
    verdict = "meets" if p99 <= target else "MISSES"
    print(f"  p99 {p99:.2f} s {verdict} the target {target:g} s; {len(t.latencies)}/{t.closed} posted")
    if t.missing:
        print(f"  not posted in time: {', '.join(t.missing[:10])}")


def print_ceiling(hub: float, hub_cpu_ms: float, runs: dict[str, list[Result]], concurrency: int) -> None:
    print(
        f"\n== 3. ratio to the ceiling (same deals, concurrency {concurrency} billing + {concurrency} ledger) =="
    )
    print(f"  {'':<34}{'deals/s':>10}{'hub ratio':>11}{'CPU ms/deal':>13}   runs")
    print(f"  {'hub (shipped routes)':<34}{hub:>10.1f}{'':>11}{hub_cpu_ms:>13.1f}")
    for client, results in runs.items():
        rate = statistics.median(r.deals / r.seconds for r in results)
        label = "baseline, httpx + aiohttp transport" if client == "httpx" else "baseline, plain aiohttp"
        each = ", ".join(f"{r.deals / r.seconds:.0f}" for r in results)
        target = "  (target >= 0.8)" if client == "httpx" else ""
        cpu_ms = statistics.median(r.cpu_s / r.deals * 1000 for r in results)
        print(f"  {label:<34}{rate:>10.1f}{hub / rate:>11.2f}{cpu_ms:>13.1f}   {each}{target}")
    first = next(iter(runs.values()))[0]
    print(f"  baseline calls per run ({first.deals} deals, {first.invoices} invoices):")
    for name, count in sorted(first.calls.items()):
        print(f"    {count:>7}  {name}")


def _per_system(calls: dict[str, int], deals: int) -> str:
    """``salesforce 0.11 lago 3.26 sap 1.23``: calls per deal per system (the connectors' own counts)."""
    out = []
    for system in ("salesforce", "lago", "sap"):
        n = calls.get(f"{system} (connector count)")
        if n is None:  # the script's counter: "<system> <operation>"
            n = sum(v for k, v in calls.items() if k.split(" ", 1)[0] == system)
        out.append(f"{system} {n / deals:.2f}")
    return " ".join(out)


def matrix(args: argparse.Namespace, deals: int, repeats: int) -> None:
    """Section 4 of the issue in one run: per store and per latency, the hub's backfill and the script on
    the same deals: deals/s, CPU ms per deal, calls per deal per system, and the ratio hub / script. The
    script keeps no state, so it runs once per latency, for both stores."""
    latencies = [int(x) for x in args.matrix_latencies.split(",")]
    stores = args.matrix_stores.split(",")
    print(
        f"matrix: {deals} deals, {repeats} run(s) per cell (medians), stores {stores}, latencies {latencies} ms"
    )
    script: dict[int, list[Result]] = {}
    hub: dict[tuple[str, int], list[Backfill]] = {}
    for latency in latencies:
        for i in range(repeats):
            result = asyncio.run(baseline(deals, args.sandboxes, "httpx", args.concurrency, latency))
            script.setdefault(latency, []).append(result)
            print(
                f"  script, {latency} ms, run {i + 1}: {result.deals / result.seconds:.1f} deals/s",
                flush=True,
            )
        for store in stores:
            STORE["backend"] = store
            for i in range(repeats):
                run = asyncio.run(backfill(deals, args.sandboxes, args.safety_lag, 600.0, None, latency))
                hub.setdefault((store, latency), []).append(run)
                flag = "" if run.settled else " (NOT SETTLED)"
                print(f"  hub {store}, {latency} ms, run {i + 1}: {run.rate:.1f} deals/s{flag}", flush=True)
    print(f"\n== 4. matrix: {deals} deals, hub (shipped routes) and script (httpx, no state) ==")
    print(f"  {'latency':>7}  {'side':<18}{'deals/s':>9}{'ratio':>7}{'CPU ms/deal':>13}   calls per deal")
    for latency in latencies:
        results = script[latency]
        s_rate = statistics.median(r.deals / r.seconds for r in results)
        s_cpu = statistics.median(r.cpu_s / r.deals * 1000 for r in results)
        first = results[0]
        print(
            f"  {latency:>5}ms  {'script':<18}{s_rate:>9.1f}{'':>7}{s_cpu:>13.1f}   "
            f"{_per_system(dict(first.calls), first.deals)}"
        )
        for store in stores:
            runs = hub[(store, latency)]
            rate = statistics.median(r.rate for r in runs)
            cpu = statistics.median(r.cpu_ms for r in runs)
            mid = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
            unsettled = "" if all(r.settled for r in runs) else "  NOT SETTLED"
            print(
                f"  {'':>7}  {'hub ' + store:<18}{rate:>9.1f}{rate / s_rate:>7.2f}{cpu:>13.1f}   "
                f"{_per_system(mid.api_calls, mid.won)}{unsettled}"
            )
    print("  goals: hub CPU <= 8 ms per deal at 0 ms; ratio >= 0.9 at 50 ms and >= 0.95 at 150 ms.")
    if args.matrix_workers:
        # The workers are separate `lead2cash run` processes on one PostgreSQL store: bench/workers.py runs
        # them, here in the same run so that section 4 prints in one go.
        print(f"\n== 4. worker scaling: {args.matrix_workers} workers, 50 ms per call (bench/workers.py) ==")
        cmd = [sys.executable, str(Path(__file__).with_name("workers.py")), "--deals", str(deals)]
        subprocess.run([*cmd, "--workers", args.matrix_workers, "--latency-ms", "50"], check=False)
    else:
        print(
            "  worker scaling: --matrix-workers 1,2,4, or bench/workers.py (the workers as separate processes)."
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--sandboxes", choices=("process", "thread"), default="process")
    parser.add_argument("--deals", type=int, help="override the size's backfill deals")
    parser.add_argument("--repeats", type=int, help="override the size's repeats")
    parser.add_argument("--trickle-seconds", type=int, help="override the size's trickle length (0: skip)")
    parser.add_argument(
        "--safety-lag", default="1s", help="the Salesforce reader's safety lag (LeadToCash's)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="baseline; the shipped routes use 16")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the hub's state store; postgresql: a fresh schema per run at LEAD2CASH_BENCH_PG_URL",
    )
    parser.add_argument("--profile", type=Path, help="cProfile the hub's first backfill into this file")
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=0,
        help="backfill and ceiling: every sandbox API call answers this much later, as across a network",
    )
    parser.add_argument(
        "--lago-rate-limit",
        type=int,
        default=50,
        help="one more backfill with the Lago sandbox limited to this many requests/s, as Lago per "
        "organization (0: skip)",
    )
    parser.add_argument(
        "--matrix",
        action="store_true",
        help="section 4: hub and script at each --matrix-latencies on each --matrix-stores, one table "
        "(--deals, default 300; --repeats, default 1); nothing else runs",
    )
    parser.add_argument("--matrix-latencies", default="0,50,150", help="ms per sandbox call, comma-separated")
    parser.add_argument("--matrix-stores", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument(
        "--matrix-workers",
        default="1,2,4",
        help="after the table, the worker scaling on PostgreSQL at 50 ms per call (bench/workers.py; '': skip)",
    )
    args = parser.parse_args()
    STORE["backend"] = args.store
    if args.matrix:
        print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
        matrix(args, args.deals or 300, args.repeats or 1)
        return
    size = SIZES[args.size]
    deals = args.deals or int(size["deals"])
    repeats = args.repeats or int(size["repeats"])
    trickle_s = int(size["trickle"]) if args.trickle_seconds is None else args.trickle_seconds

    print("$ " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"size {args.size}: backfill {deals} deals x {repeats}, trickle {trickle_s} s; sandboxes: {args.sandboxes}"
        f" ({'child process, uvloop' if args.sandboxes == 'process' else 'thread of this process'}); store: {args.store}"
        f"{f'; every sandbox API call answers {args.latency_ms} ms later' if args.latency_ms else ''}"
    )
    poll = route1_poll_interval()

    profile = cProfile.Profile() if args.profile else None
    runs = []
    for i in range(repeats):
        runs.append(
            asyncio.run(
                backfill(
                    deals,
                    args.sandboxes,
                    args.safety_lag,
                    float(size["timeout"]),
                    profile if i == 0 else None,
                    args.latency_ms,
                )
            )
        )
        print(f"  backfill run {i + 1}: {runs[-1].rate:.1f} deals/s", flush=True)
    if profile is not None:
        profile.dump_stats(str(args.profile))
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
        print(f"\n  hub profile (first backfill, by own time; full stats in {args.profile}):")
        lines = out.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        print("\n".join("    " + line for line in lines[start : start + 21]))
    hub_rate = statistics.median(r.rate for r in runs)

    ceiling: dict[str, list[Result]] = {}
    if not args.skip_baseline:
        for client in ("httpx", "aiohttp"):
            for i in range(repeats):
                result = asyncio.run(
                    baseline(deals, args.sandboxes, client, args.concurrency, args.latency_ms)
                )
                ceiling.setdefault(client, []).append(result)
                print(
                    f"  baseline {client} run {i + 1}: {result.deals / result.seconds:.1f} deals/s",
                    flush=True,
                )

    limited = None
    if args.lago_rate_limit:
        limited = asyncio.run(
            backfill(
                deals,
                args.sandboxes,
                args.safety_lag,
                float(size["timeout"]),
                None,
                args.latency_ms,
                args.lago_rate_limit,
            )
        )
        print(
            f"  backfill, Lago at {args.lago_rate_limit} requests/s: {limited.rate:.1f} deals/s", flush=True
        )

    trickled = asyncio.run(trickle(trickle_s, args.sandboxes, args.safety_lag, poll)) if trickle_s else None

    print_backfill(runs)
    if limited is not None:
        print_rate_limited(limited, args.lago_rate_limit)
    if trickled is not None:
        print_trickle(trickled, poll, args.safety_lag)
    if ceiling:
        hub_cpu_ms = statistics.median(r.cpu_s / r.won * 1000 for r in runs)
        print_ceiling(hub_rate, hub_cpu_ms, ceiling, args.concurrency)


if __name__ == "__main__":
    main()
