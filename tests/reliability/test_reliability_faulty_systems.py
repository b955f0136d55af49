"""Scenario 2, faulty systems: every fault at once on Salesforce, Lago and SAP, each a real process.

About 30% of requests answered 429 or 503 (with Retry-After and each system's rate-limit headers), hangs past
the hub's client timeout, connection resets, writes committed whose response is lost, and expired sessions
(Salesforce's OAuth token, SAP's session and CSRF token). Each route has a ``rate_limit``. Asserted from the
systems' side: exactly one effect per key, no write resent before its Retry-After ran out, no route's
effects above its ceiling in any second (or any 5 seconds), and no dead letter (no fault here is
permanent).

The routes are the shipped ones with three changes, written to a copy of config/lead-to-cash.yaml: a
``rate_limit`` per route, a quicker retry policy and a 2 s poll (see ``tests/harness/processes.py``).
CI size: ``LEAD2CASH_FAULTY_DEALS`` (16) deals; ``bench/chaos.py`` runs more.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.processes import call_starts, peak_rate, retry_after_violations, run_faulty_scenario

DEALS = int(os.environ.get("LEAD2CASH_FAULTY_DEALS", "16"))
KINDS = ("429", "503", "timeout", "reset", "commit_then_drop", "expired_session")


def test_faulty_systems_exact_effects_retry_after_and_rate_ceilings(tmp_path: Path) -> None:
    report = run_faulty_scenario(tmp_path / "faulty", store_url=None, deals=DEALS, seed=11)
    verdict = report.verdict
    assert report.settled, report.verdict.problems[:20]

    for kind in KINDS:
        assert report.injected.get(kind, 0) > 0, f"no {kind} fault was injected: {report.injected}"
    assert verdict.deals >= DEALS and verdict.invoices > 0

    assert verdict.lost == 0, verdict.problems[:20]
    assert verdict.duplicated == 0, verdict.problems[:20]
    assert verdict.unexpected == 0, verdict.problems[:20]
    assert verdict.ok, verdict.problems[:20]
    assert report.dead_letters == [], "only permanent errors may be dead-lettered, and none was injected"

    assert report.retry_after_checked > 10, "too few resends after a Retry-After to judge"
    assert report.retry_after_violations == []

    for name, rate in report.rates.items():
        assert rate.events > 0, name
        assert rate.within, f"{name}: {rate}"


def test_the_checks_see_a_violation() -> None:
    """The server-side checks fail when the rule is broken (the scenario passing is not for lack of teeth)."""
    log = [
        {
            "t": 10.0,
            "op": "x",
            "method": "POST",
            "path": "/p",
            "sig": "a",
            "outcome": "429",
            "retry_after": 1,
        },
        {"t": 10.4, "op": "x", "method": "POST", "path": "/p", "sig": "a", "outcome": "ok", "retry_after": 0},
        {
            "t": 20.0,
            "op": "x",
            "method": "POST",
            "path": "/p",
            "sig": "b",
            "outcome": "503",
            "retry_after": 1,
        },
        {"t": 21.1, "op": "x", "method": "POST", "path": "/p", "sig": "b", "outcome": "ok", "retry_after": 0},
    ]
    checked, bad = retry_after_violations(log)
    assert checked == 2 and len(bad) == 1 and "0.400s" in bad[0]
    assert peak_rate([0.0, 0.1, 0.2, 0.99, 1.5, 3.0], 1.0) == 4
    assert peak_rate([], 1.0) == 0
    # A resend of the same write within a call is not a new call; the same write 11 s on is.
    assert call_starts(log) == [10.0, 20.0]
    assert call_starts([*log, {**log[0], "t": 31.5}]) == [10.0, 20.0, 31.5]
