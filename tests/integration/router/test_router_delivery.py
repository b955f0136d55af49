"""Acceptance of the router: a YAML route from an in-memory source to a flaky target, on both stores."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import doubles
import pytest
import structlog
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.connectors.quick_retry import quick_retry
from lead2cash.demo import sample_orders
from lead2cash.errors import TransientError
from lead2cash.hub import Hub

CONFIG = """
state: {{url: "{url}"}}
logging: {{level: WARNING}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: orders
    source: {{system: mem, object: orders, trigger: {{type: poll, interval: 1s}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
    ordering_key: "{{customer.id}}"
    on_failure: {on_failure}
    batch_size: 100
    retry: {{attempts: 25, initial_backoff: 1ms, max_backoff: 5ms, jitter: 1ms, max_inline_wait: {max_inline}}}
"""


@pytest.fixture(autouse=True)
def _fresh_registry() -> None:
    doubles.REGISTRY.clear()


def _hub(
    tmp_path: Path, store_url: str, on_failure: str = "dead-letter", max_inline: str = "30s"
) -> tuple[Path, Hub]:
    path = tmp_path / "route.yaml"
    path.write_text(CONFIG.format(url=store_url, on_failure=on_failure, max_inline=max_inline))
    return path, Hub.from_files([path], configure_logs=False)


def test_thousand_records_exactly_once_through_a_flaky_target(tmp_path: Path, store_url: str) -> None:
    path, hub = _hub(tmp_path, store_url)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(1000, seed=3)
    system.records.extend(orders)
    permanent = {f"order:{orders[i]['id']}:v1" for i in (10, 500, 999)}
    system.behaviour.transient_rate = 0.3
    system.behaviour.lose_response_rate = 0.1
    system.behaviour.permanent_keys = set(permanent)

    assert asyncio.run(hub.run_until_idle(timeout=120))
    target = system.targets["bill"]
    assert len(target.effects) == 997
    assert max(target.effects.values()) == 1, "an effect was applied twice"
    assert target.lookups > 0, "lost responses must be resolved by lookup"
    dead = hub.store.dlq_list("orders")
    assert {d.idempotency_key for d in dead} == permanent
    for d in dead:
        assert d.error_class == "permanent"
        assert "rejected by target" in d.error_message and "customer.name" in d.error_message
        assert json.loads(d.original_payload)["id"] in {orders[i]["id"] for i in (10, 500, 999)}
    hub.close()

    # The target is fixed; an operator replays the dead letters from the CLI.
    system.behaviour.permanent_keys = set()
    result = CliRunner().invoke(app, ["dlq", "replay", "-c", str(path), *[str(d.id) for d in dead]])
    assert result.exit_code == 0, result.output
    assert len(target.effects) == 1000 and max(target.effects.values()) == 1
    check = Hub.from_files([path], configure_logs=False)
    assert check.store.dlq_count("orders") == 0
    assert check.store.count_messages("orders", "delivered") == 1000
    check.close()


def test_malformed_record_is_dead_lettered_and_the_batch_goes_on(tmp_path: Path, store_url: str) -> None:
    _, hub = _hub(tmp_path, store_url)
    system = doubles.REGISTRY["mem"]
    good = sample_orders(20, seed=5)
    bad = dict(good[3], id="BROKEN")
    del bad["customer"]
    negative = json.loads(json.dumps(good[4]))
    negative["id"] = "NEGATIVE"
    negative["lines"][0]["quantity"] = "-2"
    system.records.extend([*good[:3], bad, negative, *good[3:]])

    assert asyncio.run(hub.run_until_idle(timeout=60))
    assert len(system.targets["bill"].effects) == 20
    dead = {json.loads(d.original_payload)["id"]: d for d in hub.store.dlq_list("orders")}
    assert set(dead) == {"BROKEN", "NEGATIVE"}
    assert "customer" in dead["BROKEN"].error_message
    assert "lines.0.quantity" in dead["NEGATIVE"].error_message
    assert all(d.stage == "mapping" for d in dead.values())
    hub.close()


def test_long_retry_after_pauses_the_route_and_loses_nothing(tmp_path: Path, store_url: str) -> None:
    _, hub = _hub(tmp_path, store_url, max_inline="50ms")
    system = doubles.REGISTRY["mem"]
    system.records.extend(sample_orders(30, seed=9))
    system.behaviour.throttle_rate = 0.2
    system.behaviour.retry_after = 0.2  # longer than max_inline_wait: reschedule and pause, not sleep

    assert asyncio.run(hub.run_until_idle(timeout=60))
    target = system.targets["bill"]
    assert len(target.effects) == 30 and max(target.effects.values()) == 1
    assert hub.store.dlq_count("orders") == 0
    assert hub.metrics.paused.labels("orders")._value.get() == 1  # it did pause at least once
    hub.close()


def test_halt_route_policy_stops_at_the_first_permanent_failure(tmp_path: Path, store_url: str) -> None:
    _, hub = _hub(tmp_path, store_url, on_failure="halt-route")
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(5, seed=11)
    system.records.extend(orders)
    system.behaviour.permanent_keys = {f"order:{orders[0]['id']}:v1"}
    hub.routes["orders"].batch_size = 1

    asyncio.run(hub.run_until_idle(timeout=30))
    assert hub.routes["orders"].halted is not None
    assert hub.store.dlq_count("orders") == 0, "halt-route keeps the message in place"
    state = hub.store.route_state_get("orders")
    assert state is not None and state.status == "halted"
    hub.close()

    # The target is fixed; the operator resumes the route from the CLI and nothing was lost.
    system.behaviour.permanent_keys = set()
    path = tmp_path / "route.yaml"
    listed = CliRunner().invoke(app, ["route", "list", "-c", str(path)])
    assert "halted" in listed.output
    assert CliRunner().invoke(app, ["route", "resume", "-c", str(path), "orders"]).exit_code == 0
    hub = Hub.from_files([path], configure_logs=False)
    assert asyncio.run(hub.run_until_idle(timeout=30))
    assert len(system.targets["bill"].effects) == 5
    hub.close()


def test_per_customer_order_is_kept(tmp_path: Path, store_url: str) -> None:
    _, hub = _hub(tmp_path, store_url)
    system = doubles.REGISTRY["mem"]
    base = sample_orders(1, seed=2)[0]
    versions = [dict(base, version=v) for v in range(1, 8)]
    system.records.extend(versions)
    system.behaviour.transient_rate = 0.4
    calls: list[int] = []
    target = system.target("bill", {})
    original = target.deliver

    async def recording(entity, key):  # type: ignore[no-untyped-def]
        result = await original(entity, key)
        calls.append(entity.version)
        return result

    target.deliver = recording  # type: ignore[method-assign]
    assert asyncio.run(hub.run_until_idle(timeout=60))
    assert calls == sorted(calls) == list(range(1, 8))
    hub.close()


def _rate_limited(tmp_path: Path, rate: int, orders: int, seed: int) -> tuple[Hub, Any]:
    """A hub whose one route has ``rate_limit: rate``, with ``orders`` orders to bill; and its target."""
    path = tmp_path / "rate.yaml"
    text = CONFIG.format(url=f"sqlite:///{tmp_path / 's.db'}", on_failure="dead-letter", max_inline="30s")
    path.write_text(text.replace("    batch_size: 100\n", f"    batch_size: 100\n    rate_limit: {rate}\n"))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    system.records.extend(sample_orders(orders, seed=seed))
    return hub, system.target("bill", {})


def test_rate_limit_is_a_ceiling_on_target_calls(tmp_path: Path) -> None:
    hub, target = _rate_limited(tmp_path, rate=50, orders=40, seed=13)
    stamps: list[float] = []
    original = target.deliver

    async def stamped(entity, key):  # type: ignore[no-untyped-def]
        stamps.append(time.monotonic())
        return await original(entity, key)

    target.deliver = stamped
    assert asyncio.run(hub.run_until_idle(timeout=30))
    assert len(target.effects) == 40
    # 40 calls at 50/s take at least 39 intervals of 20 ms; in any 1 s window, at most 50 calls.
    assert stamps[-1] - stamps[0] >= 39 * 0.02 * 0.95
    assert max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps) <= 50
    hub.close()


def test_a_connectors_quick_retries_count_against_the_routes_rate_limit(tmp_path: Path) -> None:
    """A call repeated inside a delivery (a connector's quick retry) takes a slot of the route's ceiling."""
    hub, target = _rate_limited(tmp_path, rate=20, orders=20, seed=17)
    stamps: list[float] = []
    original = target.deliver

    async def first_call_fails(entity, key):  # type: ignore[no-untyped-def]
        calls = 0

        async def call():  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            stamps.append(time.monotonic())
            if calls == 1:
                raise TransientError("503 on the first call")
            return await original(entity, key)

        return await quick_retry(call, safe=True, retries=2, max_inline_wait=5)

    target.deliver = first_call_fails
    assert asyncio.run(hub.run_until_idle(timeout=30))
    assert len(target.effects) == 20 and len(stamps) == 40
    # 40 calls at 20/s: at most 20 in any 1 s window (one more for a timer that fired late).
    assert max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps) <= 21
    assert stamps[-1] - stamps[0] >= 39 * 0.05 * 0.95
    hub.close()


def test_a_delivery_that_outlives_its_lease_is_not_started_twice(tmp_path: Path, store_url: str) -> None:
    """Deliveries are refilled as others finish; one still in flight when its lease runs out must neither
    be claimed again by this worker nor be left to another one (its lease is renewed while it runs)."""
    path = tmp_path / "route.yaml"
    text = CONFIG.format(url=store_url, on_failure="dead-letter", max_inline="30s")
    path.write_text(text.replace(f'url: "{store_url}"}}', f'url: "{store_url}", lease: 300ms}}'))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(40, seed=5)
    system.records.extend(orders)
    slow = f"order:{orders[0]['id']}:v1"
    # The others keep finishing (and the route refilling) after the slow one's 300 ms lease ran out.
    system.behaviour.slow_keys = {f"order:{o['id']}:v1": 0.2 for o in orders} | {slow: 1.5}

    claims: list[int] = []
    claim = hub.store.claim

    def counted(route: str, worker: str, limit: int, lease_ms: int) -> list:  # type: ignore[type-arg]
        got = claim(route, worker, limit, lease_ms)
        claims.extend(m.id for m in got)
        return got

    hub.store.claim = counted  # type: ignore[method-assign]
    assert asyncio.run(hub.run_until_idle(timeout=60))
    target = system.targets["bill"]
    assert target.effects[slow] == 1
    assert target.calls == len(orders), "every message started once, the slow one included"
    assert target.lookups == 0, "nothing was ever ambiguous"
    assert len(claims) == len(set(claims)), "no message claimed twice: its lease was renewed in flight"
    hub.close()


def test_a_connectors_log_lines_carry_the_route_key_and_trace_of_the_message(
    tmp_path: Path, store_url: str
) -> None:
    """The router binds route, idempotency key and trace id in structlog's contextvars for each delivery
    (merged into every log line by the hub's logging), so a connector logging with its own logger is
    traced to the message it serves, and deliveries running side by side do not see each other's."""
    _, hub = _hub(tmp_path, store_url)
    system = doubles.REGISTRY["mem"]
    system.records.extend(sample_orders(20, seed=5))
    assert asyncio.run(hub.run_until_idle(timeout=60))
    contexts = system.targets["bill"].contexts
    traces = {m.idempotency_key: m.trace_id for m in hub.store.messages_for("orders", "delivered")}
    hub.close()
    assert len(contexts) == 20 and set(contexts) == set(traces)
    for key, context in contexts.items():
        assert context == {"route": "orders", "key": key, "trace_id": traces[key]}
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks out of the deliveries
