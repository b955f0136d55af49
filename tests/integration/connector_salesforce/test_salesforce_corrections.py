"""The documented fix for a bad record: correct it in Salesforce. A correction that only edits a line
item leaves the Opportunity's SystemModstamp where it was (the sandbox keeps both stamps as the platform
does), so the reader must follow the line items' own stamps; and `dlq replay` must map the record as
Salesforce holds it now, not the stale payload it dead-lettered with. Both backends of the store."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.hub import Hub

LAG = 5
RELEASE = LAG + 65


def _route() -> dict[str, Any]:
    return {
        "name": "won-deals",
        "source": {"system": "sf", "object": "Opportunity", "trigger": {"type": "poll", "interval": "1h"}},
        "mapping": {"adapter": "salesforce.opportunity", "entity": "Order"},
        "target": {"system": "files", "action": "append", "options": {"object": "orders"}},
        "idempotency_key": "order:{id}:v{version}",
    }


def _orders(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "orders.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run(config: Path) -> list[Any]:
    hub = Hub.from_files([config], configure_logs=False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=60))
        return hub.store.dlq_list("won-deals")
    finally:
        hub.close()


def _won_with_a_bad_line(org: Any) -> tuple[str, str, float]:
    """A deal won now whose first line then gets a negative sales price (the adapter refuses it)."""
    [opp] = org.admin("POST", "salesforce/close-won", json={"count": 1})["ids"]
    [row] = org.soql(
        f"SELECT Id, (SELECT Id, UnitPrice FROM OpportunityLineItems) FROM Opportunity WHERE Id = '{opp}'"
    )
    line = row["OpportunityLineItems"]["records"][0]
    assert (
        org.rest("PATCH", f"sobjects/OpportunityLineItem/{line['Id']}", json={"UnitPrice": -5}).status_code
        == 204
    )
    return opp, line["Id"], float(line["UnitPrice"])


def _stamps(org: Any, opp: str, line: str) -> tuple[str, str]:
    [o] = org.soql(f"SELECT SystemModstamp FROM Opportunity WHERE Id = '{opp}'")
    [li] = org.soql(f"SELECT SystemModstamp FROM OpportunityLineItem WHERE Id = '{line}'")
    return o["SystemModstamp"], li["SystemModstamp"]


def _correct(org: Any, opp: str, line: str, price: float) -> None:
    """Fix the line in Salesforce: only the line's SystemModstamp moves."""
    org.advance(2)
    before = _stamps(org, opp, line)
    assert (
        org.rest("PATCH", f"sobjects/OpportunityLineItem/{line}", json={"UnitPrice": price}).status_code
        == 204
    )
    after = _stamps(org, opp, line)
    assert after[0] == before[0] and after[1] > before[1]


def test_a_line_edit_brings_its_opportunity_back(org, tmp_path: Path, store_url: str) -> None:
    config = org.write_config(
        tmp_path, [_route()], state_url=store_url, safety_lag=f"{LAG}s", sweep_interval="24h"
    )
    _run(config)  # the first load
    baseline = len(_orders(tmp_path))
    opp, line, price = _won_with_a_bad_line(org)
    org.advance(RELEASE)
    [dead] = _run(config)
    assert "UnitPrice" in dead.error_message and json.loads(dead.original_payload)["Id"] == opp
    _correct(org, opp, line, price)
    org.advance(RELEASE)
    _run(config)
    new = _orders(tmp_path)[baseline:]
    assert [o["entity"]["id"] for o in new] == [opp]
    # A line deleted is a change of the deal too.
    [row] = org.soql(f"SELECT Id, (SELECT Id FROM OpportunityLineItems) FROM Opportunity WHERE Id = '{opp}'")
    lines = row["OpportunityLineItems"]["records"]
    assert len(lines) > 1
    assert org.rest("DELETE", f"sobjects/OpportunityLineItem/{lines[-1]['Id']}").status_code == 204
    org.advance(RELEASE)
    _run(config)
    latest = _orders(tmp_path)[-1]["entity"]
    assert latest["id"] == opp and len(latest["lines"]) == len(lines) - 1
    # Nothing changed: nothing new.
    count = len(_orders(tmp_path))
    org.advance(RELEASE)
    _run(config)
    assert len(_orders(tmp_path)) == count
    # The bad version's dead letter, replayed now, reads the deal the poll delivered: nothing new.
    replayed = CliRunner().invoke(app, ["dlq", "replay", "-c", str(config), str(dead.id)])
    assert replayed.exit_code == 0, replayed.output
    assert "already in the inbox" in " ".join(replayed.output.split())
    assert len(_orders(tmp_path)) == count


def test_replay_maps_the_record_as_salesforce_holds_it_now(org, tmp_path: Path, store_url: str) -> None:
    config = org.write_config(
        tmp_path, [_route()], state_url=store_url, safety_lag=f"{LAG}s", sweep_interval="24h"
    )
    _run(config)
    baseline = len(_orders(tmp_path))
    opp, line, price = _won_with_a_bad_line(org)
    org.advance(RELEASE)
    [dead] = _run(config)
    stored = dead.original_payload
    _correct(org, opp, line, price)  # no poll in between: replay alone must find the correction
    runner = CliRunner()
    replayed = runner.invoke(app, ["dlq", "replay", "-c", str(config), str(dead.id)])
    assert replayed.exit_code == 0, replayed.output
    new = _orders(tmp_path)[baseline:]
    assert [o["entity"]["id"] for o in new] == [opp]
    assert all(Decimal(li["unit_price"]["amount"]) >= 0 for li in new[0]["entity"]["lines"])
    assert "re-read from sf/Opportunity" in " ".join(replayed.output.split())
    hub = Hub.from_files([config], configure_logs=False)
    try:
        kept = hub.store.dlq_get(dead.id)
        assert kept is not None and kept.status == "replayed" and kept.original_payload == stored  # evidence
        assert hub.store.dlq_count("won-deals") == 0
    finally:
        hub.close()


def test_replay_of_the_stored_payload_only_when_asked(org, tmp_path: Path, store_url: str) -> None:
    config = org.write_config(
        tmp_path, [_route()], state_url=store_url, safety_lag=f"{LAG}s", sweep_interval="24h"
    )
    _run(config)
    opp, line, price = _won_with_a_bad_line(org)
    org.advance(RELEASE)
    [dead] = _run(config)
    _correct(org, opp, line, price)
    replayed = CliRunner().invoke(app, ["dlq", "replay", "-c", str(config), "--stored-payload", str(dead.id)])
    # The stale payload fails as before, and says so.
    assert replayed.exit_code == 1
    said = " ".join(replayed.output.split())
    assert "from its stored payload, as asked" in said and "fails mapping again" in said
    hub = Hub.from_files([config], configure_logs=False)
    try:
        [again] = hub.store.dlq_list("won-deals")
        assert again.id != dead.id and "UnitPrice" in again.error_message
    finally:
        hub.close()
