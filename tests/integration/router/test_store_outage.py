"""The hub and its store going away: a PostgreSQL restart (a TCP proxy in front of the server drops every
connection and refuses new ones; the real server is never touched) and a full SQLite disk (SQLITE_FULL).
The hub waits for its store, reports unhealthy meanwhile, and resumes on its own: nothing lost, nothing
twice, nothing dead-lettered. And operator commands run beside a live hub never take over its work."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import doubles
import httpx
import pytest
from outage import SqliteDiskFull, TcpProxy, effects
from pydantic import BaseModel

from lead2cash.demo import sample_orders
from lead2cash.hub import Hub
from lead2cash.store import Store
from lead2cash.web.app import create_app

TESTS = Path(__file__).resolve().parents[2]

CONFIG = """
state: {{url: "{url}", worker_id: w1}}
logging: {{level: WARNING}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: orders
    source: {{system: mem, object: orders, trigger: {{type: poll, interval: 1s}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
    concurrency: 4
    retry: {{attempts: 3, initial_backoff: 10ms, max_backoff: 50ms, jitter: 1ms}}
"""


@dataclass
class Outage:
    url: str
    begin: Any
    end: Any


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    """The store's URL, and how to make it unavailable (``begin``) and available again (``end``)."""
    if request.param == "sqlite":
        db = tmp_path / "state.db"
        disk = SqliteDiskFull(db, tmp_path / "disk-full")
        yield Outage(f"sqlite:///{db}", disk.fill, disk.free)
        disk.remove()
        return
    proxy = TcpProxy()
    yield Outage(proxy.url(str(request.getfixturevalue("pg_url"))), proxy.cut, proxy.restore)
    proxy.close()


class CrossReferencingTarget:
    """The memory target, writing a cross-reference in the hub's store after each effect, as the Lago and
    SAP targets do (a customer's partner number, an invoice's document)."""

    def __init__(self, inner: Any, store: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        ref = await self.inner.deliver(entity, key)
        self.store.xref_put("Order", key, "mem", str(ref))
        return ref

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return await self.inner.lookup(entity, key)


async def _until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


@pytest.mark.slow
def test_a_store_outage_is_waited_out_nothing_lost_nothing_dead_lettered(
    tmp_path: Path, outage: Outage
) -> None:
    """#14.5: a store error under a delivery is never the target's (permanent) error; the delivery loops
    survive it, /health says 503 with the reason while it lasts and 200 after, and a stop is clean."""
    doubles.REGISTRY.clear()
    path = tmp_path / "route.yaml"
    path.write_text(CONFIG.format(url=outage.url))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(80, seed=4)
    system.records.extend(orders)
    system.behaviour.slow_keys = {f"order:{o['id']}:v1": 0.1 for o in orders}
    route = hub.routes["orders"]
    route.target = CrossReferencingTarget(route.target, hub.store)
    counted = system.targets["bill"].effects
    health_codes: list[int] = []
    unhealthy: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub"
        ) as web:

            async def health() -> httpx.Response:
                answer = await web.get("/health")
                health_codes.append(answer.status_code)
                return answer

            await hub.start()
            try:
                assert (await health()).status_code == 200
                await _until(lambda: len(counted) >= 8, 20, "deliveries under way")
                outage.begin()
                for _ in range(60):
                    answer = await health()
                    if answer.status_code == 503:
                        unhealthy.append(answer.json())
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.5)
                await health()
                outage.end()
                # The hub resumes on its own: every order delivered, well within a lease (2 min).
                await _until(lambda: len(counted) == len(orders), 30, "every order delivered")
                await _until(lambda: hub.store.count_messages("orders", "pending") == 0, 15, "inbox drained")
                for _ in range(100):
                    if (await health()).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await hub.stop()  # raises if a task died with an error

    asyncio.run(scenario())
    assert max(counted.values()) == 1, "an effect was applied twice"
    assert len(counted) == len(orders)
    assert hub.store.dlq_count() == 0, [d.error_message[:200] for d in hub.store.dlq_list()]
    assert hub.store.count_messages("orders", "delivered") == len(orders)
    # /health: 200, then 503 with the reason while the store was unavailable (2.5 s on), then 200 again.
    assert unhealthy, f"/health kept answering 200 while the store was unavailable: {health_codes}"
    assert unhealthy[0]["status"] == "unavailable" and "store unavailable" in unhealthy[0]["reason"]
    first = health_codes.index(503)
    assert health_codes[0] == 200 and health_codes[first + 1] == 503, health_codes
    assert health_codes[-1] == 200, f"/health did not recover: {health_codes}"
    hub.close()


# ---------------------------------------------------------------------------------------------- operators
SHARED = """
state: {{url: "{url}", worker_id: w1}}
logging: {{level: WARNING}}
systems:
  files: {{type: python, factory: "outage:shared_file_system", options: {{directory: "{dir}", delay_s: 0.3}}}}
routes:
  - name: orders
    source: {{system: files, object: orders, trigger: {{type: poll, interval: 1s}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: files, action: post}}
    idempotency_key: "order:{{id}}:v{{version}}"
    concurrency: 4
    retry: {{attempts: 1}}
"""


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", *args, "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _write_orders(path: Path, orders: list[dict[str, Any]]) -> None:
    with path.open("a") as fh:
        for o in orders:
            fh.write(json.dumps(o) + "\n")


@pytest.mark.slow
def test_dlq_replay_beside_a_running_hub_posts_nothing_twice(tmp_path: Path, store_url: str) -> None:
    """#14.6: ``dlq replay`` from a second process while the hub delivers (a target answering in 300 ms):
    it must not release the hub's leases nor deliver what the hub has in flight."""
    files = tmp_path / "files"
    files.mkdir()
    config = tmp_path / "route.yaml"
    config.write_text(SHARED.format(url=store_url, dir=files))
    orders = sample_orders(41, seed=6)
    rejected = f"order:{orders[0]['id']}:v1"
    (files / "post.reject").write_text(rejected + "\n")
    _write_orders(files / "orders.jsonl", orders[:1])
    hub = Hub.from_files([config], configure_logs=False)
    assert asyncio.run(hub.run_until_idle(timeout=30))
    (dead,) = hub.store.dlq_list("orders")
    (files / "post.reject").unlink()
    _write_orders(files / "orders.jsonl", orders[1:])
    posted = files / "post.effects.jsonl"

    async def scenario() -> subprocess.CompletedProcess[str]:
        await hub.start()
        try:
            await _until(lambda: len(effects(posted)) >= 2, 20, "the hub delivering")
            replay = await asyncio.to_thread(_cli, config, "dlq", "replay", str(dead.id))
            await _until(lambda: len(effects(posted)) == len(orders), 60, "every order posted")
            await _until(lambda: hub.store.count_messages("orders", "pending") == 0, 15, "inbox drained")
            return replay
        finally:
            await hub.stop()

    replay = asyncio.run(scenario())
    assert replay.returncode == 0, replay.stdout + replay.stderr
    counted = effects(posted)
    twice = {k: n for k, n in counted.items() if n > 1}
    assert not twice, f"posted twice: {twice}"
    assert counted[rejected] == 1 and len(counted) == len(orders)
    assert hub.store.dlq_count() == 0
    assert "a hub is running" in replay.stdout
    hub.close()


def test_a_start_never_releases_the_leases_of_a_live_process(tmp_path: Path, store_url: str) -> None:
    """A hub starting (or a `run --until-idle`) releases the leases of crashed runs only: a live process's
    (its heartbeat row not expired, its pid alive) are its deliveries in flight."""
    from lead2cash.store import Instance

    doubles.REGISTRY.clear()
    path = tmp_path / "route.yaml"
    path.write_text(CONFIG.format(url=store_url).replace("worker_id: w1", "worker_id: w2"))
    hub = Hub.from_files([path], configure_logs=False)
    doubles.REGISTRY["mem"].records.extend(sample_orders(3, seed=2))
    hub.routes["orders"].submit(doubles.REGISTRY["mem"].records)
    store = hub.store
    live, crashed = store.claim("orders", "w1", 1, 600_000), store.claim("orders", "w2", 1, 600_000)
    gone = store.claim("orders", "w3", 1, 600_000)
    now = store.clock()
    # w1: a live process on another host; w3: one on this host whose pid is gone (a SIGKILL).
    store.instance_beat(Instance("other:1:a", "w1", "hub", "other-host", 1, now, now + 60_000))
    host = socket.gethostname()
    store.instance_beat(Instance(f"{host}:x", "w3", "hub", host, 2**22 + 7, now, now + 60_000))
    hub._recover_leases()
    owners = {m.id: _owner(store, m.id) for m in [*live, *crashed, *gone]}
    assert owners[live[0].id] == "w1", "a live process's lease was released"
    if store.is_sqlite:
        assert owners[crashed[0].id] is None and owners[gone[0].id] is None
    else:
        assert owners[crashed[0].id] is None, "this worker's own lease from a crashed run is taken back"
        assert owners[gone[0].id] == "w3", "another worker's lease expires on its own"
    hub.close()


def _owner(store: Store, message_id: int) -> str | None:
    from sqlalchemy import select

    from lead2cash.store.schema import messages

    with store.engine.connect() as conn:
        return conn.execute(select(messages.c.lease_owner).where(messages.c.id == message_id)).scalar()


class _HeldSource:
    """The memory source, whose first read waits for ``release`` (a slow page of a large backlog)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def read(self, checkpoint: str | None, limit: int) -> Any:
        self.reading.set()
        await self.release.wait()
        return await self.inner.read(checkpoint, limit)


def test_checkpoint_set_during_a_read_is_not_overwritten_by_it(tmp_path: Path, store_url: str) -> None:
    """``checkpoint set`` beside a running hub: the read under way ends without writing over the
    operator's value, and the next read starts from it."""
    doubles.REGISTRY.clear()
    path = tmp_path / "route.yaml"
    path.write_text(CONFIG.format(url=store_url))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    system.records.extend(sample_orders(30, seed=9))
    route = hub.routes["orders"]
    assert asyncio.run(hub.run_until_idle(timeout=30))
    assert hub.store.checkpoint_get(route.source_id) == "30"
    system.records.extend(sample_orders(40, seed=9)[30:])
    held = _HeldSource(route.source)
    route.source = held

    async def scenario() -> None:
        read = asyncio.create_task(route.ingest_once())
        await held.reading.wait()
        # Another process moves it back, to re-read from record 10.
        other = Store(store_url, migrate=False)
        other.checkpoint_set(route.source_id, "10", "re-read from 10")
        other.close()
        held.release.set()
        await read

    asyncio.run(scenario())
    assert hub.store.checkpoint_get(route.source_id) == "10", (
        "the read under way overwrote the operator's value"
    )
    assert hub.store.count_messages("orders") == 40, "what that read had read is in the inbox"
    held.release.set()
    asyncio.run(route.ingest_once())
    assert hub.store.checkpoint_get(route.source_id) == "40"
    assert hub.store.count_messages("orders") == 40, "the re-read from 10 added nothing twice"
    history = hub.store.checkpoint_history(route.source_id)
    assert [h["value"] for h in history[:2]] == ["40", "10"], history
    hub.close()
