"""Usage billing in the Lago sandbox answers what Lago's OpenAPI document says, and computes what Lago would.

A scenario over real sockets: billable metrics of each aggregation (count, sum, max, unique count), a plan
with a standard, a package and a graduated charge, single and batch events (a resent transaction id
counted once, a batch with one invalid event refused with that event's index), the customer's current
usage, the period-end invoice with the usage fees, and the webhooks (``billable_metric.created``,
``plan.created``, ``events.errors``, the period invoice). Every request and response is validated against
``specs/lago/openapi.yaml``; the amounts are checked against hand-computed figures.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from test_lago_openapi_conformance import WebhookCall

CUSTOMER = "usage-cust-1"
SUB = "usage-sub-1"
PERIOD: dict[str, date] = {}  # the sandbox clock's month (other scenarios move the clock first)

# The operations this file covers (the main scenario covers the rest).
USAGE_OPERATIONS = {
    "POST /api/v1/billable_metrics",
    "GET /api/v1/billable_metrics",
    "GET /api/v1/billable_metrics/{code}",
    "POST /api/v1/plans",
    "POST /api/v1/events",
    "POST /api/v1/events/batch",
    "GET /api/v1/events/{transaction_id:path}",
    "GET /api/v1/customers/{external_id}/current_usage",
}


def _event(tx: str, code: str, seconds: int = 0, **props: Any) -> dict[str, Any]:
    t0 = int(datetime.combine(PERIOD["start"], datetime.min.time(), UTC).timestamp()) + 3600
    return {"transaction_id": tx, "external_subscription_id": SUB, "code": code,
            "timestamp": t0 + seconds, "properties": props}  # fmt: skip


@pytest.fixture(scope="module")
def usage_exchanges(conformance_lago: dict[str, Any]) -> list[tuple[str, httpx.Response]]:
    lago = conformance_lago
    client: httpx.Client = lago["client"]
    calls: list[tuple[str, httpx.Response]] = []
    admin = httpx.Client(base_url=str(client.base_url), verify=lago["tls"])
    today = date.fromisoformat(admin.get("/__sandbox/lago/clock").json()["today"])
    PERIOD["start"] = today.replace(day=1)
    PERIOD["next"] = date(today.year + today.month // 12, today.month % 12 + 1, 1)

    def call(method: str, template: str, path: str | None = None, **kw: Any) -> httpx.Response:
        response = client.request(method, path or template, **kw)
        calls.append((f"{method} {template}", response))
        return response

    call("POST", "/api/v1/webhook_endpoints", json={"webhook_endpoint": {
        "webhook_url": f"{lago['receiver_url']}/usage", "signature_algo": "hmac"}})  # fmt: skip
    metrics = {}
    for code, agg, field in [("api_calls", "count_agg", None), ("data_mb", "sum_agg", "mb"),
                             ("peak_seats", "max_agg", "seats"), ("users", "unique_count_agg", "user")]:  # fmt: skip
        body = {"name": code, "code": code, "aggregation_type": agg, "field_name": field}
        metrics[code] = call("POST", "/api/v1/billable_metrics", json={"billable_metric": body}).json()
    call("GET", "/api/v1/billable_metrics", params={"page": 1, "per_page": 10})
    call("GET", "/api/v1/billable_metrics/{code}", "/api/v1/billable_metrics/data_mb")
    call("GET", "/api/v1/billable_metrics/{code}", "/api/v1/billable_metrics/nope")
    call("POST", "/api/v1/billable_metrics", json={"billable_metric": {"name": "x", "code": "api_calls",
         "aggregation_type": "count_agg"}})  # fmt: skip

    def metric_id(code: str) -> str:
        return str(metrics[code]["billable_metric"]["lago_id"])

    charges = [
        {"billable_metric_id": metric_id("api_calls"), "charge_model": "graduated", "properties": {
            "graduated_ranges": [
                {"from_value": 0, "to_value": 2, "flat_amount": "0", "per_unit_amount": "0"},
                {"from_value": 3, "to_value": None, "flat_amount": "1", "per_unit_amount": "0.25"}]}},
        {"billable_metric_id": metric_id("data_mb"), "charge_model": "package",
         "properties": {"amount": "5", "package_size": 100, "free_units": 50}},
        {"billable_metric_id": metric_id("peak_seats"), "charge_model": "standard", "properties": {"amount": "3"}},
        {"billable_metric_id": metric_id("users"), "charge_model": "standard", "properties": {"amount": "0.5"}},
    ]  # fmt: skip
    plan = {"name": "Usage", "code": "USAGE__EUR", "interval": "monthly", "amount_cents": 1000,
            "amount_currency": "EUR", "pay_in_advance": False, "charges": charges}  # fmt: skip
    call("POST", "/api/v1/plans", json={"plan": plan})

    call("POST", "/api/v1/customers", json={"customer": {"external_id": CUSTOMER, "name": "Usage AG",
         "country": "DE", "currency": "EUR"}})  # fmt: skip
    call("POST", "/api/v1/subscriptions", json={"subscription": {"external_customer_id": CUSTOMER,
         "plan_code": "USAGE__EUR", "external_id": SUB, "billing_time": "calendar",
         "subscription_at": f"{PERIOD['start']}T00:00:00Z"}})  # fmt: skip

    # 5 api calls (one sent twice), 260 MB, a peak of 7 seats, 3 distinct users (one removed again: 2).
    call("POST", "/api/v1/events", json={"event": _event("tx-1", "api_calls")})
    call("POST", "/api/v1/events", json={"event": _event("tx-1", "api_calls")})  # resent: counted once
    batch = [_event(f"tx-{i}", "api_calls", i) for i in range(2, 6)]
    # Numbers as strings: the document's ``oneOf`` [string, integer, number] refuses a JSON integer.
    batch += [_event("mb-1", "data_mb", 1, mb="200"), _event("mb-2", "data_mb", 2, mb="60")]
    batch += [_event("seat-1", "peak_seats", 1, seats="4"), _event("seat-2", "peak_seats", 2, seats="7"),
              _event("seat-3", "peak_seats", 3, seats="5")]  # fmt: skip
    batch += [_event(f"u-{i}", "users", i, user=u) for i, u in enumerate(["ann", "bob", "cy"])]
    batch += [_event("u-rm", "users", 9, user="cy", operation_type="remove")]
    batch += [_event("odd-1", "unknown_metric"), _event("odd-2", "data_mb", 3)]  # accepted, then reported
    call("POST", "/api/v1/events/batch", json={"events": batch})
    # One invalid event refuses the request; its index names it.
    refused = [_event("bad-0", "api_calls"), {**_event("", "api_calls")}, _event("bad-2", "api_calls")]
    call("POST", "/api/v1/events/batch", json={"events": refused})
    too_many = [_event(f"many-{i}", "api_calls") for i in range(101)]
    call("POST", "/api/v1/events/batch", json={"events": too_many})
    call("GET", "/api/v1/events/{transaction_id:path}", "/api/v1/events/mb-1")
    call("GET", "/api/v1/events/{transaction_id:path}", "/api/v1/events/never-sent")
    call("GET", "/api/v1/customers/{external_id}/current_usage", f"/api/v1/customers/{CUSTOMER}/current_usage",
         params={"external_subscription_id": SUB})  # fmt: skip
    call("GET", "/api/v1/customers/{external_id}/current_usage", f"/api/v1/customers/{CUSTOMER}/current_usage",
         params={"external_subscription_id": "nope"})  # fmt: skip

    billed = admin.post("/__sandbox/lago/clock", json={"to": PERIOD["next"].isoformat()}).json()["invoices"]
    lago["usage_invoices"] = [
        client.get(f"/api/v1/invoices/{i}").json()["invoice"] for i in billed
    ]  # fmt: skip
    assert admin.post("/__sandbox/lago/webhooks/drain").json()["drained"]
    admin.close()
    return calls


def test_usage_exchanges_validate_against_the_openapi_document(
    usage_exchanges: list[tuple[str, httpx.Response]], conforms: Any
) -> None:
    failures = []
    for operation, response in usage_exchanges:
        try:
            conforms(response)
        except Exception as exc:
            failures.append(f"{operation} -> {response.status_code}: {exc!r}"[:2000])
    assert not failures, "\n".join(failures)
    assert {op for op, _ in usage_exchanges} >= USAGE_OPERATIONS


def _by(calls: list[tuple[str, httpx.Response]], op: str) -> list[httpx.Response]:
    return [r for o, r in calls if o == op]


def test_batch_errors_name_the_event_by_index(usage_exchanges: list[tuple[str, httpx.Response]]) -> None:
    batches = _by(usage_exchanges, "POST /api/v1/events/batch")
    assert batches[0].status_code == 200 and len(batches[0].json()["events"]) == 15
    assert batches[1].status_code == 422
    assert batches[1].json()["error_details"] == {"1": {"transaction_id": ["value_is_mandatory"]}}
    assert batches[2].json()["error_details"] == {"events": ["too_many_events"]}
    duplicate = _by(usage_exchanges, "POST /api/v1/events")[1]
    assert duplicate.status_code == 200  # a resent transaction id is accepted, and counted once


def test_current_usage_prices_each_charge_model(
    usage_exchanges: list[tuple[str, httpx.Response]], conformance_lago: dict[str, Any]
) -> None:
    usage = _by(usage_exchanges, "GET /api/v1/customers/{external_id}/current_usage")[0].json()[
        "customer_usage"
    ]
    by_code = {c["billable_metric"]["code"]: c for c in usage["charges_usage"]}
    # count 5 -> graduated: 2 free, then 3 x 0.25 + 1 flat = 1.75
    assert (by_code["api_calls"]["units"], by_code["api_calls"]["amount_cents"]) == ("5.0", 175)
    # sum 260 MB (the event without "mb" adds nothing) -> package: 210 beyond 50 free = 3 packages x 5
    assert (by_code["data_mb"]["units"], by_code["data_mb"]["amount_cents"]) == ("260.0", 1500)
    assert (by_code["peak_seats"]["units"], by_code["peak_seats"]["amount_cents"]) == (
        "7.0",
        2100,
    )  # max 7 x 3
    assert (by_code["users"]["units"], by_code["users"]["amount_cents"]) == ("2.0", 100)  # 2 users x 0.5
    assert usage["amount_cents"] == 175 + 1500 + 2100 + 100
    assert usage["taxes_amount_cents"] == 736  # Germany's 19 % of 38.75
    assert usage["from_datetime"] == f"{PERIOD['start']}T00:00:00Z"
    assert conformance_lago["sandbox"].effects.count("event.create", "tx-1") == 1


def test_period_end_invoice_carries_the_usage_fees(
    usage_exchanges: list[tuple[str, httpx.Response]], conformance_lago: dict[str, Any]
) -> None:
    invoices = [i for i in conformance_lago["usage_invoices"] if i["customer"]["external_id"] == CUSTOMER]
    assert len(invoices) == 1
    fees = {f["item"]["code"]: f for f in invoices[0]["fees"]}
    assert fees["USAGE__EUR"]["amount_cents"] == 1000
    assert fees["api_calls"]["item"]["item_type"] == "BillableMetric"
    assert fees["api_calls"]["lago_charge_id"]
    assert {c: fees[c]["amount_cents"] for c in ("api_calls", "data_mb", "peak_seats", "users")} == {
        "api_calls": 175, "data_mb": 1500, "peak_seats": 2100, "users": 100}  # fmt: skip
    assert invoices[0]["fees_amount_cents"] == 1000 + 3875


def test_usage_webhooks_validate_and_report_processing_errors(
    usage_exchanges: list[tuple[str, httpx.Response]], conformance_lago: dict[str, Any], lago_openapi: Any
) -> None:
    from openapi_core.validation.request.validators import V31WebhookRequestBodyValidator

    deadline = time.monotonic() + 10
    while True:
        received = [r for r in conformance_lago["receiver"].accepted() if r.path.startswith("/usage")]
        types = {httpx.Response(200, content=r.body).json()["webhook_type"] for r in received}
        if {"billable_metric.created", "plan.created", "events.errors", "invoice.drafted"} <= types:
            break
        assert time.monotonic() < deadline, f"webhooks received: {sorted(types)}"
        time.sleep(0.1)
    validator = V31WebhookRequestBodyValidator(lago_openapi.spec)
    errors = None
    for hook in received:
        payload = httpx.Response(200, content=hook.body).json()
        validator.validate(
            WebhookCall(payload["webhook_type"].replace(".", "_"), dict(hook.headers), hook.body)
        )
        if payload["webhook_type"] == "events.errors":
            errors = payload["events_errors"]
    assert errors is not None
    assert errors["invalid_code"] == ["odd-1"] and errors["missing_aggregation_property"] == ["odd-2"]
