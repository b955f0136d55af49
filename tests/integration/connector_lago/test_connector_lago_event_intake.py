"""Lago webhook intake, as a finance user tries it: invoices made in the Lago sandbox, their webhook
bodies signed and posted to /webhooks/lago. A payment without its customer and a voided invoice seen as
a payment are dead letters naming the field; event types no route reads are counted and acknowledged; a
duplicate delivery is recognised before mapping (nothing mapped, logged or counted twice). SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import structlog
from lago_connector_env import LagoTestEnv

from lead2cash.hub import Hub


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, store_url: str, port: int, system: dict[str, Any]) -> Path:
    path = tmp_path / "intake.yaml"
    path.write_text(
        f"""
state: {{url: "{store_url}"}}
logging: {{level: WARNING}}
web: {{enabled: true, port: {port}}}
systems:
  lago: {json.dumps(system)}
  files: {{type: file, directory: {tmp_path / "out"}}}
routes:
  - name: payments
    source: {{system: lago, object: invoices, options: {{consumer: payments}}, trigger: {{type: webhook}}}}
    mapping: {{adapter: lago.payment, entity: Payment}}
    target: {{system: files, action: append, options: {{object: payments}}}}
    idempotency_key: "payment:{{id}}:v{{version}}"
  - name: credit-notes
    source: {{system: lago, object: credit_notes, trigger: {{type: webhook}}}}
    mapping: {{adapter: lago.credit_note, entity: CreditNote}}
    target: {{system: files, action: append, options: {{object: credit_notes}}}}
    idempotency_key: "credit_note:{{id}}"
"""
    )
    return path


def _sign(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def _metric(hub: Hub, name: str, **labels: str) -> float:
    for family in hub.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_refused_payments_ignored_types_and_duplicates(
    lago: LagoTestEnv, tmp_path: Path, store_url: str
) -> None:
    port = _free_port()
    system = lago.system_config()
    key = system["webhook_hmac_key"]
    customer = f"INTAKE-{uuid.uuid4().hex[:6]}"
    lago.api.post(
        "/customers",
        json={"customer": {"external_id": customer, "name": "Intake", "currency": "EUR", "country": "DE"}},
    )
    fee = {"add_on_code": "HW-GW", "units": "1", "unit_amount_cents": 32999}
    paid, voided = (
        lago.api.post(
            "/invoices",
            json={"invoice": {"external_customer_id": customer, "currency": "EUR", "fees": [fee]}},
        ).json()["invoice"]["lago_id"]
        for _ in range(2)
    )
    lago.api.put(f"/invoices/{paid}", json={"invoice": {"payment_status": "succeeded"}})
    lago.api.post(f"/invoices/{voided}/void")
    paid_invoice = lago.api.get(f"/invoices/{paid}").json()["invoice"]
    voided_invoice = lago.api.get(f"/invoices/{voided}").json()["invoice"]
    assert voided_invoice["status"] == "voided"
    no_customer = {k: v for k, v in paid_invoice.items() if k not in ("customer", "external_customer_id")}

    def body(webhook_type: str, object_type: str, obj: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "webhook_type": webhook_type,
                "object_type": object_type,
                "organization_id": "org",
                object_type: obj,
            }
        ).encode()

    deliveries = [
        ("no-customer", body("invoice.payment_status_updated", "invoice", no_customer)),
        ("voided", body("invoice.voided", "invoice", voided_invoice)),
        ("customer", body("customer.created", "customer", {"external_id": customer})),
        ("fee", body("fee.created", "fee", {"lago_id": str(uuid.uuid4())})),
        ("payment-failure", body("invoice.payment_failure", "payment_provider_invoice_payment_error", {})),
        ("terminated", body("subscription.terminated", "subscription", {"external_id": "s"})),
        ("event-error", body("event.error", "event_error", {"error": "x"})),
        ("made-up", body("no.such_type", "thing", {})),
        # the same delivery again (Lago re-sends under the same unique key)
        ("no-customer", body("invoice.payment_status_updated", "invoice", no_customer)),
        ("no-customer", body("invoice.payment_status_updated", "invoice", no_customer)),
    ]
    statuses: list[tuple[str, int]] = []
    logged: list[dict[str, Any]] = []
    mapped: list[Any] = []  # what the payments route mapped (a duplicate delivery: nothing)
    path = _config(tmp_path, store_url, port, system)

    async def scenario() -> dict[str, Any]:
        hub = Hub.from_files([path], configure_logs=False)
        await hub.start()
        route = hub.routes["payments"]
        real_mapper = route.mapper

        def counting_mapper(record: Any) -> Any:
            mapped.append(record.get("webhook_type"))
            return real_mapper(record)

        route.mapper = counting_mapper
        local = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False)
        try:
            for _ in range(400):
                if hub._web is not None and hub._web.started:
                    break
                await asyncio.sleep(0.05)
            # The DEBUG lines are asserted: a level filter an earlier test configured must not drop them.
            config = structlog.get_config()
            structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
            try:
                with structlog.testing.capture_logs() as captured:
                    for unique, raw in deliveries:
                        headers = {"X-Lago-Signature": _sign(raw, key), "X-Lago-Unique-Key": unique}
                        response = await local.post("/webhooks/lago", content=raw, headers=headers)
                        statuses.append((unique, response.status_code))
            finally:
                structlog.configure(**config)
            logged.extend(captured)
            dead = hub.store.dlq_list(route="payments")
            return {
                "reasons": sorted(d.error_message for d in dead),
                "dead_metric": _metric(
                    hub, "lead2cash_dead_letters_total", route="payments", stage="mapping"
                ),
                "events": {
                    (s.labels["type"], s.labels["outcome"]): s.value
                    for f in hub.metrics.registry.collect()
                    for s in f.samples
                    if s.name == "lead2cash_webhook_events_total"
                },
                "messages": hub.store.count_messages("payments", "pending"),
            }
        finally:
            await local.aclose()
            await hub.stop()
            await hub.systems["lago"].aclose()  # type: ignore[attr-defined]
            hub.close()

    seen = asyncio.run(scenario())
    assert [s for _, s in statuses[:8]] == [202] * 8, statuses
    assert [s for _, s in statuses[8:]] == [200, 200], statuses
    # Two refusals, each naming its field; nothing guessed, nothing queued.
    assert len(seen["reasons"]) == 2, seen["reasons"]
    assert any("invoice.customer.external_id: missing" in r for r in seen["reasons"]), seen["reasons"]
    assert any("invoice.status: 'voided'" in r for r in seen["reasons"]), seen["reasons"]
    assert seen["messages"] == 0
    # The duplicates were not mapped again: the metric agrees with the stored dead letters.
    assert seen["dead_metric"] == 2
    assert mapped == ["invoice.payment_status_updated", "invoice.voided"]
    warned = [e for e in logged if e.get("event") == "record dead-lettered at mapping"]
    assert len(warned) == 2, warned
    events = seen["events"]
    assert events[("invoice.payment_status_updated", "dead_letter")] == 1
    assert events[("invoice.payment_status_updated", "duplicate")] == 2
    assert events[("invoice.voided", "dead_letter")] == 1
    for kind in ("customer.created", "fee.created", "invoice.payment_failure", "subscription.terminated",
                 "event.error", "other"):  # fmt: skip
        assert events[(kind, "ignored")] == 1, (kind, events)
    ignored = [e for e in logged if e.get("event") == "webhook event read by no route; acknowledged"]
    assert {e["type"] for e in ignored} >= {"customer.created", "fee.created", "other"}
