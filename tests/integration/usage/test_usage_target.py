"""The Lago ``send_usage`` target against the Lago sandbox: batches of at most 100, one refused event
failing alone, a resent batch counted once, Lago's event rate limit respected."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from lead2cash.canonical_model import UsageEvent
from lead2cash.connectors.lago import LagoClient
from lead2cash.errors import PermanentError
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.systems.lago.usage import SendUsageOptions, UsageTarget


@pytest.fixture(scope="module")
def lago(start_sandboxes: Any) -> tuple[LagoSandbox, Any]:
    sandbox = LagoSandbox(seed=4, seed_size=0, events_rate_limit_per_s=20)
    cluster = start_sandboxes(sandbox)
    return sandbox, cluster


def _target(lago: tuple[LagoSandbox, Any], **options: Any) -> UsageTarget:
    sandbox, cluster = lago
    client = LagoClient(
        f"{cluster.base_url('lago')}/api/v1", sandbox.api_key, ca_bundle=str(cluster.ca_bundle)
    )
    return UsageTarget("lago/events", client, SendUsageOptions(**options))


def _event(tx: str, **props: Any) -> UsageEvent:
    return UsageEvent(id=tx, customer_id="c", subscription_id="sub-t", metric_code="api_calls",
                      timestamp=datetime(2026, 1, 5, tzinfo=UTC), properties=props)  # fmt: skip


def test_one_refused_event_fails_alone_and_the_other_99_are_sent(lago: tuple[LagoSandbox, Any]) -> None:
    sandbox, _ = lago
    target = _target(lago)
    events = [_event(f"t1-{i}", n=i) for i in range(100)]
    events[37] = _event("t1-37", nested={"not": "allowed"})

    async def run() -> list[Any]:
        return await asyncio.gather(*(target.deliver(e, e.id) for e in events), return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[37], PermanentError) and "properties" in str(results[37].details)
    assert [r for i, r in enumerate(results) if i != 37] == [f"event:t1-{i}" for i in range(100) if i != 37]
    assert target.requests == 2  # the batch, then the 99 again without the refused one
    stored = {t for (_, t) in sandbox.store.usage.events}
    assert {f"t1-{i}" for i in range(100)} - stored == {"t1-37"}

    # Sent again (a delivery in doubt): accepted, and each stored once.
    again = asyncio.run(run())
    assert again[0] == "event:t1-0"
    assert sandbox.store.usage.received["t1-0"] >= 2
    assert sum(1 for (_, t) in sandbox.store.usage.events if t == "t1-0") == 1


def test_batches_hold_at_most_100_and_respect_the_event_rate_limit(lago: tuple[LagoSandbox, Any]) -> None:
    sandbox, _ = lago
    target = _target(lago, requests_per_second=10)
    events = [_event(f"t2-{i}") for i in range(450)]

    async def run() -> list[Any]:
        return await asyncio.gather(*(target.deliver(e, e.id) for e in events))

    started = time.monotonic()
    results = asyncio.run(run())
    assert len(results) == 450 and target.requests == 5  # 100 x 4 + 50
    assert time.monotonic() - started >= 0.35  # five requests at 10/s are spaced over 0.4 s
    assert sandbox.effects.count("event.create", "t2-449") == 1
