"""Keeping the billing summaries current from what the hub delivers.

The keeper reads each watched route's confirmed deliveries in confirmation order (the numbers
``Store.complete`` gives, as the hub source does) and applies them: a UsageEvent confirmed by Lago adds
to its subscription's metric aggregate for the period; an Invoice (a Lago invoice with its fees, from the
invoice webhooks or polls: issued, paid, failed, voided) replaces the invoice's earlier state; an Order
(a deal billed: subscriptions changed) makes it read the customer's subscriptions again. The cursor moves
in the transaction that applies the batch, so a crash neither loses nor doubles an event. The router
pokes the keeper when it records outcomes (``RouteRuntime.on_confirmed``); it also looks every
``poll`` seconds.

What it reads from Lago is the catalog only, cached: a customer's subscriptions (current period, plan)
and a plan's charges with their metrics' aggregation. The amounts come from the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from lead2cash.store import Message, Store
from lead2cash.summary.model import ChargeDef, InvoiceFacts, Period, invoice_facts
from lead2cash.summary.state import CursorMoved, SummaryState, UsageItem

log = structlog.get_logger("lead2cash.summary")

WATCHED = frozenset({"UsageEvent", "Invoice", "Order"})
BATCH = 2000


class Catalog:
    """Subscriptions, plans and metrics read from Lago and cached (subscriptions until told otherwise)."""

    def __init__(self, client: Any) -> None:
        self.client = client  # lead2cash.connectors.lago.LagoClient
        self._periods: dict[str, list[Period]] = {}
        self._plans: dict[str, dict[str, ChargeDef]] = {}
        self._metrics: dict[str, dict[str, Any]] = {}

    def forget(self, customer: str | None = None) -> None:
        if customer is None:
            self._periods.clear()
        else:
            self._periods.pop(customer, None)

    async def periods(self, customer: str) -> list[Period]:
        known = self._periods.get(customer)
        if known is None:
            subs = [
                s
                async for s in self.client.pages(
                    "/subscriptions",
                    "subscriptions.list",
                    "subscriptions",
                    {"external_customer_id": customer},
                )
            ]
            known = [p for s in subs if (p := Period.from_lago(s)) is not None]
            self._periods[customer] = known
        return known

    async def metric(self, code: str) -> dict[str, Any]:
        known = self._metrics.get(code)
        if known is None:
            data = await self.client.request("GET", f"/billable_metrics/{code}", "billable_metrics.get")
            known = self._metrics[code] = data["billable_metric"]
        return known

    async def charges(self, plan_code: str) -> dict[str, ChargeDef]:
        known = self._plans.get(plan_code)
        if known is None:
            plan = (await self.client.request("GET", f"/plans/{plan_code}", "plans.get"))["plan"]
            known = {}
            for c in plan.get("charges") or []:
                code = str(c["billable_metric_code"])
                metric = await self.metric(code)
                known[code] = ChargeDef(
                    code,
                    str(metric["aggregation_type"]),
                    metric.get("field_name"),
                    str(c["charge_model"]),
                    c.get("properties") or {},
                )
            self._plans[plan_code] = known
        return known


class SummaryKeeper:
    def __init__(
        self,
        store: Store,
        lago: Any,
        routes: Mapping[str, str],
        *,
        poll: float = 0.5,
        on_change: Any = None,
    ) -> None:
        """``routes``: route name -> the canonical entity it carries (only the WATCHED ones matter)."""
        self.state = SummaryState(store)
        self.catalog = Catalog(lago)
        self.routes = {r: e for r, e in routes.items() if e in WATCHED}
        self.poll = poll
        self.on_change = on_change  # called with the changed (customer, currency) keys
        self._poked = asyncio.Event()
        self.applied = 0  # deliveries applied (for figures)

    def poke(self) -> None:
        """Called by the router right after it recorded confirmed outcomes (any thread of the loop)."""
        self._poked.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.step()
            except Exception as exc:  # the summary must never stop the hub; the next pass tries again
                log.warning(
                    "billing summary update failed; tried again", error=str(exc).splitlines()[0][:300]
                )
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=self.poll)
            self._poked.clear()

    async def step(self) -> int:
        """Apply every confirmed delivery not applied yet; returns how many."""
        total = 0
        for route in self.routes:
            while True:
                cursor = self.state.cursor(route)
                batch = self.state.store.delivered_since(route, cursor, BATCH)
                if not batch:
                    break
                total += await self._apply(route, batch, cursor)
                if len(batch) < BATCH:
                    break
        return total

    async def _apply(self, route: str, batch: Sequence[Message], cursor: int) -> int:
        usage_raw: list[dict[str, Any]] = []
        invoices: list[InvoiceFacts] = []
        touched: set[str] = set()
        for m in batch:
            try:
                if m.entity_type == "UsageEvent":
                    usage_raw.append(json.loads(m.payload))
                elif m.entity_type == "Invoice" and m.source_payload:
                    raw = json.loads(m.source_payload)
                    facts = invoice_facts(raw)
                    invoices.append(facts)
                    if (raw.get("invoice") or raw).get("invoice_type") == "subscription":
                        self.catalog.forget(facts.customer)  # a period was billed: it has moved on
                elif m.entity_type == "Order":
                    self.catalog.forget()  # subscriptions were created, changed or ended
                    customer = _order_customer(json.loads(m.payload))
                    if customer:
                        touched.add(customer)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "delivery not taken into the billing summary",
                    route=route,
                    key=m.idempotency_key,
                    error=str(exc)[:200],
                )
        usage: list[UsageItem] = []
        charges: dict[str, dict[str, ChargeDef]] = {}
        for e in usage_raw:
            item = await self._usage_item(e, charges)
            if item is not None:
                usage.append(item)
        customers = touched | {u.customer for u in usage} | {i.customer for i in invoices}
        periods = {c: await self.catalog.periods(c) for c in customers}
        for ps in periods.values():
            for p in ps:
                charges.setdefault(p.subscription, await self.catalog.charges(p.plan))
        last = batch[-1].confirmed_seq or 0
        try:
            changed = self.state.apply(
                route, last, usage, invoices, periods, charges, touched, expected=cursor
            )
        except CursorMoved:
            return len(batch)  # applied by another process (a hub and ``summary rebuild``): read on
        self.applied += len(batch)
        if changed and self.on_change is not None:
            self.on_change(list(changed))
        return len(batch)

    async def _usage_item(
        self, e: Mapping[str, Any], charges: dict[str, dict[str, ChargeDef]]
    ) -> UsageItem | None:
        customer, sub, code = str(e["customer_id"]), str(e["subscription_id"]), str(e["metric_code"])
        at = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).astimezone(UTC)
        period = next((p for p in await self.catalog.periods(customer) if p.subscription == sub), None)
        if period is not None and at >= period.end:
            self.catalog.forget(customer)  # the period may have rolled since it was read
            period = next((p for p in await self.catalog.periods(customer) if p.subscription == sub), None)
        if period is None or not period.covers(at):
            return None  # no active subscription, or a closed period: billed on its invoice
        plan = charges.get(sub)
        if plan is None:
            plan = charges[sub] = await self.catalog.charges(period.plan)
        charge = plan.get(code)
        if charge is None:
            return None  # a metric the plan does not charge (Lago reports it by webhook)
        return UsageItem(
            customer, sub, code, period.start.isoformat(), at.isoformat(), e.get("properties") or {}, charge
        )


def _order_customer(order: Mapping[str, Any]) -> str | None:
    customer = order.get("customer") or {}
    refs = customer.get("refs") or {}
    return refs.get("salesforce") or customer.get("id")


def now_ms() -> int:
    return int(time.time() * 1000)
