"""One route's confirmed deliveries feed another (the hub as a source), with the target's reference."""

from __future__ import annotations

import asyncio
from pathlib import Path

import doubles

from lead2cash.demo import sample_orders
from lead2cash.hub import Hub

CONFIG = """
state: {{url: "{url}"}}
logging: {{level: WARNING}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
  hub: {{type: hub}}
routes:
  - name: first
    source: {{system: mem, object: orders}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
    retry: {{attempts: 10, initial_backoff: 1ms, max_backoff: 2ms, jitter: 1ms}}
  - name: second
    source: {{system: hub, object: first}}
    mapping: {{adapter: hub.confirmation, entity: Order, options: {{ref_system: billing}}}}
    target: {{system: mem, action: notify}}
    idempotency_key: "notify:{{id}}:{{refs.billing}}"
"""


def test_confirmed_deliveries_feed_the_next_route_with_their_reference(
    tmp_path: Path, store_url: str
) -> None:
    doubles.REGISTRY.clear()
    path = tmp_path / "chain.yaml"
    path.write_text(CONFIG.format(url=store_url))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(40, seed=12)
    system.records.extend(orders)
    system.behaviour.transient_rate = 0.3  # deliveries of "first" complete out of id order
    received: list[str] = []
    notify = system.target("notify", {})
    original = notify.deliver

    async def record(entity, key):  # type: ignore[no-untyped-def]
        received.append(entity.refs["billing"])
        return await original(entity, key)

    notify.deliver = record  # type: ignore[method-assign]
    assert asyncio.run(hub.run_until_idle(timeout=60))
    assert set(received) == {f"ref-order:{o['id']}:v1" for o in orders}
    assert max(notify.effects.values()) == 1
    assert hub.store.checkpoint_get("second:hub/first") is not None
    # Nothing new on a second pass: the checkpoint covers every delivered message.
    assert asyncio.run(hub.run_until_idle(timeout=10))
    assert len(notify.effects) == 40
    hub.close()
