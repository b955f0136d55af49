"""Revenue by product family on the shipped routes and the three sandboxes: Lago's fees carry no family,
the shipped product_families table gives it from the plan or add-on code, and SAP's revenue accounts
agree with Lago's fees account by account (hardware, training and services on their own accounts)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lead2cash.demo.environment import LeadToCash
from lead2cash.sandbox.sap.config import REVENUE_ACCOUNT_BY_FAMILY


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(tmp_path / "l2c", seed=11, seed_size=40, store_url=store_url)
    yield environment
    environment.close()


def test_revenue_lands_on_the_account_of_its_product_family(env: LeadToCash) -> None:
    async def scenario() -> bool:
        await env.start()
        env.close_won(12)
        settled = await env.wait_settled(timeout=180)
        env.advance_billing(35)  # subscriptions invoiced too (software, services)
        settled = await env.wait_settled(timeout=180) and settled
        await env.stop()
        return settled

    assert asyncio.run(scenario()), env.progress()
    agreement = env.agreement()
    assert agreement.agree, agreement.problems[:10]
    accounts = {a for by_account in agreement.revenue_posted.values() for a in by_account}
    # More than the software account: the one-time hardware/training/services fees found their own.
    assert accounts - {REVENUE_ACCOUNT_BY_FAMILY["Software"]}, agreement.revenue_posted
    assert agreement.revenue_posted == agreement.revenue_billed
    assert agreement.customers >= 3  # each customer's receivable in SAP agreed with Lago, per currency
