"""Won opportunities flow from the sandbox into the inbox exactly once per version, through the hub:
ties on SystemModstamp across page boundaries, late commits behind the newest stamp (within the safety lag),
deletes, and a formula-only change that only the reconciliation sweep can see."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from lead2cash.hub import Hub

LAG = 30  # seconds; the org clock is advanced well past the lag to release changes
RELEASE = LAG + 65


def _route(**options: Any) -> dict[str, Any]:
    return {
        "name": "won-deals",
        "source": {
            "system": "sf",
            "object": "Opportunity",
            "trigger": {"type": "poll", "interval": "1h"},
            "options": options,
        },
        "mapping": {"adapter": "salesforce.opportunity", "entity": "Order"},
        "target": {"system": "files", "action": "append", "options": {"object": "orders"}},
        "idempotency_key": "order:{id}:v{version}",
        "batch_size": 50,
        "concurrency": 8,
    }


def _lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "orders.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run(tmp_path: Path, config: Path) -> list[dict[str, Any]]:
    hub = Hub.from_files([config], configure_logs=False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=60))
        assert hub.store.dlq_count("won-deals") == 0, [
            d.error_message for d in hub.store.dlq_list("won-deals")
        ]
    finally:
        hub.systems["sf"].close()  # type: ignore[attr-defined]
        hub.close()
    return _lines(tmp_path)


def test_every_won_opportunity_is_read_exactly_once_per_version(org, tmp_path: Path) -> None:
    config = org.write_config(tmp_path, [_route()], safety_lag=f"{LAG}s", page_size=50, sweep_interval="1h")
    # 200 deals won in one transaction share one SystemModstamp: pages of 50 cut through the tie.
    closed = org.admin("POST", "salesforce/close-won", json={"count": 200})["ids"]
    org.advance(RELEASE)
    lines = _run(tmp_path, config)
    won = {r["Id"] for r in org.soql("SELECT Id FROM Opportunity WHERE IsWon = true")}
    assert len(won) >= 250 and set(closed) <= won
    assert Counter(line["entity"]["id"] for line in lines) == Counter({i: 1 for i in won})
    assert {line["entity"]["status"] for line in lines} == {"won"}

    # Deals won now are within the safety lag: not read yet, so the cursor cannot pass a later commit.
    fresh = org.admin("POST", "salesforce/close-won", json={"count": 5})["ids"]
    assert len(_run(tmp_path, config)) == len(lines)
    # A transaction that started earlier commits now, stamped before the deals above.
    late = sorted(won - set(closed))[:3]
    for rid in late:
        org.admin(
            "POST",
            "salesforce/late-commit",
            json={
                "object": "Opportunity",
                "id": rid,
                "fields": {"Name": f"Renamed {rid}"},
                "seconds_ago": 10,
            },
        )
    deleted = sorted(closed)[:2]
    for rid in deleted:
        assert org.rest("DELETE", f"sobjects/Opportunity/{rid}").status_code == 204
    # A formula/roll-up change: content moves, SystemModstamp does not.
    silent = sorted(closed)[-1]
    org.admin(
        "POST",
        "salesforce/silent-update",
        json={"object": "Opportunity", "id": silent, "fields": {"Name": "Recalculated by a formula"}},
    )
    org.advance(RELEASE)
    lines2 = _run(tmp_path, config)
    new = lines2[len(lines) :]
    assert Counter(line["entity"]["id"] for line in new) == Counter({i: 1 for i in [*fresh, *late, *deleted]})
    assert {line["entity"]["name"] for line in new if line["entity"]["id"] in late} == {
        f"Renamed {rid}" for rid in late
    }
    assert {line["entity"]["status"] for line in new if line["entity"]["id"] in deleted} == {"cancelled"}

    # The sweep is due an hour of org time later: it re-reads every won deal, and only the one whose
    # content changed without a new SystemModstamp produces a new version.
    org.advance(3700)
    lines3 = _run(tmp_path, config)
    swept = lines3[len(lines2) :]
    assert [line["entity"]["id"] for line in swept] == [silent]
    assert swept[0]["entity"]["name"] == "Recalculated by a formula"

    # Nothing changed: nothing new, however often the route polls.
    assert _run(tmp_path, config) == lines3
    keys = [line["key"] for line in lines3]
    assert len(keys) == len(set(keys)), "a version was delivered twice"
