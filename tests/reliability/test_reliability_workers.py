"""Several workers on one PostgreSQL store, under SIGKILL and SIGSTOP: the lead-to-cash flow with three hub
processes sharing the work. Random workers are killed (and restarted) or frozen longer than the lease (and
resumed), while deals are won and invoices come due; the frozen worker's messages are taken over by the
others, and when it resumes it writes nothing it no longer holds (fencing). Checked as the crash scenario
is: lost = 0, duplicated = 0, unexpected = 0, nothing left "sent". Then, idle, three workers spend the
Salesforce API budget of one: only the holder of a source's lease polls it.

CI size: ``LEAD2CASH_WORKERS_DEALS`` (60) deals over ``LEAD2CASH_WORKERS_ROUNDS`` (4) rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from harness.processes import HubProcess, ProcessLeadToCash, rate_limited_routes, running

from lead2cash.demo.environment import free_port

DEALS = int(os.environ.get("LEAD2CASH_WORKERS_DEALS", "60"))
ROUNDS = int(os.environ.get("LEAD2CASH_WORKERS_ROUNDS", "4"))
LEASE_S = 3.0
IDLE_WINDOW_S = 20.0

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _workers(env: ProcessLeadToCash, count: int) -> list[HubProcess]:
    """``count`` hub processes on the run's store, each with its own worker id and web port. The first is
    the run's own hub (the billing engine's webhooks go to it)."""
    base = json.loads(env.systems_file.read_text())
    workers = []
    for i in range(count):
        config = json.loads(json.dumps(base))
        config["state"].update(worker_id=f"worker-{i}", lease=f"{LEASE_S:g}s")
        if i == 0:
            env.systems_file.write_text(json.dumps(config, indent=2))
            workers.append(env.hub)
            continue
        port = free_port()
        config["web"]["port"] = port
        workdir = env.workdir / f"worker-{i}"
        workdir.mkdir(exist_ok=True)
        systems = workdir / "systems.yaml"
        systems.write_text(json.dumps(config, indent=2))
        workers.append(HubProcess([systems, *env.config_files[1:]], workdir, port))
    return workers


def _salesforce_calls(env: ProcessLeadToCash) -> int:
    return int(env.systems.http["salesforce"].get("/__sandbox/salesforce/limits").json()["used"])


def _calls_over(env: ProcessLeadToCash, seconds: float) -> int:
    before = _salesforce_calls(env)
    time.sleep(seconds)
    return _salesforce_calls(env) - before


def test_three_workers_under_sigkill_and_sigstop_lose_and_repeat_nothing(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(21)
    routes = rate_limited_routes(tmp_path, {}, poll_interval="1s")
    kills = stops = 0
    with running(
        tmp_path / "run", seed=21, seed_size=DEALS + 20, store_url=pg_url, routes_file=routes
    ) as env:
        workers = _workers(env, 3)
        try:
            for worker in workers:
                worker.start(wait_healthy=False)
            for worker in workers:
                worker.wait_healthy()
            waves = [DEALS // ROUNDS + (1 if i < DEALS % ROUNDS else 0) for i in range(ROUNDS)]
            for i, wave in enumerate(waves):
                env.systems.close_won(wave)
                if i % 2 == 1:
                    env.systems.advance_billing(12)
                time.sleep(rng.uniform(0.5, 2.0))
                victim = rng.choice(workers)
                if not victim.alive:
                    victim.start(wait_healthy=False)
                    continue
                assert victim.proc is not None
                if i % 2 == 0:
                    victim.kill()
                    kills += 1
                    time.sleep(rng.uniform(0.5, 1.5))
                    victim.start(wait_healthy=False)
                else:
                    # Frozen with its leases held, longer than the lease: the others take its work over.
                    os.kill(victim.proc.pid, signal.SIGSTOP)
                    stops += 1
                    time.sleep(LEASE_S * 2.5)
                    os.kill(victim.proc.pid, signal.SIGCONT)
            for worker in workers:
                if not worker.alive:
                    worker.start(wait_healthy=False)
            env.systems.advance_billing(12)
            settled = env.wait_settled(300)
            three = _calls_over(env, IDLE_WINDOW_S)
            for worker in workers[1:]:
                worker.stop()
            one = _calls_over(env, IDLE_WINDOW_S)
            env.hub.stop()
            verdict = env.check()
        finally:
            for worker in workers[1:]:
                with contextlib.suppress(Exception):
                    worker.stop(timeout=10)

    print("\n".join(verdict.problems))  # shown when an assertion below fails
    assert settled, verdict.problems[:20]
    assert kills >= 2 and stops >= 2
    assert verdict.deals >= DEALS and verdict.invoices > 0
    assert verdict.lost == 0, verdict.problems[:20]
    assert verdict.duplicated == 0, verdict.problems[:20]
    assert verdict.unexpected == 0, verdict.problems[:20]
    assert verdict.sent_left == 0 and verdict.reserved_left == 0
    assert verdict.ok, verdict.problems[:20]
    # Idle, only a source's lease holder polls it: three workers cost what one does (within 10%).
    assert one > 0
    assert abs(three - one) <= max(2, one // 10), f"Salesforce calls idle: three workers {three}, one {one}"
