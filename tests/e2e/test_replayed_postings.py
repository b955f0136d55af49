"""The documented repair of postings SAP refused, on the shipped routes and the three sandboxes: reopen
the period, `dlq replay` the ledger route's dead letters, and every Opportunity shows its SAP document,
in that one command, however late those postings come after the ones that went through."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.demo.environment import LeadToCash
from lead2cash.sandbox.sap.config import COMPANY_CODES
from lead2cash.store import DeadLetter

LEDGER = "posted-invoice-to-ledger"
WRITEBACK = "ledger-document-to-opportunity"


def _periods(env: LeadToCash, is_open: bool) -> None:
    today = datetime.now(UTC)
    for code in COMPANY_CODES:
        body = {"company_code": code, "fiscal_year": today.year, "period": today.month, "open": is_open}
        env.http["sap"].put("/__sandbox/sap/periods", json=body).raise_for_status()


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(tmp_path / "l2c", seed=9, seed_size=60, store_url=store_url)
    yield environment
    environment.close()


def test_replayed_postings_reach_their_opportunities(env: LeadToCash) -> None:
    store = env.hub.store

    async def until_idle() -> None:
        await asyncio.sleep(2.2)  # past the Salesforce safety lag (1 s, on whole seconds of the org clock)
        assert await env.hub.run_until_idle(timeout=120)

    async def refused() -> list[DeadLetter]:
        try:
            # Deals go through; SAP then closes the period and refuses the postings of the next ones.
            env.close_won(2)
            await until_idle()
            assert store.count_messages(WRITEBACK, "delivered") >= 1
            _periods(env, is_open=False)
            env.close_won(8)
            await until_idle()
            dead = store.dlq_list(LEDGER)
            # Postings delivered after them: the write-back route reads past every one of them.
            _periods(env, is_open=True)
            env.close_won(2)
            await until_idle()
            return dead
        finally:
            await env.hub.aclose_systems()

    dead = asyncio.run(refused())
    assert len(dead) >= 5 and all("not open" in d.error_message for d in dead), [
        d.error_message for d in dead
    ]
    assert store.dlq_count(LEDGER) == len(dead)

    files = [a for f in env.config_files for a in ("-c", str(f))]
    replayed = CliRunner().invoke(app, ["dlq", "replay", *files, *(str(d.id) for d in dead)])
    assert replayed.exit_code == 0, replayed.output
    assert store.dlq_count() == 0
    assert store.count_messages(WRITEBACK, "delivered") == store.count_messages(LEDGER, "delivered")
    agreement = env.agreement()
    assert agreement.agree, agreement.problems[:10]
