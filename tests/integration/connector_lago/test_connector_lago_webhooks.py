"""Lago -> hub: signed webhooks at /webhooks/lago (duplicated x3, concurrent, reordered), the state gate
against late events, and the poll fallback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import ssl
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from lago_connector_env import LagoTestEnv, run_hub

from lead2cash.adapters.lago import invoice_from_lago
from lead2cash.hub import Hub


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    tmp_path: Path, lago: LagoTestEnv, port: int | None, trigger: str, system: dict[str, Any]
) -> Path:
    web = f"web: {{enabled: true, port: {port}}}" if port else ""
    path = tmp_path / "hooks.yaml"
    path.write_text(
        f"""
state: {{url: "sqlite:///{tmp_path / "state.db"}"}}
logging: {{level: WARNING}}
{web}
systems:
  lago: {json.dumps(system)}
  files: {{type: file, directory: out}}
routes:
  - name: invoices
    source: {{system: lago, object: invoices, trigger: {trigger}}}
    mapping: {{adapter: lago.invoice, entity: Invoice}}
    target: {{system: files, action: append, options: {{object: invoices}}}}
    idempotency_key: "invoice:{{id}}:v{{version}}"
    ordering_key: "{{id}}"
  - name: payments
    source: {{system: lago, object: invoices, options: {{consumer: payments}}, trigger: {trigger}}}
    filter: "webhook_type == 'invoice.payment_status_updated'"
    mapping: {{adapter: lago.payment, entity: Payment}}
    target: {{system: files, action: append, options: {{object: payments}}}}
    idempotency_key: "payment:{{id}}:v{{version}}"
  - name: credit-notes
    source: {{system: lago, object: credit_notes, trigger: {trigger}}}
    mapping: {{adapter: lago.credit_note, entity: CreditNote}}
    target: {{system: files, action: append, options: {{object: credit_notes}}}}
    idempotency_key: "credit_note:{{id}}"
"""
    )
    return path


def _outbox(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / "out" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _sign(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


async def _wait(predicate: Any, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_webhooks_delivered_three_times_reordered_give_one_effect_per_event(
    lago: LagoTestEnv, tmp_path: Path
) -> None:
    port = _free_port()
    system = lago.system_config()
    hmac_key = system["webhook_hmac_key"]
    path = _config(tmp_path, lago, port, "{type: webhook}", system)
    hub_url = f"http://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(lago.cluster.ca_bundle))
    statuses: dict[str, int] = {}
    expected: dict[str, dict[str, Any]] = {}
    notes: list[str] = []

    async def scenario() -> None:
        hub = Hub.from_files([path], configure_logs=False)
        await hub.start()
        api = httpx.AsyncClient(
            base_url=f"{lago.base_url}/api/v1", verify=tls, trust_env=False, timeout=15,
            headers={"Authorization": f"Bearer {lago.sandbox.api_key}"},
        )  # fmt: skip
        admin = httpx.AsyncClient(
            base_url=f"{lago.base_url}/__sandbox", verify=tls, trust_env=False, timeout=30
        )
        local = httpx.AsyncClient(base_url=hub_url, timeout=10, trust_env=False)
        endpoint = None
        try:
            await _wait(lambda: hub._web is not None and hub._web.started)
            response = await api.post(
                "/webhook_endpoints",
                json={
                    "webhook_endpoint": {"webhook_url": f"{hub_url}/webhooks/lago", "signature_algo": "hmac"}
                },
            )
            endpoint = response.json()["webhook_endpoint"]["lago_id"]
            await admin.put("/lago/webhooks", json={"duplicate": 3, "reorder": True})
            customer = f"HOOK-{uuid.uuid4().hex[:6]}"
            await api.post("/customers", json={"customer": {"external_id": customer, "name": "Hook",
                                                            "currency": "EUR", "country": "DE"}})  # fmt: skip
            ids = []
            for i in range(12):
                fee = {"add_on_code": "HW-GW", "units": str(i + 1), "unit_amount_cents": 32999}
                r = await api.post("/invoices", json={"invoice": {"external_customer_id": customer,
                                                                  "currency": "EUR", "fees": [fee]}})  # fmt: skip
                ids.append(r.json()["invoice"]["lago_id"])
            for lago_id in ids[:4]:
                await api.put(f"/invoices/{lago_id}", json={"invoice": {"payment_status": "succeeded"}})
            for lago_id in ids[4:6]:
                await api.put(f"/invoices/{lago_id}", json={"invoice": {"payment_status": "failed"}})
            for lago_id in ids[6:8]:
                await api.post(f"/invoices/{lago_id}/void")
            invoice = (await api.get(f"/invoices/{ids[8]}")).json()["invoice"]
            r = await api.post("/credit_notes", json={"credit_note": {"invoice_id": ids[8], "reason": "other",
                               "items": [{"fee_id": invoice["fees"][0]["lago_id"], "amount_cents": 10000}]}})  # fmt: skip
            notes.append(r.json()["credit_note"]["lago_id"])
            assert (await admin.post("/lago/webhooks/drain", params={"timeout_s": 30})).json()["drained"]
            for lago_id in ids:
                expected[lago_id] = (await api.get(f"/invoices/{lago_id}")).json()["invoice"]
            await _wait(lambda: all(hub.store.count_messages(n, "pending") == 0 for n in hub.routes))

            # A late event (a state older than what was passed on) is acknowledged and ignored.
            late = dict(expected[ids[0]], status="draft", payment_status="pending")
            body = json.dumps({"webhook_type": "invoice.drafted", "object_type": "invoice",
                               "organization_id": "x", "invoice": late}).encode()  # fmt: skip
            headers = {"X-Lago-Signature": _sign(body, hmac_key), "X-Lago-Unique-Key": "late-1"}
            statuses["late"] = (await local.post("/webhooks/lago", content=body, headers=headers)).status_code
            statuses["tampered"] = (
                await local.post("/webhooks/lago", content=body.replace(b"draft", b"final"), headers=headers)
            ).status_code
            statuses["unsigned"] = (
                await local.post("/webhooks/lago", content=body, headers={"X-Lago-Unique-Key": "u-1"})
            ).status_code
            wrong = {"X-Lago-Signature": _sign(body, "not-the-key"), "X-Lago-Unique-Key": "w-1"}
            statuses["wrong_key"] = (
                await local.post("/webhooks/lago", content=body, headers=wrong)
            ).status_code
            await asyncio.sleep(0.2)
        finally:
            if endpoint:
                await api.delete(f"/webhook_endpoints/{endpoint}")
            await admin.put("/lago/webhooks", json={"duplicate": 1, "reorder": False})
            for client in (api, admin, local):
                await client.aclose()
            await hub.stop()
            await hub.systems["lago"].aclose()  # type: ignore[attr-defined]
            hub.close()

    asyncio.run(scenario())
    assert statuses == {"late": 202, "tampered": 401, "unsigned": 401, "wrong_key": 401}

    deliveries = lago.admin.get("/lago/webhooks").json()["deliveries"]
    mine = [d for d in deliveries if d["endpoint"].endswith("/webhooks/lago")]
    sent = Counter(d["unique_key"] for d in mine)
    assert sent and set(sent.values()) == {3}, "each event was sent three times"

    invoices = _outbox(tmp_path, "invoices")
    keys = Counter(i["key"] for i in invoices)
    assert max(keys.values()) == 1, "one downstream effect per event and state"
    latest: dict[str, dict[str, Any]] = {}
    for item in invoices:
        entity = item["entity"]
        if entity["id"] in expected and entity["version"] >= latest.get(entity["id"], {}).get("version", 0):
            latest[entity["id"]] = entity
    assert set(latest) == set(expected)
    for lago_id, raw in expected.items():
        truth = invoice_from_lago({"invoice": json.loads(json.dumps(raw))}, {})
        got = latest[lago_id]
        assert (got["status"], got["payment_status"], got["total"]) == (
            truth.status.value, truth.payment_status.value, truth.total.model_dump(mode="json"))  # fmt: skip
    # Versions only go up per invoice in delivery order: no late state overtook a newer one.
    seen: dict[str, int] = {}
    for item in invoices:
        entity = item["entity"]
        assert entity["version"] > seen.get(entity["id"], 0)
        seen[entity["id"]] = entity["version"]

    payments = _outbox(tmp_path, "payments")
    assert max(Counter(p["key"] for p in payments).values()) == 1
    assert {p["entity"]["status"] for p in payments} == {"succeeded", "failed"}
    assert len(payments) == 6
    credit_notes = _outbox(tmp_path, "credit_notes")
    assert [c["entity"]["id"] for c in credit_notes] == notes
    assert credit_notes[0]["entity"]["subtotal"] == {"amount": "100.00", "currency": "EUR"}

    # The receipts survive a restart: a replayed delivery is recognised as a duplicate.
    again = Hub.from_files([path], configure_logs=False)
    assert again.store.receipt_add("webhook:invoices", next(iter(sent))) is False
    again.close()


def test_poll_fallback_reads_invoices_changed_since_the_checkpoint(lago: LagoTestEnv, tmp_path: Path) -> None:
    path = _config(tmp_path, lago, None, "{type: webhook, poll_fallback: 60s}", lago.system_config())
    customer = lago.api.post("/customers", json={"customer": {"external_id": f"POLL-{uuid.uuid4().hex[:6]}",
                             "name": "Poll", "currency": "USD", "country": "US"}}).json()["customer"]  # fmt: skip
    fee = {"add_on_code": "TRN-DAY", "units": "2", "unit_amount_cents": 120000}
    created = lago.api.post("/invoices", json={"invoice": {"external_customer_id": customer["external_id"],
                            "currency": "USD", "fees": [fee]}}).json()["invoice"]  # fmt: skip
    for _ in range(5):  # more unpassed invoices than one batch holds
        lago.api.post("/invoices", json={"invoice": {"external_customer_id": customer["external_id"],
                      "currency": "USD", "fees": [fee]}})  # fmt: skip
    hub = Hub.from_files([path], configure_logs=False)
    for route in hub.routes.values():
        route.batch_size = 2
    client = hub.systems["lago"].client  # type: ignore[attr-defined]
    listings: list[dict[str, Any]] = []
    list_invoices = client.invoices

    def counted(params: dict[str, Any]) -> Any:
        listings.append(dict(params))
        return list_invoices(params)

    client.invoices = counted
    assert run_hub(hub, timeout=60)
    total = len(lago.invoices())
    assert total >= 6
    # Lago has no "updated since" filter: one listing per poll and consumer, however many batches follow
    # (two routes read invoices; run_hub polls twice, the second finding nothing new).
    assert len(listings) == 4, listings
    client.invoices = list_invoices
    first = _outbox(tmp_path, "invoices")
    assert len(first) == total  # every invoice once, in its current state
    mine = [i for i in first if i["entity"]["id"] == created["lago_id"]]
    assert mine[0]["entity"]["total"]["amount"] == "2400.00" and mine[0]["entity"]["status"] == "finalized"

    assert run_hub(hub, timeout=60)
    assert len(_outbox(tmp_path, "invoices")) == total, "nothing new: nothing re-read into the inbox"

    lago.api.put(f"/invoices/{created['lago_id']}", json={"invoice": {"payment_status": "succeeded"}})
    assert run_hub(hub, timeout=60)
    after = _outbox(tmp_path, "invoices")
    assert len(after) == total + 1
    assert after[-1]["entity"]["id"] == created["lago_id"] and after[-1]["entity"]["status"] == "paid"
    payments = _outbox(tmp_path, "payments")
    assert [p["entity"]["invoice_ids"] for p in payments if p["entity"]["status"] == "succeeded"][-1] == [
        created["lago_id"]
    ]

    # An invoice stamped before the checkpoint (its writer committed after a later one was read, or a
    # backdated billing run) is still read: the state gate, not an update-time watermark, decides.
    route = hub.routes["invoices"]
    assert route.source_id is not None
    head = hub.store.checkpoint_get(route.source_id)
    assert head is not None
    hub.store.checkpoint_set(route.source_id, head[:10] + "T23:59:59Z", "test: a later update was read first")
    late = lago.api.post("/invoices", json={"invoice": {"external_customer_id": customer["external_id"],
                         "currency": "USD", "fees": [fee]}}).json()["invoice"]  # fmt: skip
    assert late["updated_at"] < head[:10] + "T23:59:59Z"
    assert run_hub(hub, timeout=60)
    final = _outbox(tmp_path, "invoices")
    assert [i["entity"]["id"] for i in final[len(after) :]] == [late["lago_id"]]
    hub.close()
