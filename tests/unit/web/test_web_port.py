"""The web app runs on the hub's port alone: a stand-in with only what ``HubPort`` declares serves health,
a signed webhook into a route's inbox (deduplicated, the route woken) and the admin API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from lead2cash.config.schema import WebhookTrigger
from lead2cash.web.app import create_app
from lead2cash.web.port import HubPort

SECRET = "hook-secret-1234"


class Inbox:
    source = None  # no system-specific verification: the route's HMAC secret

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.receipts: set[tuple[str, str]] = set()

    def submit_counted(self, records: Any, *, receipt: Any = None, xrefs: Any = ()) -> tuple[int, int] | None:
        if receipt in self.receipts:
            return None
        self.receipts.add(receipt)
        self.records.extend(records)
        return len(records), 0


class StandIn:
    """Exactly the members of HubPort; nothing of the hub."""

    def __init__(self) -> None:
        trigger = WebhookTrigger(type="webhook", secret=SecretStr(SECRET))
        self.config = SimpleNamespace(web=SimpleNamespace(admin_token=SecretStr("admin-token")), systems={})
        self.route_configs = {
            "orders": SimpleNamespace(source=SimpleNamespace(system="crm", trigger=trigger))
        }
        self.routes = {"orders": Inbox()}
        self.store = SimpleNamespace(backend="sqlite", dlq_list=lambda *a: [], dlq_get=lambda i: None)
        registry = CollectorRegistry()
        self.metrics = SimpleNamespace(
            registry=registry,
            webhook_events=Counter("events", "e", ["source", "type", "outcome"], registry=registry),
        )
        self.summary = None
        self.store_unavailable: str | None = None
        self.woken: list[str] = []

    def store_failed(self, exc: BaseException) -> None:
        raise AssertionError(exc)

    def wake(self, name: str) -> None:
        self.woken.append(name)


def test_the_web_app_serves_over_the_port_alone() -> None:
    hub = StandIn()
    port: HubPort = hub  # type: ignore[assignment]  # SimpleNamespace members: structurally the port
    body = b'{"id": "o-1"}'
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    signed = {"X-Signature": signature, "X-Unique-Key": "d-1"}
    auth = {"Authorization": "Bearer admin-token"}

    async def go() -> None:
        transport = httpx.ASGITransport(app=create_app(port))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            health = await client.get("/health")
            assert health.json() == {"status": "ok", "routes": ["orders"], "store": "sqlite"}
            assert (await client.post("/webhooks/orders", content=body, headers=signed)).status_code == 202
            again = await client.post("/webhooks/orders", content=body, headers=signed)
            assert again.json()["status"] == "duplicate"
            forged = await client.post("/webhooks/orders", content=body, headers={"X-Signature": "x"})
            assert forged.status_code == 401
            assert (await client.get("/admin/dead-letters")).status_code == 401
            assert (await client.get("/admin/dead-letters", headers=auth)).json() == []
            summary = await client.get("/admin/customers/c-1/billing-summary", headers=auth)
            assert summary.status_code == 404
            hub.store_unavailable = "store unavailable for 3.0s"
            assert (await client.get("/health")).status_code == 503

    asyncio.run(go())
    assert hub.routes["orders"].records == [{"id": "o-1"}] and hub.woken == ["orders"]
