"""Scenario 3, webhook abuse, on the whole hub: the shipped routes on the three sandboxes, Lago's dispatcher
sending every event three times at once and newest first, then forged and replayed requests by hand.

Pass criteria: one SAP journal entry per finalized invoice (the sandbox counts effects per key), 401 for
every forged request, and no forged request leaves a trace in the inbox (messages, receipts and dead
letters counted in the store before and after); an old delivery replayed after a hub restart is
recognised (200 duplicate) and adds nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from reliability_support import hmac_b64, inbox_census, report, size
from waiting import async_wait_until

from lead2cash.demo.environment import LeadToCash
from lead2cash.hub import Hub
from lead2cash.store import EffectState

DEALS = size(8, 200)


def _forge(body: bytes) -> bytes:
    """The same event for another invoice: had it been accepted, it would be a new inbox message."""
    payload = json.loads(body)
    invoice = payload["invoice"]
    invoice["lago_id"] = str(uuid.uuid4())
    invoice["number"] = f"FORGED-{uuid.uuid4().hex[:8]}"
    return json.dumps(payload, separators=(",", ":")).encode()


async def _restart(env: LeadToCash) -> None:
    """Stop the hub and start a new one on the same config and state store (as a redeploy would)."""
    await env.stop()
    env.hub.close()
    env.hub = Hub.from_files(env.config_files, configure_logs=False)
    await env.hub.start()
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:

        async def up() -> bool:
            try:
                return (await client.get(f"http://127.0.0.1:{env.web_port}/health")).status_code == 200
            except httpx.TransportError:
                return False

        await async_wait_until(up, timeout=10, what="the restarted hub's /health")


def test_duplicated_reordered_forged_and_replayed_webhooks(tmp_path: Path, store_url: str) -> None:
    env = LeadToCash(tmp_path / "l2c", seed=8, seed_size=DEALS + 20, store_url=store_url)
    hook = f"http://127.0.0.1:{env.web_port}/webhooks/lago"
    hmac_key = env.lago.signer.hmac_key
    figures: dict[str, Any] = {}

    async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await client.post(hook, content=body, headers=headers)

    async def scenario() -> dict[str, int]:
        statuses: dict[str, int] = {}
        settings = {"duplicate": 3, "reorder": True, "reorder_window_s": 0.2}
        env.http["lago"].put("/__sandbox/lago/webhooks", json=settings).raise_for_status()
        await env.start()
        env.close_won(DEALS)
        assert await env.wait_settled(timeout=150), env.progress()
        env.advance_billing(35)  # subscription invoices: more events, sent three times each, reordered
        env.drain_webhooks()
        assert await env.wait_settled(timeout=150), env.progress()

        store = env.hub.store
        invoice_events = [d for d in env.lago.webhooks.deliveries if d.webhook_type == "invoice.created"]
        assert invoice_events, "the billing engine sent no invoice.created"
        genuine = invoice_events[0]
        before = inbox_census(store)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            forged = _forge(genuine.body)
            fresh = {"Content-Type": "application/json", "X-Lago-Signature-Algorithm": "hmac"}
            attempts = {
                "unsigned": (forged, {**fresh, "X-Lago-Unique-Key": "forged-1"}),
                "tampered": (forged, {**genuine.headers, "X-Lago-Unique-Key": "forged-2"}),
                "tampered_same_key": (forged, dict(genuine.headers)),
                "wrong_key": (
                    forged,
                    {**fresh, "X-Lago-Signature": hmac_b64("not-the-key", forged), "X-Lago-Unique-Key": "f3"},
                ),
                "empty_signature": (forged, {**fresh, "X-Lago-Signature": "", "X-Lago-Unique-Key": "f4"}),
                "jwt_garbage": (
                    forged,
                    {
                        **fresh,
                        "X-Lago-Signature-Algorithm": "jwt",
                        "X-Lago-Signature": "eyJhbGciOiJub25lIn0.eyJkYXRhIjoie30ifQ.",
                        "X-Lago-Unique-Key": "f5",
                    },
                ),
                "hmac_of_other_body": (
                    forged,
                    {
                        **fresh,
                        "X-Lago-Signature": hmac_b64(hmac_key, genuine.body),
                        "X-Lago-Unique-Key": "f6",
                    },
                ),
            }
            for name, (body, headers) in attempts.items():
                statuses[name] = (await post(client, body, headers)).status_code
            # Every forged kind again, three times at once (as a flood would come).
            burst = await asyncio.gather(
                *(post(client, b, h) for _ in range(3) for (b, h) in attempts.values())
            )
            statuses["burst_all_401"] = int(all(r.status_code == 401 for r in burst))
            # No wait: a receiver answers after it stored (or refused) what it was sent.
            after_forgery = inbox_census(store)
            figures["forged_requests"] = len(attempts) + len(burst)

            # A replay of an old, genuine delivery after a restart: recognised, nothing added.
            await _restart(env)
            store = env.hub.store
            oldest = env.lago.webhooks.deliveries[0]
            replays = await asyncio.gather(*(post(client, oldest.body, oldest.headers) for _ in range(3)))
            statuses["replay_after_restart"] = max(r.status_code for r in replays)
            statuses["replay_said_duplicate"] = int(
                all(
                    all(v.get("status") == "duplicate" for v in r.json().values())
                    for r in replays
                    if r.status_code == 200
                )
            )
            after_replay = inbox_census(store)
        statuses["census_unchanged_by_forgery"] = int(before == after_forgery)
        statuses["census_unchanged_by_replay"] = int(after_forgery == after_replay)
        figures["census"] = after_replay
        await async_wait_until(lambda: env.settled(), timeout=60)
        await env.stop()
        return statuses

    try:
        statuses = asyncio.run(scenario())
        assert statuses == {
            "unsigned": 401,
            "tampered": 401,
            "tampered_same_key": 401,
            "wrong_key": 401,
            "empty_signature": 401,
            "jwt_garbage": 401,
            "hmac_of_other_body": 401,
            "burst_all_401": 1,
            "replay_after_restart": 200,
            "replay_said_duplicate": 1,
            "census_unchanged_by_forgery": 1,
            "census_unchanged_by_replay": 1,
        }, statuses

        # The dispatcher really sent each event three times (concurrently) to the hub.
        sent = Counter(d.unique_key for d in env.lago.webhooks.deliveries)
        log = env.http["lago"].get("/__sandbox/lago/webhooks").json()["deliveries"]
        copies = Counter(entry["unique_key"] for entry in log if entry["endpoint"].endswith("/webhooks/lago"))
        assert sent and min(copies[k] for k in sent) >= 3, "each event was sent at least three times"

        # One effect per event: one journal entry per finalized invoice, nothing unconfirmed.
        agreement = env.agreement()
        assert agreement.agree, agreement.problems[:10]
        posted = env.effects("sap")["journal_entry.post"]
        assert max(posted.values()) == 1, {k: v for k, v in posted.items() if v > 1}
        assert len(posted) == agreement.invoices > 0
        assert env.hub.store.effects_in_state(EffectState.SENT) == 0
        assert env.hub.store.dlq_count() == 0, [d.error_message for d in env.hub.store.dlq_list()]
        forged_in_store = [
            m for m in env.hub.store.messages_for("posted-invoice-to-ledger") if "FORGED-" in m.payload
        ]
        assert not forged_in_store
        report(
            "3-webhook-abuse",
            store=env.hub.store.backend,
            deals=DEALS,
            events=len(sent),
            deliveries_received=sum(copies.values()),
            invoices=agreement.invoices,
            journal_entries=len(posted),
            duplicated=sum(v - 1 for v in posted.values()),
            lost=agreement.invoices - len(posted),
            **figures,
        )
    finally:
        env.close()


def test_an_old_signed_delivery_replayed_under_a_new_unique_key_changes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    """Lago signs the body only (HMAC, or a JWT of the body without a time): no timestamp, and the
    ``X-Lago-Unique-Key`` header is not signed. So a captured genuine delivery can be replayed any time
    later under a fresh unique key, and the receipt check lets it through. What absorbs it is the
    per-consumer state gate (an event older than the state a route passed on is dropped) and the
    idempotency keys (an event at the current state maps to a key already in the inbox).

    Here: capture a real signed ``invoice.created`` delivery, let the invoice move on (paid: its payment
    status is written back to the Opportunity), then replay the old delivery, and the current one, each
    under a new unique key. Both verify (202/200); no inbox message, no effect in any system, and the
    Opportunity keeps the newer payment status."""
    env = LeadToCash(tmp_path / "l2c", seed=21, seed_size=24, store_url=store_url)
    hook = f"http://127.0.0.1:{env.web_port}/webhooks/lago"
    lago_auth = {"Authorization": f"Bearer {env.lago.api_key}"}
    statuses: dict[str, Any] = {}

    def payment_statuses() -> dict[str, str | None]:
        opps = env.soql("SELECT Id, Billing_Payment_Status__c FROM Opportunity WHERE IsWon = true")
        return {o["Id"]: o["Billing_Payment_Status__c"] for o in opps}

    async def scenario() -> None:
        await env.start()
        env.close_won(2)
        assert await env.wait_settled(timeout=120), env.progress()
        created = [
            d
            for d in env.lago.webhooks.deliveries
            if d.webhook_type in ("invoice.created", "invoice.one_off_created")
        ]
        assert created, "the billing engine sent no invoice creation event"
        captured = created[0]  # a real delivery, as an eavesdropper on the way would have kept it
        invoice_id = json.loads(captured.body)["invoice"]["lago_id"]

        # The invoice moves on: paid. Both consumers pass the new state; the deal shows it.
        env.http["lago"].put(
            f"/api/v1/invoices/{invoice_id}",
            json={"invoice": {"payment_status": "succeeded"}},
            headers=lago_auth,
        ).raise_for_status()
        env.drain_webhooks()
        assert await env.wait_settled(timeout=120), env.progress()
        await async_wait_until(lambda: "Paid" in payment_statuses().values(), timeout=30)
        paid = [
            d
            for d in env.lago.webhooks.deliveries
            if d.webhook_type == "invoice.payment_status_updated"
            and json.loads(d.body)["invoice"]["lago_id"] == invoice_id
        ]
        assert paid
        before = {
            "census": inbox_census(env.hub.store),
            "effects": {s: env.effects(s) for s in ("salesforce", "lago", "sap")},
            "deals": payment_statuses(),
        }

        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            for name, delivery in (("old_created", captured), ("current_paid", paid[-1])):
                replay = {**delivery.headers, "X-Lago-Unique-Key": f"replayed-{uuid.uuid4()}"}
                answer = await client.post(hook, content=delivery.body, headers=replay)
                statuses[name] = answer.status_code
                statuses[f"{name}_records"] = sorted(
                    v.get("records", v.get("status")) for v in answer.json().values()
                )
                statuses["routes"] = len(answer.json())
        assert await env.wait_settled(timeout=60), env.progress()
        # The document write-back route polls every 2 s: poll it now rather than wait for its tick.
        await env.hub.ingest("ledger-document-to-opportunity")
        assert await env.wait_settled(timeout=60), env.progress()
        after = {
            "census": inbox_census(env.hub.store),
            "effects": {s: env.effects(s) for s in ("salesforce", "lago", "sap")},
            "deals": payment_statuses(),
        }
        statuses["receipts_added"] = after["census"]["receipts"] - before["census"]["receipts"]
        before["census"].pop("receipts")
        after["census"].pop("receipts")
        statuses["inbox_unchanged"] = before["census"] == after["census"]
        statuses["effects_unchanged"] = before["effects"] == after["effects"]
        statuses["deals_unchanged"] = before["deals"] == after["deals"]
        statuses["still_paid"] = "Paid" in after["deals"].values()
        await env.stop()

    try:
        asyncio.run(scenario())
        # Accepted as genuine (the signature verifies; the new key is not a duplicate) ...
        assert statuses["old_created"] in (200, 202) and statuses["current_paid"] in (200, 202), statuses
        # (one receipt per webhook route and delivery: the new keys are recorded)
        assert statuses["routes"] == 2 and statuses["receipts_added"] == 2 * 2, statuses
        # ... and absorbed: the old state by the gate (no record passed on), the current one by the keys
        # (its record is passed on and mapped, to a key both inboxes already hold).
        assert statuses["old_created_records"] == [0, 0], statuses
        assert statuses["inbox_unchanged"] and statuses["effects_unchanged"], statuses
        assert statuses["deals_unchanged"] and statuses["still_paid"], statuses
        assert env.hub.store.effects_in_state(EffectState.SENT) == 0
        assert env.hub.store.dlq_count() == 0
        report("3-webhook-replay", store=env.hub.store.backend, **statuses)
    finally:
        env.close()
