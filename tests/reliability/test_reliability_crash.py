"""Scenario 1, crash: SIGKILL the hub at random moments of a lead-to-cash run, restart it each time.

The sandboxes, the hub and the state store (SQLite on disk, or PostgreSQL) are separate processes; the deals
are closed, the billing clock moved and the effects read over HTTP. After the last kill the hub runs until
settled, and the checker compares, per key, what Salesforce, Lago and SAP counted with what the won deals
and Lago's invoices ask for: lost = 0, duplicated = 0, unexpected = 0; the ledger has no effect left "sent"
(or "reserved"); the Salesforce cursor and the hub source's checkpoint are at their heads.

CI size: ``LEAD2CASH_CRASH_DEALS`` (150) deals, ``LEAD2CASH_CRASH_KILLS`` (8) kills per backend.
``bench/chaos.py --size large`` runs 10,000 deals and 20 kills.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.processes import run_crash_scenario

DEALS = int(os.environ.get("LEAD2CASH_CRASH_DEALS", "150"))
KILLS = int(os.environ.get("LEAD2CASH_CRASH_KILLS", "8"))


def test_sigkill_the_hub_during_a_lead_to_cash_run_loses_and_repeats_nothing(
    tmp_path: Path, store_url: str
) -> None:
    report = run_crash_scenario(tmp_path / "crash", store_url=store_url, deals=DEALS, kills=KILLS, seed=7)
    verdict, figures = report.verdict, report.figures
    assert report.settled, report.verdict.problems[:20]

    assert figures.kills == KILLS, "every kill landed on a running hub"
    # The kills hit work in flight: the run was not over at the first kill, and it moved on between kills.
    assert report.delivered_at_kills[0] < report.delivered_at_kills[-1]
    assert verdict.deals >= DEALS and verdict.invoices >= DEALS // 2

    assert verdict.lost == 0, verdict.problems[:20]
    assert verdict.duplicated == 0, verdict.problems[:20]
    assert verdict.unexpected == 0, verdict.problems[:20]
    assert verdict.sent_left == 0 and verdict.reserved_left == 0
    assert verdict.dead_letters == 0
    assert verdict.ok, verdict.problems[:20]  # includes: every polled source's checkpoint at its head
