"""One route's confirmed deliveries feed another (the hub as a source), with the target's reference."""

from __future__ import annotations

import asyncio
from pathlib import Path

import doubles
import pytest
from typer.testing import CliRunner

from lead2cash.cli import app
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


def _chain(tmp_path: Path, store_url: str) -> tuple[Hub, doubles.MemorySystem, list[dict]]:
    doubles.REGISTRY.clear()
    path = tmp_path / "chain.yaml"
    path.write_text(CONFIG.format(url=store_url))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(12, seed=14)
    system.records.extend(orders)
    return hub, system, orders


def test_a_replayed_dead_letter_reaches_the_route_reading_its_confirmations(
    tmp_path: Path, store_url: str
) -> None:
    """The source route dead-letters 8 of 12; once fixed and replayed, all 8 are confirmed long after the
    derived route read past them, and every one of them must still reach it."""
    hub, system, orders = _chain(tmp_path, store_url)
    failing = {f"order:{o['id']}:v1" for o in orders[:8]}
    system.behaviour.permanent_keys = set(failing)
    assert asyncio.run(hub.run_until_idle(timeout=60))
    notify = system.targets["notify"]
    assert len(notify.effects) == 4
    dead = hub.store.dlq_list("first")
    assert len(dead) == 8

    system.behaviour.permanent_keys = set()  # the cause is fixed
    for d in dead:
        hub.store.dlq_requeue(d.id)
    for _ in range(3):  # however often the hub runs
        assert asyncio.run(hub.run_until_idle(timeout=60))
    assert len(system.targets["bill"].effects) == 12
    assert sorted(notify.effects) == sorted(f"notify:{o['id']}:ref-order:{o['id']}:v1" for o in orders)
    assert max(notify.effects.values()) == 1
    hub.close()


@pytest.mark.parametrize("routes", [None, ["first"]], ids=["all-routes", "as-dlq-replay"])
def test_until_idle_drains_a_route_fed_by_deliveries_made_in_the_same_run(
    tmp_path: Path, store_url: str, routes: list[str] | None
) -> None:
    """Nothing new to read anywhere, only pending deliveries of the source route: one run must also
    deliver what those confirmations give the derived route, also when only the source route is named
    (``dlq replay`` drains the routes it replayed)."""
    hub, system, orders = _chain(tmp_path, store_url)
    system.behaviour.permanent_keys = {f"order:{o['id']}:v1" for o in orders}
    assert asyncio.run(hub.run_until_idle(timeout=60))
    assert hub.store.dlq_count("first") == 12
    system.behaviour.permanent_keys = set()
    dead = hub.store.dlq_list("first")
    if routes is None:
        for d in dead:
            hub.store.dlq_requeue(d.id)
        assert asyncio.run(hub.run_until_idle(timeout=60))
    else:  # the operator's command, which drains the routes it replayed
        replayed = CliRunner().invoke(
            app, ["dlq", "replay", "-c", str(tmp_path / "chain.yaml"), *(str(d.id) for d in dead)]
        )
        assert replayed.exit_code == 0, replayed.output
    assert len(system.targets["notify"].effects) == 12
    hub.close()


def test_replay_of_a_derived_routes_mapping_dead_letter_reads_the_confirmation_again(
    tmp_path: Path, store_url: str
) -> None:
    doubles.REGISTRY.clear()
    mapped = CONFIG.replace(
        "mapping: {{adapter: hub.confirmation, entity: Order, options: {{ref_system: billing}}}}",
        "mapping: {{adapter: hub.confirmation, entity: Order, options: {{ref_system: billing}}, "
        "value_maps: {{customer.name: names}}}}",
    )
    path = tmp_path / "chain.yaml"
    [order] = sample_orders(1, seed=3)
    name = order["customer"]["name"]
    path.write_text(mapped.format(url=store_url) + "mappings: {names: {nobody: nobody}}\n")
    hub = Hub.from_files([path], configure_logs=False)
    doubles.REGISTRY["mem"].records.append(order)
    assert asyncio.run(hub.run_until_idle(timeout=30))
    [dead] = hub.store.dlq_list("second")
    assert "names" in dead.error_message
    hub.close()
    # The table gets its entry; the confirmation is read again from the store, by its key.
    path.write_text(mapped.format(url=store_url) + f"mappings: {{names: {{{name!r}: Renamed}}}}\n")
    replayed = CliRunner().invoke(app, ["dlq", "replay", "-c", str(path), str(dead.id)])
    assert replayed.exit_code == 0, replayed.output
    assert "re-read from hub/first" in " ".join(replayed.output.split())
    assert list(doubles.REGISTRY["mem"].targets["notify"].effects) == [
        f"notify:{order['id']}:ref-order:{order['id']}:v1"
    ]
