"""A source read that outlasts its poll interval (the first read of a large backlog): the ticks that fall
inside it are skipped quietly, no second read runs beside it, and the backlog arrives whole."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import doubles
import pytest

from lead2cash.demo import sample_orders
from lead2cash.hub import Hub
from lead2cash.routes.interfaces import SourceBatch

CONFIG = """
state: {{url: "{url}"}}
logging: {{level: WARNING}}
web: {{enabled: false}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: backlog
    source: {{system: mem, object: orders, trigger: {{type: poll, interval: 100ms}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
    batch_size: 10
"""


def test_a_read_longer_than_the_poll_interval_skips_ticks_without_a_warning(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    doubles.REGISTRY.clear()
    path = tmp_path / "backlog.yaml"
    path.write_text(CONFIG.format(url=store_url))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(50, seed=5)
    system.records.extend(orders)
    route = hub.routes["backlog"]
    source = route.source
    assert source is not None
    original = source.read
    reading = 0
    most = 0
    reads = 0

    async def slow_read(checkpoint: str | None, limit: int) -> SourceBatch:
        nonlocal reading, most, reads
        reading += 1
        reads += 1
        most = max(most, reading)
        try:
            await asyncio.sleep(0.15)  # five pages of 10: 0.75 s, over seven ticks of 100 ms
            return await original(checkpoint, limit)
        finally:
            reading -= 1

    source.read = slow_read  # type: ignore[method-assign]

    async def run() -> None:
        await hub.start()
        try:
            for _ in range(200):
                if len(system.target("bill", {}).effects) == len(orders):
                    break
                await asyncio.sleep(0.05)
        finally:
            await hub.stop()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    hub.close()
    assert len(system.target("bill", {}).effects) == len(orders)
    assert max(system.target("bill", {}).effects.values()) == 1
    assert most == 1, "a second read of the source ran beside the first"
    assert reads >= 5  # five pages
    noisy = [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]
