"""Scenario 9, the store goes away: lead to cash on the shipped routes (sandboxes and hub as separate
processes) while the hub's store becomes unavailable mid-run, then comes back; the hub is never restarted.

- PostgreSQL "stopped and restarted": a TCP proxy in front of 127.0.0.1:5432 (the hub's only way to its
  store) drops every connection and refuses new ones, once for ``BLIP_S`` (a quick restart) and once for
  ``STOP_S`` (a stop). The real server is never touched; the harness reads the store directly.
- SQLite disk full: the hub's connections answer SQLITE_FULL ("database or disk is full") for ``STOP_S``
  (``PRAGMA max_page_count`` at the file's size, set inside the hub's process by a plugin system named in
  its config, lifted after).

Asserted: 0 lost, 0 duplicated, 0 unexpected effects as the sandboxes counted them, no dead letter (a store
error is never a target's permanent error), ``/health`` 200 before, 503 with the reason while the store
fails the hub, 200 after, the hub resuming on its own, and SIGTERM exiting 0 afterwards.
CI size: ``LEAD2CASH_OUTAGE_DEALS`` (10) deals.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.processes import running
from outage import TcpProxy
from reliability_support import report, size

from lead2cash.store import Store

TESTS = Path(__file__).resolve().parents[1]
DEALS = int(os.environ.get("LEAD2CASH_OUTAGE_DEALS", str(size(10, 200))))
BLIP_S = 2.5
STOP_S = 12.0  # longer than the shipped routes' 10 s poll: the disk-full outage meets a source read


class HealthProbe:
    """``GET /health`` every 0.2 s in a thread: (monotonic time, status code or None when unreachable,
    reason)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int | None, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    answer = client.get(self.url)
                    reason = answer.json().get("reason", "") if answer.status_code != 200 else ""
                    self.samples.append((time.monotonic(), answer.status_code, reason))
                except (httpx.HTTPError, json.JSONDecodeError):
                    self.samples.append((time.monotonic(), None, ""))
                self._stop.wait(0.2)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[tuple[float, int | None, str]]:
        return [s for s in self.samples if start <= s[0] < end]


def _wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    # The hub process imports the test's plugin system (``outage:disk_full_system``).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    if request.param == "sqlite":
        yield {"name": "sqlite"}
        return
    direct = str(request.getfixturevalue("pg_url"))
    proxy = TcpProxy()
    yield {"name": "postgresql", "direct": direct, "proxy": proxy}
    proxy.close()


def test_the_store_goes_away_mid_run_and_the_hub_waits_for_it(
    tmp_path: Path, backend: dict[str, Any]
) -> None:
    started = time.monotonic()
    proxy: TcpProxy | None = backend.get("proxy")
    store_url = proxy.url(backend["direct"]) if proxy else None
    with running(tmp_path / "outage", seed=21, seed_size=DEALS + 20, store_url=store_url) as env:
        outages: list[tuple[float, float]] = []  # (start, end), monotonic
        if proxy is not None:
            env._store = Store(backend["direct"], migrate=False)  # the harness reads past the proxy

            def begin() -> None:
                proxy.cut()

            def end() -> None:
                proxy.restore()

            plan = [BLIP_S, STOP_S]
        else:
            flag = env.workdir / "disk-full"
            systems = json.loads(env.systems_file.read_text())
            systems["systems"]["disk"] = {
                "type": "python",
                "factory": "outage:disk_full_system",
                "options": {"database": str(env.workdir / "state.db"), "flag": str(flag)},
            }
            env.systems_file.write_text(json.dumps(systems, indent=2))

            def begin() -> None:
                flag.touch()

            def end() -> None:
                flag.unlink()

            plan = [STOP_S]
        env.hub.start()
        with HealthProbe(env.hub.health_url) as health:
            _wait(lambda: len(health.samples) >= 3, 10, "/health sampled before the outages")
            won = set(env.systems.close_won(DEALS // 2))
            _wait(lambda: len(env.billed()) >= 2, 60, "the first deals billed")
            env.systems.advance_billing(35)  # invoices to post and write back, some during the outages
            for i, seconds in enumerate(plan):
                # Deals won as the store goes: the source read and the deliveries meet the outage.
                won |= set(env.systems.close_won(DEALS - DEALS // 2 if i == len(plan) - 1 else 0))
                t0 = time.monotonic()
                begin()
                time.sleep(seconds)
                end()
                outages.append((t0, time.monotonic()))
                recovered = _wait(
                    lambda: health.samples[-1][1] == 200, 30, "/health 200 after the store came back"
                )
                time.sleep(1.0)
            settled = env.wait_settled(240)
            settled_after = time.monotonic() - outages[-1][1]
            assert env.hub.alive and env.hub.starts == 1, "the hub resumed on its own, never restarted"
        code = env.hub.stop()
        verdict = env.check()
        dead = [f"{d.route}: {d.error_class}: {d.error_message[:200]}" for d in env.store.dlq_list()]

    assert settled, verdict.problems[:20]
    assert verdict.deals >= DEALS and verdict.invoices > 0
    assert verdict.lost == 0, verdict.problems[:20]
    assert verdict.duplicated == 0, verdict.problems[:20]
    assert verdict.unexpected == 0, verdict.problems[:20]
    assert verdict.ok, verdict.problems[:20]
    assert dead == [], "a store error is never a target's permanent error"
    # Resumed on its own: nothing waited for a lease (2 min) to expire after the store came back.
    assert settled_after < 110, f"settled {settled_after:.0f}s after the store came back"
    assert code == 0, f"SIGTERM after the outages exited {code}"

    first, last = outages[0][0], outages[-1][1]
    before = health.between(0, first)
    assert before and all(s[1] == 200 for s in before), before
    unhealthy_s = []
    for t0, t1 in outages:
        during = health.between(t0, t1)
        bad = [s for s in during if s[1] == 503]
        assert bad, f"/health never said 503 during a {t1 - t0:.1f}s outage: {during}"
        assert all("store unavailable" in s[2] for s in bad), bad[:3]
        assert all(s[1] is not None for s in during), "/health stopped answering during the outage"
        if proxy is not None and t1 - t0 > 3:
            # Told within a heartbeat (2 s) and never 200 again until the store is back.
            late = [s for s in during if s[0] >= t0 + 2.5]
            assert late and all(s[1] == 503 for s in late), during
        unhealthy_s.append(round(bad[-1][0] - bad[0][0], 1))
    back = [s for s in health.samples if s[0] > last + recovered + 0.5]
    assert back and all(s[1] == 200 for s in back), back[:5]
    report(
        "store outage",
        backend=backend["name"],
        deals=verdict.deals,
        invoices=verdict.invoices,
        outages_s=[round(t1 - t0, 1) for t0, t1 in outages],
        unhealthy_s=unhealthy_s,
        recovered_health_s=round(recovered, 1),
        settled_after_s=round(settled_after, 1),
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        unexpected=verdict.unexpected,
        dead_letters=len(dead),
        sigterm_exit=code,
        elapsed_s=round(time.monotonic() - started, 1),
    )


@pytest.mark.postgres
def test_the_harness_proxy_really_cuts(pg_url: str) -> None:
    """The proxy's outage is real: a connection open through it fails, and a new one is refused."""
    import psycopg

    proxy = TcpProxy()
    try:
        conn = psycopg.connect(proxy.url(pg_url), autocommit=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.cut()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(proxy.url(pg_url), connect_timeout=2)
        proxy.restore()
        with psycopg.connect(proxy.url(pg_url)) as again:
            assert again.execute("SELECT 1").fetchone() == (1,)
    finally:
        proxy.close()
