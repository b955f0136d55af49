"""Shared helpers of the Lago connector tests (fixtures are re-exported by conftest.py). A Lago sandbox per test module, orders built from the shared catalogue, and hub configs that bill them."""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import doubles
import httpx
import pytest

from lead2cash.sandbox.catalog import COUNTRY_BY_CURRENCY, PRODUCTS
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.lago.webhooks import DispatchSettings

RECURRING = [p for p in PRODUCTS if p.recurring]
ONE_TIME = [p for p in PRODUCTS if not p.recurring]


class LagoTestEnv:
    def __init__(self, sandbox: LagoSandbox, cluster: Any) -> None:
        self.sandbox = sandbox
        self.cluster = cluster
        self.base_url = cluster.base_url("lago")
        tls = ssl.create_default_context(cafile=str(cluster.ca_bundle))
        self.api = httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            verify=tls,
            headers={"Authorization": f"Bearer {sandbox.api_key}"},
            timeout=15,
            trust_env=False,
        )
        self.admin = httpx.Client(
            base_url=f"{self.base_url}/__sandbox", verify=tls, timeout=30, trust_env=False
        )

    def system_config(self, **overrides: Any) -> dict[str, Any]:
        """The sandbox's own ``hub_config()`` output, as the hub takes it."""
        config = dict(self.cluster.hub_config()["lago"])
        config.update(overrides)
        return config

    def faults(self, rules: dict[str, dict[str, Any]]) -> None:
        response = self.admin.put("/faults", json={"rules": rules})
        assert response.status_code == 200, response.text

    def effects(self) -> dict[str, dict[str, int]]:
        return dict(self.admin.get("/effects").json())

    def invoices(self, **params: Any) -> list[dict[str, Any]]:
        out, page = [], 1
        while True:
            data = self.api.get("/invoices", params={**params, "page": page, "per_page": 100}).json()
            out.extend(data["invoices"])
            if not data["meta"]["next_page"]:
                return out
            page += 1

    def close(self) -> None:
        self.api.close()
        self.admin.close()


@pytest.fixture(scope="module")
def lago(start_sandboxes: Any) -> Iterator[LagoTestEnv]:
    sandbox = LagoSandbox(
        seed=5,
        seed_size=2,
        webhook_settings=DispatchSettings(retry_schedule_s=(0.05, 0.1), max_attempts=3, reorder_window_s=0.2),
    )
    cluster = start_sandboxes(sandbox)
    env = LagoTestEnv(sandbox, cluster)
    yield env
    env.faults({})
    env.close()


@pytest.fixture(autouse=True)
def _fresh_registry() -> None:
    doubles.REGISTRY.clear()


def make_orders(
    count: int, *, prefix: str, seed: int = 1, currencies: tuple[str, ...] = ("USD", "EUR", "GBP", "JPY")
) -> list[dict[str, Any]]:
    """Canonical Order JSON (the shape of ``lead2cash.demo.sample_orders``) with catalogue products, so
    plans (``<PRODUCT>__<CURRENCY>``) and add-ons exist. Each customer keeps one currency."""
    rng = random.Random(seed)
    customers = max(1, count // 3)
    orders = []
    for i in range(count):
        c = i % customers
        currency = currencies[c % len(currencies)]
        lines: list[dict[str, Any]] = []
        picks = rng.sample(RECURRING, rng.randint(0, 2)) + rng.sample(ONE_TIME, rng.randint(0, 2))
        if not picks:
            picks = [rng.choice(ONE_TIME)]
        for j, product in enumerate(picks):
            line: dict[str, Any] = {
                "id": f"{prefix}-{i:05d}-L{j}",
                "product_code": product.code,
                "product_name": product.name,
                "kind": "recurring" if product.recurring else "one_time",
                "quantity": str(rng.randint(1, 5)),
                "unit_price": {"amount": product.prices[currency], "currency": currency},
                "service_start": "2026-01-01",
            }
            if product.recurring:
                line["billing_period"] = product.interval
            if rng.random() < 0.25:
                line["discount_percent"] = str(rng.choice([5, 10, "12.5"]))
            lines.append(line)
        orders.append(
            {
                "id": f"{prefix}-{i:05d}",
                "customer": {
                    "id": f"{prefix}-ACC-{c:04d}",
                    "name": f"Customer {c}",
                    "email": f"billing{c}@example.com",
                    "tax_id": f"TAX{c:06d}",
                    "currency": currency,
                    "billing_address": {
                        "line1": f"{c} Main Street",
                        "city": "Springfield",
                        "postal_code": "12345",
                        "country": COUNTRY_BY_CURRENCY[currency],
                    },
                },
                "currency": currency,
                "order_date": "2026-01-01",
                "lines": lines,
                "status": "won",
            }
        )
    return orders


def write_config(
    tmp_path: Path,
    lago_system: dict[str, Any],
    *,
    route_extra: str = "",
    target_options: dict[str, Any] | None = None,
    web_port: int | None = None,
    extra_routes: str = "",
    extra_systems: str = "",
) -> Path:
    options = {"plan_table": "lago_plans", **(target_options or {})}
    web = f"web: {{enabled: true, port: {web_port}}}" if web_port else ""
    path = tmp_path / "lago.yaml"
    path.write_text(
        f"""
state: {{url: "sqlite:///{tmp_path / "state.db"}"}}
logging: {{level: WARNING}}
{web}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
  lago: {json.dumps(lago_system)}
{extra_systems}
mappings:
  lago_plans: {{_default: "{{product_code}}__{{currency}}"}}
routes:
  - name: bill
    source: {{system: mem, object: orders, trigger: {{type: poll, interval: 1s}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: lago, action: bill_order, options: {json.dumps(options)}}}
    idempotency_key: "order:{{id}}:v{{version}}"
    ordering_key: "{{customer.id}}"
    concurrency: 32
    retry: {{attempts: 40, initial_backoff: 10ms, max_backoff: 200ms, jitter: 20ms}}
{route_extra}
{extra_routes}
"""
    )
    return path


def run_hub(hub: Any, timeout: float = 80.0) -> bool:
    """Drain the hub, then close the Lago sessions on the same loop (keep-alive connections left open
    would hold the sandbox's shutdown)."""

    async def scenario() -> bool:
        try:
            return bool(await hub.run_until_idle(timeout=timeout))
        finally:
            for system in hub.systems.values():
                close = getattr(system, "aclose", None)
                if close is not None:
                    await close()

    import asyncio

    return asyncio.run(scenario())
