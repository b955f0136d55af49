"""The generic webhook trigger over a real socket: signed, deduplicated, handed to the inbox."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from pathlib import Path

import doubles
import httpx

from lead2cash.demo import sample_orders
from lead2cash.hub import Hub

SECRET = "whsec-3141592653"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_signed_deduplicated_webhooks_reach_the_target_once(tmp_path: Path) -> None:
    doubles.REGISTRY.clear()
    port = _free_port()
    path = tmp_path / "hook.yaml"
    path.write_text(
        f"""
state: {{url: "sqlite:///{tmp_path / "s.db"}"}}
logging: {{level: WARNING}}
web: {{enabled: true, port: {port}}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: hooked
    source: {{system: mem, object: events, trigger: {{type: webhook, secret: "{SECRET}", max_body_bytes: 65536}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
"""
    )
    orders = sample_orders(3, seed=4)

    async def scenario() -> dict[str, int]:
        hub = Hub.from_files([path], configure_logs=False)
        await hub.start()
        statuses: dict[str, int] = {}
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                for _ in range(50):
                    try:
                        if (await client.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                body = json.dumps(orders[0]).encode()
                good = {"X-Signature": _sign(body), "X-Unique-Key": "evt-1"}
                sends = await asyncio.gather(
                    *(client.post("/webhooks/hooked", content=body, headers=good) for _ in range(3))
                )
                statuses["dupes_accepted"] = sum(r.status_code == 202 for r in sends)
                tampered = body.replace(b'"ORD-', b'"XRD-')
                statuses["tampered"] = (
                    await client.post("/webhooks/hooked", content=tampered, headers=good)
                ).status_code
                statuses["unsigned"] = (
                    await client.post("/webhooks/hooked", content=body, headers={"X-Unique-Key": "e2"})
                ).status_code
                wrong = {"X-Signature": _sign(body, "another-key"), "X-Unique-Key": "e3"}
                statuses["wrong_key"] = (
                    await client.post("/webhooks/hooked", content=body, headers=wrong)
                ).status_code
                huge = b"[" + b"1," * 40000 + b"1]"
                statuses["huge"] = (
                    await client.post("/webhooks/hooked", content=huge, headers={"X-Signature": _sign(huge)})
                ).status_code
                batch = json.dumps(orders[1:]).encode()
                statuses["batch"] = (
                    await client.post(
                        "/webhooks/hooked",
                        content=batch,
                        headers={"X-Signature": _sign(batch), "X-Unique-Key": "evt-2"},
                    )
                ).status_code
                statuses["metrics"] = (await client.get("/metrics")).status_code
            for _ in range(100):
                if hub.store.count_messages("hooked", "delivered") == 3:
                    break
                await asyncio.sleep(0.05)
        finally:
            await hub.stop()
            hub.close()
        return statuses

    statuses = asyncio.run(scenario())
    assert statuses == {
        "dupes_accepted": 1,
        "tampered": 401,
        "unsigned": 401,
        "wrong_key": 401,
        "huge": 413,
        "batch": 202,
        "metrics": 200,
    }
    target = doubles.REGISTRY["mem"].targets["bill"]
    assert sorted(target.effects) == sorted(f"order:{o['id']}:v1" for o in orders)
    assert max(target.effects.values()) == 1

    # After a restart the sender's unique key is still known: a replayed delivery is a duplicate.
    hub = Hub.from_files([path], configure_logs=False)
    assert hub.store.receipt_add("webhook:hooked", "evt-1") is False
    assert hub.store.count_messages("hooked") == 3, "forged requests never reach the inbox"
    hub.close()
