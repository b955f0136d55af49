"""Usage metering end to end, shared by the integration test and ``bench/usage.py``: Lago set up with
metrics, a plan with usage charges and subscriptions; usage records (call detail records and API-call
records) published to JetStream; the hub's config for the two routes; the amounts Lago must show.

Records: a CDR bills its ``duration_s`` as ``call_seconds`` (sum, standard charge 0.002 per second); an
API-call record counts as ``api_calls`` (count, graduated: 100 free, then 0.01 each plus 1.00 flat).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

CALL_SECOND_PRICE = Decimal("0.002")
API_FREE, API_PRICE, API_FLAT = 100, Decimal("0.01"), Decimal("1.00")
STREAM = "USAGE"
SUBJECTS = ["usage.>"]


@dataclass
class UsageRecords:
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (subject, payload)
    transaction_ids: set[str] = field(default_factory=set)  # of the records that must reach Lago
    seconds: Counter[str] = field(default_factory=Counter)  # subscription -> call seconds
    calls: Counter[str] = field(default_factory=Counter)  # subscription -> API calls
    bad: dict[str, str] = field(default_factory=dict)  # what must be dead-lettered -> why


def subscription_ids(customers: int) -> list[str]:
    return [f"usage-sub-{i}" for i in range(customers)]


def set_up_lago(client: httpx.Client, customers: int, admin: httpx.Client | None = None) -> date:
    """Metrics, the plan and one subscription per customer, started at the sandbox month's first day."""
    admin = admin or client
    today = date.fromisoformat(admin.get("/__sandbox/lago/clock").json()["today"])
    start = today.replace(day=1)
    ids = {}
    for code, agg, field_name in (("call_seconds", "sum_agg", "seconds"), ("api_calls", "count_agg", None)):
        body = {"name": code, "code": code, "aggregation_type": agg, "field_name": field_name}
        r = client.post("/api/v1/billable_metrics", json={"billable_metric": body})
        if r.status_code == 422:  # set up before on this sandbox
            r = client.get(f"/api/v1/billable_metrics/{code}")
        r.raise_for_status()
        ids[code] = r.json()["billable_metric"]["lago_id"]
    charges = [
        {"billable_metric_id": ids["call_seconds"], "charge_model": "standard",
         "properties": {"amount": str(CALL_SECOND_PRICE)}},
        {"billable_metric_id": ids["api_calls"], "charge_model": "graduated", "properties": {"graduated_ranges": [
            {"from_value": 0, "to_value": API_FREE, "flat_amount": "0", "per_unit_amount": "0"},
            {"from_value": API_FREE + 1, "to_value": None, "flat_amount": str(API_FLAT),
             "per_unit_amount": str(API_PRICE)}]}},
    ]  # fmt: skip
    plan = {"name": "Metered", "code": "METERED__EUR", "interval": "monthly", "amount_cents": 0,
            "amount_currency": "EUR", "pay_in_advance": False, "charges": charges}  # fmt: skip
    r = client.post("/api/v1/plans", json={"plan": plan})
    if r.status_code != 422:
        r.raise_for_status()
    for i, sub in enumerate(subscription_ids(customers)):
        customer = f"usage-cust-{i}"
        client.post("/api/v1/customers", json={"customer": {"external_id": customer, "name": customer,
                    "country": "DE", "currency": "EUR"}}).raise_for_status()  # fmt: skip
        client.post("/api/v1/subscriptions", json={"subscription": {"external_customer_id": customer,
                    "plan_code": "METERED__EUR", "external_id": sub, "billing_time": "calendar",
                    "subscription_at": f"{start}T00:00:00Z"}}).raise_for_status()  # fmt: skip
    return start


def make_records(
    count: int, customers: int, period_start: date, seed: int = 1, bad: bool = True
) -> UsageRecords:
    """``count`` valid records (CDRs and API calls alternately), and with ``bad`` three that must be
    dead-lettered: not JSON, a CDR whose duration is not a number, a CDR whose callee Lago refuses."""
    import hashlib

    rng = random.Random(seed)
    out = UsageRecords()
    subs = subscription_ids(customers)
    t0 = datetime.combine(period_start, datetime.min.time(), UTC) + timedelta(hours=1)
    for n in range(count):
        sub = subs[n % len(subs)]
        customer = f"usage-cust-{subs.index(sub)}"
        at = t0 + timedelta(seconds=n)
        if n % 2 == 0:
            seconds = rng.randint(1, 3600)
            record = {"switch": "fra-1", "call_id": f"c{seed}-{n}", "answered_at": at.isoformat(),
                      "duration_s": seconds, "callee": "+4930" + str(rng.randint(100000, 999999)),
                      "subscriber": {"customer": customer, "subscription": sub}}  # fmt: skip
            natural = f"fra-1|c{seed}-{n}|{at.isoformat()}"
            out.transaction_ids.add("cdr:" + hashlib.sha256(natural.encode()).hexdigest()[:32])
            out.seconds[sub] += seconds
            out.messages.append(("usage.cdr", json.dumps(record).encode()))
        else:
            record = {"request_id": f"r{seed}-{n}", "account_id": customer, "subscription_id": sub,
                      "ts": at.isoformat(), "endpoint": "/v1/orders", "method": "POST", "status": 201}  # fmt: skip
            out.transaction_ids.add(f"api:r{seed}-{n}")
            out.calls[sub] += 1
            out.messages.append(("usage.api", json.dumps(record).encode()))
    if bad:
        sub = subs[0]
        at = t0.isoformat()
        out.messages.insert(count // 2, ("usage.cdr", b"{not json"))
        out.bad["not json"] = "not JSON"
        broken = {"switch": "fra-1", "call_id": "broken", "answered_at": at, "duration_s": "ten",
                  "subscriber": {"customer": "usage-cust-0", "subscription": sub}}  # fmt: skip
        out.messages.insert(count // 3, ("usage.cdr", json.dumps(broken).encode()))
        out.bad["duration"] = "duration_s: not a number"
        refused = {"switch": "fra-1", "call_id": "refused", "answered_at": at, "duration_s": 5,
                   "callee": {"number": "+4930"}, "subscriber": {"customer": "usage-cust-0", "subscription": sub}}  # fmt: skip
        out.messages.insert(count // 4, ("usage.cdr", json.dumps(refused).encode()))
        out.bad["refused"] = "Lago refused usage event"
    return out


async def publish(url: str, messages: list[tuple[str, bytes]], stream: str = STREAM) -> None:
    """Publish to JetStream (the stream is created if missing), each publish acknowledged by the server."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(servers=[url])
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(name=stream, subjects=SUBJECTS)
        window = 500
        for i in range(0, len(messages), window):
            acks = [js.publish(subject, data, timeout=10) for subject, data in messages[i : i + window]]
            import asyncio

            await asyncio.gather(*acks)
    finally:
        await nc.close()


def expected_cents(records: UsageRecords, sub: str) -> dict[str, int]:
    def cents(amount: Decimal) -> int:
        return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    calls = records.calls[sub]
    api = Decimal(0) if calls <= API_FREE else (calls - API_FREE) * API_PRICE + API_FLAT
    return {"call_seconds": cents(records.seconds[sub] * CALL_SECOND_PRICE), "api_calls": cents(api)}


def hub_config(
    state_url: str, nats_url: str, lago: dict[str, Any], *, durable_prefix: str = "hub", ack_wait: str = "3s"
) -> dict[str, Any]:
    def route(name: str, subject: str, adapter: str) -> dict[str, Any]:
        return {
            "name": name,
            "source": {
                "system": "bus",
                "object": subject,
                "trigger": {"type": "poll", "interval": "0.2s"},
                "options": {"durable": f"{durable_prefix}-{name}", "ack_wait": ack_wait},
            },
            "mapping": {"adapter": adapter, "entity": "UsageEvent"},
            "target": {"system": "lago", "action": "send_usage"},
            "idempotency_key": "usage:{id}",
            "batch_size": 1000,
            "concurrency": 300,
            "retry": {"attempts": 8, "initial_backoff": "0.2s", "max_backoff": "2s"},
        }

    return {
        "version": 1,
        "state": {"url": state_url},
        "logging": {"level": "INFO", "format": "json"},
        "systems": {
            "bus": {"type": "nats", "servers": [nats_url], "stream": STREAM, "subjects": SUBJECTS},
            "lago": lago,
        },
        "routes": [
            route("usage-cdr", "usage.cdr", "usage.cdr"),
            route("usage-api", "usage.api", "usage.api_call"),
        ],
    }


def lago_counts(sandbox: Any) -> tuple[int, Counter[str]]:
    """(events stored, how many times each transaction id was stored): read in the sandbox's process."""
    stored: Counter[str] = Counter(t for (_, t) in list(sandbox.store.usage.events))
    return len(stored), stored


def usage_by_sub(client: httpx.Client, customers: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for i, sub in enumerate(subscription_ids(customers)):
        r = client.get(
            f"/api/v1/customers/usage-cust-{i}/current_usage", params={"external_subscription_id": sub}
        )
        r.raise_for_status()
        for c in r.json()["customer_usage"]["charges_usage"]:
            out[sub][c["billable_metric"]["code"]] = c["amount_cents"]
    return dict(out)
