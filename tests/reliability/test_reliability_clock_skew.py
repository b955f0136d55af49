"""Scenario 8, clock skew: the hub runs as a separate process under libfaketime (``faketime -f +6m`` /
``-6m``; the monotonic clock is left alone, as NTP would), the sandboxes in this process on the real clock.
Between hub runs, deals are closed as won, and some are committed late (a SystemModstamp in the past, but
within the hub's safety lag), as a long Salesforce transaction does.

Pass criteria: every won deal is in the hub's inbox and billed in Lago exactly once (the Salesforce
watermark follows the org's clock, read from its responses, never the hub's), none twice (the Lago
sandbox counts effects per key), and the hub's own timestamps prove the skew was in effect.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from reliability_support import ROOT, report, size
from ruamel.yaml import YAML

from lead2cash.demo.environment import CONFIG_DIR, LeadToCash
from lead2cash.store import Store

FAKETIME = shutil.which("faketime")
SKEW_S = 360
ROUNDS = size(4, 12)
PER_ROUND = size(3, 40)
LATE_PER_ROUND = size(2, 10)
SAFETY_LAG_S = 5

# `make install` installs it; under CI a missing faketime is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    FAKETIME is None and os.environ.get("CI", "").lower() not in {"1", "true", "yes"},
    reason="libfaketime is not installed (apt-get install faketime)",
)


def _hub(config: list[Path], skew: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1", PYTHONPATH=str(ROOT))
    cmd = [
        str(FAKETIME),
        "-f",
        f"{skew:+d}s",
        sys.executable,
        "-m",
        "lead2cash.cli",
        "run",
        *map(str, config),
        "--until-idle",
        "--timeout",
        "90",
    ]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=150, check=False)


def test_the_salesforce_watermark_never_skips_with_the_hub_clock_six_minutes_off(tmp_path: Path) -> None:
    probe = subprocess.run(
        [str(FAKETIME), "-f", f"+{SKEW_S}s", sys.executable, "-c", "import time; print(time.time())"],
        env=dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert abs(float(probe.stdout) - time.time() - SKEW_S) < 5, "faketime does not shift the clock"

    env = LeadToCash(
        tmp_path / "l2c",
        seed=13,
        seed_size=ROUNDS * (PER_ROUND + LATE_PER_ROUND) + 10,
        safety_lag=f"{SAFETY_LAG_S}s",
    )
    env.hub.close()  # the hub runs in its own, skewed process
    try:
        yaml = YAML(typ="safe")
        shipped = yaml.load((CONFIG_DIR / "lead-to-cash.yaml").read_text())
        routes = tmp_path / "billing-route.yaml"
        routes.write_text(json.dumps({"routes": [shipped["routes"][0]]}))
        config = [env.systems_file, CONFIG_DIR / "mappings.yaml", routes]
        open_ids = [r["Id"] for r in env.soql("SELECT Id FROM Opportunity WHERE IsClosed = false")]
        late_ids = iter(open_ids[ROUNDS * PER_ROUND :])
        skews: list[int] = []
        late: list[str] = []
        runs: list[tuple[int, float, float]] = []
        for round_no in range(ROUNDS):
            env.close_won(PER_ROUND)
            for _ in range(LATE_PER_ROUND):
                opp = next(late_ids)
                r = env.http["salesforce"].post(
                    "/__sandbox/salesforce/late-commit",
                    json={
                        "object": "Opportunity",
                        "id": opp,
                        "fields": {"StageName": "Closed Won"},
                        "seconds_ago": SAFETY_LAG_S - 2,
                    },
                )
                r.raise_for_status()
                late.append(opp)
            skew = SKEW_S if round_no % 2 == 0 else -SKEW_S
            started = time.time()
            result = _hub(config, skew, tmp_path)
            assert result.returncode == 0, result.stderr[-3000:]
            runs.append((skew, started, time.time()))
            skews.append(skew)
        # Whatever was inside the safety lag at the last run is read by the next one.
        time.sleep(SAFETY_LAG_S + 1)
        final = _hub(config, -SKEW_S, tmp_path)
        assert final.returncode == 0, final.stderr[-3000:]

        won = {r["Id"] for r in env.soql("SELECT Id FROM Opportunity WHERE IsWon = true")}
        store = Store(env.store_url, migrate=False)
        try:
            messages = store.messages_for("won-opportunity-to-billing")
            # The route reads every deal: a deal read open, then won, is two versions; one won each.
            payloads = [json.loads(m.payload) for m in messages]
            orders = Counter(p["id"] for p in payloads if p["status"] == "won")
            delivered = {json.loads(m.payload)["id"] for m in messages if m.status == "delivered"}
            with store.engine.connect() as conn:
                stamps = [
                    row[0] / 1000 for row in conn.execute(sa.text("SELECT created_at_ms FROM messages"))
                ]
            dead = store.dlq_list(None, None, 1000)
        finally:
            store.close()
        lost = won - delivered
        assert not lost, f"won deals never billed: {sorted(lost)[:10]}"
        assert set(late) <= delivered, "a late commit within the safety lag was skipped"
        assert max(orders.values()) == 1
        assert not dead, [d.error_message for d in dead][:5]
        lago = env.effects("lago")
        duplicated = {
            k: v
            for kind in ("customer.create", "subscription.create", "invoice.metadata")
            for k, v in lago.get(kind, {}).items()
            if v > 1
        }
        assert not duplicated, duplicated
        # The skew was real: the hub stamped its inbox rows with its own (shifted) clock.
        shifted = sum(1 for s in stamps if any(abs(s - (a + k)) < 60 for k, a, _ in runs if k > 0))
        behind = sum(1 for s in stamps if any(abs(s - (a + k)) < 60 for k, a, _ in runs if k < 0))
        assert shifted and behind, (shifted, behind)
        report(
            "8-clock-skew",
            skew_s=[SKEW_S, -SKEW_S],
            hub_runs=len(runs) + 1,
            won=len(won),
            late_commits=len(late),
            read_once=len(orders),
            lost=len(lost),
            duplicated=len(duplicated),
        )
    finally:
        env.close()
