"""A Lago sandbox and a webhook receiver served over HTTPS on real sockets, for the whole session."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.lago.receiver import WebhookReceiver
from lead2cash.sandbox.lago.webhooks import DispatchSettings


class LagoEnv:
    def __init__(self, sandbox: LagoSandbox, receiver: WebhookReceiver, cluster: Any) -> None:
        self.sandbox = sandbox
        self.receiver = receiver
        self.cluster = cluster
        self.tls = ssl.create_default_context(cafile=str(cluster.ca_bundle))
        self.base_url = cluster.base_url("lago")
        self.receiver_url = cluster.base_url(receiver.name)
        self.api = httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            verify=self.tls,
            headers={"Authorization": f"Bearer {sandbox.api_key}"},
            timeout=10,
        )
        self.admin = httpx.Client(base_url=f"{self.base_url}/__sandbox", verify=self.tls, timeout=15)

    def customer(self, currency: str = "EUR", country: str = "DE", **extra: Any) -> str:
        external_id = f"it-{uuid.uuid4().hex[:10]}"
        body = {"external_id": external_id, "name": "Acme", "currency": currency, "country": country, **extra}
        response = self.api.post("/customers", json={"customer": body})
        assert response.status_code == 200, response.text
        return external_id

    def effects(self) -> dict[str, dict[str, int]]:
        return self.admin.get("/effects").json()

    def drain(self) -> None:
        assert self.admin.post("/lago/webhooks/drain").json()["drained"]

    def endpoint(self, path: str, algo: str = "hmac", **extra: Any) -> str:
        response = self.api.post(
            "/webhook_endpoints",
            json={
                "webhook_endpoint": {
                    "webhook_url": f"{self.receiver_url}{path}",
                    "signature_algo": algo,
                    **extra,
                }
            },
        )
        assert response.status_code == 200, response.text
        return response.json()["webhook_endpoint"]["lago_id"]

    def close(self) -> None:
        self.api.close()
        self.admin.close()


@pytest.fixture(scope="session")
def lago_env(start_sandboxes: Any) -> Iterator[LagoEnv]:
    sandbox = LagoSandbox(
        seed=2,
        seed_size=3,
        unsupported_currencies=(),  # KWD on, to exercise 3-decimal amounts
        webhook_settings=DispatchSettings(retry_schedule_s=(0.05, 0.1), max_attempts=3, reorder_window_s=0.1),
    )
    receiver = WebhookReceiver()
    cluster = start_sandboxes(sandbox, receiver)
    sandbox.webhooks.set_verify(str(cluster.ca_bundle))
    env = LagoEnv(sandbox, receiver, cluster)
    yield env
    env.close()


@pytest.fixture()
def hooks(lago_env: LagoEnv) -> Iterator[str]:
    """A fresh receiver path; the endpoints registered for it are removed afterwards."""
    path = f"/hooks/{uuid.uuid4().hex[:8]}"
    yield path
    lago_env.drain()
    for endpoint in lago_env.api.get("/webhook_endpoints", params={"per_page": 100}).json()[
        "webhook_endpoints"
    ]:
        if endpoint["webhook_url"].startswith(f"{lago_env.receiver_url}{path}"):
            lago_env.api.delete(f"/webhook_endpoints/{endpoint['lago_id']}")
    lago_env.admin.put("/lago/webhooks", json={"duplicate": 1, "reorder": False, "paused": False})
