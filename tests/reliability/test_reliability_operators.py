"""Scenario 10, operators beside a running hub: lead to cash on the shipped routes (sandboxes and hub as
separate processes), Lago answering every call in 300 ms, while a second process runs the operator commands
that act on the same store: ``dlq replay`` (of won deals whose Lago customer could not be created),
``checkpoint set`` (the Salesforce cursor moved back, to re-read) and ``route resume``. They must never take
over work the running hub owns: 0 lost, 0 duplicated, 0 unexpected effects, every replayed dead letter
delivered by the hub. CI size: ``LEAD2CASH_OPERATOR_DEALS`` (12) deals.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.processes import (
    SALESFORCE_SOURCE,
    lead2cash_cmd,
    rate_limited_routes,
    running,
)
from reliability_support import report, size

DEALS = int(os.environ.get("LEAD2CASH_OPERATOR_DEALS", str(size(12, 200))))
BILLING = SALESFORCE_SOURCE  # the route from won deals to Lago
LATENCY = {"latency_ms": 300}
REFUSED = {**LATENCY, "error_rate": 1.0, "error_statuses": [503]}
# Two attempts, quickly: a deal whose customer Lago refuses becomes a dead letter ("exhausted") at once.
QUICK_RETRY = {"attempts": 2, "initial_backoff": "100ms", "max_backoff": "200ms", "jitter": "50ms"}


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_operator_commands_beside_a_running_hub_lose_and_repeat_nothing(
    tmp_path: Path, store_url: str
) -> None:
    started = time.monotonic()
    workdir = tmp_path / "operators"
    routes = rate_limited_routes(workdir, {}, retry=QUICK_RETRY)
    with running(workdir, seed=31, seed_size=DEALS + 20, store_url=store_url, routes_file=routes) as env:

        def operator(*args: str) -> subprocess.CompletedProcess[str]:
            config = [a for f in env.config_files for a in ("-c", str(f))]
            return subprocess.run(
                lead2cash_cmd(*args[:2], *config, *args[2:]),
                capture_output=True,
                text=True,
                timeout=120,
                cwd=env.workdir,
            )

        env.hub.start()
        # Lago fails every customer upsert for a while: the first won deals become dead letters.
        env.systems.set_faults({"lago": {"*": LATENCY, "customers.create": REFUSED}})
        env.systems.close_won(DEALS // 2)
        _wait(lambda: len(env.store.dlq_list(BILLING)) >= 3, 120, "customers refused")
        env.systems.set_faults({"lago": {"*": LATENCY}})
        source = next(s for s in env.store.checkpoints_all() if s.startswith(f"{BILLING}:"))
        history = len(env.store.checkpoint_history(source, limit=1000))
        # More won deals, so the hub's Lago calls (300 ms each) are in flight while the operator acts.
        env.systems.close_won(DEALS - DEALS // 2)
        _wait(lambda: len(env.store.checkpoint_history(source, limit=1000)) > history, 60, "the next read")
        _wait(lambda: env.store.count_messages(BILLING, "pending") > 0, 60, "deals to bill")

        dead = [d.id for d in env.store.dlq_list(BILLING)]
        replay = operator("dlq", "replay", *map(str, dead))
        earliest = env.store.checkpoint_history(source, limit=1000)[-1]["value"]
        moved = operator("checkpoint", "set", source, earliest, "--reason", "re-read, with the hub running")
        resumed = operator("route", "resume", BILLING)
        _wait(lambda: env.store.count_messages(BILLING, "pending") == 0, 120, "every deal billed")
        env.systems.advance_billing(35)

        settled = env.wait_settled(240)
        assert env.hub.alive and env.hub.starts == 1
        code = env.hub.stop()
        verdict = env.check()
        replayed = env.store.dlq_list(BILLING, status="replayed", limit=1000)
        still_open = [f"{d.route}: {d.error_message[:120]}" for d in env.store.dlq_list()]
        reread = [
            h for h in env.store.checkpoint_history(source, limit=1000) if h["reason"].startswith("re-read")
        ]

    for result in (replay, moved, resumed):
        assert result.returncode == 0, result.stdout + result.stderr
    assert reread, "the checkpoint was moved back"
    assert settled, verdict.problems[:20]
    assert len(replayed) == len(dead) and still_open == []
    # Every replayed invoice posted once (none set aside any more), nothing twice, nothing lost.
    assert verdict.lost == 0, verdict.problems[:20]
    assert verdict.duplicated == 0, verdict.problems[:20]
    assert verdict.unexpected == 0, verdict.problems[:20]
    assert verdict.ok, verdict.problems[:20]
    assert code == 0
    # The replay left delivery to the running hub (on the code before, it delivered beside it).
    assert "a hub is running on this store" in replay.stdout, replay.stdout
    report(
        "operators beside a running hub",
        backend="postgresql" if store_url.startswith("postgresql") else "sqlite",
        deals=verdict.deals,
        invoices=verdict.invoices,
        replayed=len(dead),
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        unexpected=verdict.unexpected,
        elapsed_s=round(time.monotonic() - started, 1),
        checkpoint=json.loads(earliest) if earliest.startswith("{") else earliest,
    )
