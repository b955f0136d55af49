"""``lead2cash reconcile three-way`` on the three sandboxes and the shipped routes: clean after the flow,
then planted faults, each found with its cause and fix (a dead-lettered posting, an invoice still pending
for the ledger, a deal lost after billing), and the hub's scheduled run exposing the result as metrics.

The tests share one flow and run in file order: each plants on top of the last.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.demo.environment import LeadToCash
from lead2cash.reconcile.three_way import ThreeWay, ThreeWayReport, close_systems, open_systems, order_of
from lead2cash.sandbox.sap.config import COMPANY_CODES

BILLING = "won-opportunity-to-billing"
LEDGER = "posted-invoice-to-ledger"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeadToCash]:
    work = tmp_path_factory.mktemp("three-way")
    schedule = work / "reconcile.yaml"
    schedule.write_text("reconcile:\n  three_way: {every: 1s, out: reconcile/three-way.json}\n")
    environment = LeadToCash(work / "l2c", seed=11, seed_size=60, extra_route_files=[schedule])
    yield environment
    environment.close()


def _cli(env: LeadToCash, *args: str) -> Any:
    files = [a for f in env.config_files for a in ("-c", str(f))]
    return CliRunner().invoke(app, ["reconcile", "three-way", *files, *args])


def _until_idle(env: LeadToCash, routes: list[str] | None = None) -> None:
    async def run() -> None:
        try:
            await asyncio.sleep(2.2)  # past the Salesforce safety lag (1 s, whole seconds of the org clock)
            assert await env.hub.run_until_idle(timeout=120, routes=routes)
        finally:
            await env.hub.aclose_systems()

    asyncio.run(run())


def _periods(env: LeadToCash, is_open: bool) -> None:
    today = datetime.now(UTC)
    for code in COMPANY_CODES:
        body = {"company_code": code, "fiscal_year": today.year, "period": today.month, "open": is_open}
        env.http["sap"].put("/__sandbox/sap/periods", json=body).raise_for_status()


def test_a_clean_flow_reconciles_clean(env: LeadToCash, tmp_path: Path) -> None:
    env.close_won(4)
    _until_idle(env)
    out = tmp_path / "reconcile" / "three-way.json"
    result = _cli(env, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "clean: the three systems agree" in result.output
    report = json.loads(out.read_text())
    assert report["clean"] is True and report["differences"] == []
    assert report["counts"]["deals_won"] >= 4 and report["counts"]["invoices"] >= 1
    for totals in report["currencies"].values():
        assert totals["invoiced"] == totals["posted_receivable"], report["currencies"]
    assert report["counts"]["journal_entries"] == report["counts"]["invoices"]


def test_planted_faults_are_found_with_cause_and_fix(env: LeadToCash) -> None:
    store = env.hub.store
    # 1. A deal lost after billing: its invoice stays (on_reversal_invoice: dead_letter).
    invoices = [i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized"]
    lost_invoice = next(i for i in invoices if i["invoice_type"] == "one_off")
    lost_deal = str(order_of(lost_invoice))
    env.request(
        "salesforce",
        "PATCH",
        f"/services/data/v{env.sf_api_version}/sobjects/Opportunity/{lost_deal}",
        json={"StageName": "Closed Lost"},
        headers={"Authorization": f"Bearer {env._token()}"},
    )
    # 2. Postings SAP refuses (the period is closed): dead letters on the ledger route.
    _periods(env, is_open=False)
    try:
        env.close_won(2)
        _until_idle(env)
    finally:
        _periods(env, is_open=True)
    dead_postings = store.dlq_list(LEDGER)
    assert dead_postings, "SAP took every posting"
    billing_dead = [d for d in store.dlq_list(BILLING) if lost_deal in (d.canonical_payload or "")]
    assert billing_dead, [d.error_message for d in store.dlq_list()]
    # 3. An invoice the ledger route has read but not delivered yet.
    before = {i["number"] for i in env.lago_invoices()}
    env.close_won(3)
    _until_idle(env, routes=[BILLING])

    async def read_ledger_route() -> None:
        try:
            await env.hub.ingest(LEDGER)
        finally:
            await env.hub.aclose_systems()

    asyncio.run(read_ledger_route())
    new = {i["number"] for i in env.lago_invoices() if i["status"] == "finalized"} - before
    pending = {json.loads(m.payload)["invoice_number"] for m in store.messages_for(LEDGER, "pending")}
    assert pending and pending == new, (pending, new, env.hub.read_errors)

    result = _cli(env, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["clean"] is False
    rows = report["differences"]

    for dead in dead_postings:
        number = json.loads(dead.canonical_payload or "{}")["invoice_number"]
        row = next(r for r in rows if r["invoice"] == number)
        assert row["cause"] == "dead_letter" and row["dead_letter"] == dead.id, row
        assert row["route"] == LEDGER and "Posting period" in row["detail"], row
        assert f"lead2cash dlq replay -c {env.config_files[0]} " in row["fix"], row["fix"]
        assert row["fix"].endswith(f" {dead.id}`"), row["fix"]

    row = next(r for r in rows if r["invoice"] == lost_invoice["number"])
    assert lost_invoice["invoice_type"] == "one_off"
    assert row["cause"] == "deal_not_won" and row["deal"] == lost_deal, row
    assert "Closed Lost" in row["detail"] and "credit note" in row["fix"]
    assert row["dead_letter"] == billing_dead[0].id and "dlq replay -c" in row["fix"]

    for number in pending:
        row = next(r for r in rows if r["invoice"] == number and r["route"] == LEDGER)
        assert row["cause"] == "pending_delivery", row
        assert "lead2cash run --until-idle" in row["fix"]

    causes = {r["cause"] for r in rows}
    assert causes <= {"dead_letter", "deal_not_won", "pending_delivery", "not_read"}, rows
    # The table names the same.
    table = _cli(env)
    print(table.output)
    print(json.dumps(rows, indent=1)[:3000])
    assert table.exit_code == 1 and "deal_not_won" in table.output and "dead_letter" in table.output


class _ReadWhole(ThreeWay):
    """Three-way reading Lago as it did before the fee listing: every invoice read whole, one call each."""

    async def _invoices(self) -> list[dict[str, Any]]:
        client = self.systems[self.billing].client
        return [dict(await client.get_invoice(str(i["lago_id"]))) async for i in client.invoices({})]


def _three_way(env: LeadToCash, check_class: type[ThreeWay]) -> tuple[dict[str, Any], Counter[str]]:
    """One three-way run on systems of its own: its report (without its timing) and its Lago calls."""
    config, store = env.hub.config, env.hub.store

    async def run() -> tuple[ThreeWayReport, Counter[str]]:
        check = check_class(config, store, {}, config_files=env.config_files)
        systems = open_systems(
            config, store, env.systems_file.parent, (check.crm, check.billing, check.ledger)
        )
        check.systems = systems
        try:
            return await check.run(), Counter(systems[check.billing].client.calls_by_operation)
        finally:
            await close_systems(systems)

    report, calls = asyncio.run(run())
    data = report.as_json()
    del data["seconds"], data["started_at"]
    return data, calls


def test_it_reads_lago_by_listings_with_the_same_result(env: LeadToCash) -> None:
    """The fees come from the fee listing, joined on the invoice: no invoice is read whole when the listing
    has its fees, and the report is the one reading every invoice whole gives."""
    invoices = env.lago_invoices()
    fees = int(env.lago_api("GET", "fees", params={"per_page": 1})["meta"]["total_count"])
    before, calls_before = _three_way(env, _ReadWhole)
    after, calls_after = _three_way(env, ThreeWay)
    print(f"{len(invoices)} invoices, {fees} fees; Lago calls before {dict(calls_before)}, "
          f"after {dict(calls_after)}")  # fmt: skip
    assert after == before
    assert after["clean"] is False and after["counts"]["invoices"] >= 5
    assert calls_before["invoices.get"] == len(invoices)
    assert calls_after["invoices.get"] == 0
    pages = -(-fees // 100)
    assert calls_after["fees.list"] == max(pages, 1)
    assert sum(calls_after.values()) < sum(calls_before.values())


def test_the_fixes_it_names_clear_their_differences(env: LeadToCash) -> None:
    rows = json.loads(_cli(env, "--json").output)["differences"]
    replays = [r["fix"].split("`")[1] for r in rows if r["cause"] == "dead_letter"]
    assert replays
    for command in replays:  # as the operator pastes it
        args = shlex.split(command)
        assert args[0] == "lead2cash"
        replayed = CliRunner().invoke(app, args[1:])
        assert replayed.exit_code == 0, replayed.output
    _until_idle(env)  # the pending posting: what a running hub does by itself
    result = _cli(env, "--json")
    assert result.exit_code == 1
    left = json.loads(result.output)["differences"]
    assert {r["cause"] for r in left} == {"deal_not_won"}, left


def test_the_hub_runs_it_on_a_schedule_and_exposes_metrics(env: LeadToCash) -> None:
    sample = env.hub.metrics.registry.get_sample_value
    check = {"check": "three_way"}

    async def scenario() -> str:
        await env.start()
        try:
            for _ in range(200):
                if sample("lead2cash_reconcile_last_run_timestamp", check):
                    break
                await asyncio.sleep(0.1)
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{env.web_port}/metrics")
            return r.text
        finally:
            await env.stop()

    text = asyncio.run(scenario())
    assert sample("lead2cash_reconcile_last_run_timestamp", check), "the scheduled run did not finish"
    assert sample("lead2cash_reconcile_clean", check) == 0
    lost = sum(
        sample("lead2cash_reconcile_differences", {**check, "currency": ccy, "cause": "deal_not_won"}) or 0
        for ccy in ("USD", "EUR", "GBP", "JPY")
    )
    assert lost >= 1
    exported = [line for line in text.splitlines() if line.startswith("lead2cash_reconcile_differences{")]
    assert any('cause="deal_not_won"' in line and not line.endswith(" 0.0") for line in exported), exported
    assert 'lead2cash_reconcile_clean{check="three_way"} 0.0' in text
    assert "lead2cash_reconcile_last_run_timestamp" in text
    written = env.systems_file.parent / "reconcile" / "three-way.json"
    assert json.loads(written.read_text())["clean"] is False
