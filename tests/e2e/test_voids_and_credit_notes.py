"""Voided invoices and credit notes on the shipped accounting routes (config/accounting.yaml) with the
shipped routes, on the three sandboxes, from Lago's own webhooks: a posted invoice that is voided gets a
reversal document (<number>-RV, never a second posting), a credit note the reverse entry on the
invoice's revenue accounts (by product family) with the invoice's number as the assignment, and a payment
that succeeds, is returned and succeeds again clears the receivable against the bank once net."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lead2cash.canonical_model import MINOR_UNITS
from lead2cash.demo.environment import CONFIG_DIR, LeadToCash, sap_reference
from lead2cash.sandbox.sap.config import RECEIVABLES_ACCOUNT


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(
        tmp_path / "l2c", seed=13, seed_size=40, store_url=store_url,
        extra_route_files=[CONFIG_DIR / "accounting.yaml"],
    )  # fmt: skip
    yield environment
    environment.close()


def test_a_void_is_reversed_once_and_a_credit_note_reverses_its_invoices_accounts(env: LeadToCash) -> None:
    chosen: dict[str, Any] = {}

    async def scenario() -> None:
        await env.start()
        env.close_won(8)
        assert await env.wait_settled(timeout=180), env.progress()
        one_offs = [i for i in env.lago_invoices(detailed=True)
                    if i["invoice_type"] == "one_off" and i["status"] == "finalized"]  # fmt: skip
        assert len(one_offs) >= 3, "the seed closed too few deals with one-time lines"
        voided, credited, paid = one_offs[0], one_offs[1], one_offs[2]
        chosen["before"] = _balances(env)
        env.lago_api("POST", f"/invoices/{voided['lago_id']}/void")
        fee = credited["fees"][0]
        half = _half(fee)
        note = env.lago_api("POST", "/credit_notes", json={"credit_note": {
            "invoice_id": credited["lago_id"], "reason": "order_change",
            "items": [{"fee_id": fee["lago_id"], "amount_cents": half}]}})["credit_note"]  # fmt: skip
        # Paid, the debit returned (failed), paid again: three clearings, the second reversing the first.
        for status in ("succeeded", "failed", "succeeded"):
            env.lago_api("PUT", f"/invoices/{paid['lago_id']}", json={"invoice": {"payment_status": status}})
            await asyncio.sleep(1.1)  # Lago's updated_at has whole seconds: each state its own second
        chosen.update(voided=voided, credited=credited, fee=fee, note=note, paid=paid)
        wanted = {sap_reference(f"{voided['number']}-RV"), sap_reference(note["number"])}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            posted = {d["DocumentReferenceID"] for d in env.sap_documents()}
            clearings = [r for r in posted if "-P" in r]
            if wanted <= posted and len(clearings) >= 3:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # duplicates and late webhooks, had they posted anything, would be in
        await env.stop()

    asyncio.run(scenario())
    assert env.hub.store.dlq_list() == [], [d.error_message for d in env.hub.store.dlq_list()]
    voided, credited, fee, note = chosen["voided"], chosen["credited"], chosen["fee"], chosen["note"]
    refs = [d["DocumentReferenceID"] for d in env.sap_documents()]
    assert refs.count(sap_reference(voided["number"])) == 1  # posted once, never again
    assert refs.count(sap_reference(f"{voided['number']}-RV")) == 1
    assert refs.count(sap_reference(note["number"])) == 1

    # What the two documents moved, account by account, against what Lago's documents say.
    after = _balances(env)
    before = chosen["before"]
    moved = {k: after.get(k, Decimal(0)) - before.get(k, Decimal(0)) for k in set(after) | set(before)}
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    paid = chosen["paid"]
    clearings = sorted(r for r in refs if "-P" in r)
    assert len(clearings) == 3, clearings  # succeeded, failed (reversing it), succeeded: once each
    # The paid invoice's receivable is cleared against the bank: it moved by minus its total.
    expected[(paid["currency"], RECEIVABLES_ACCOUNT)] -= _money(paid["total_amount_cents"], paid["currency"])
    expected[(paid["currency"], "11001020")] += _money(paid["total_amount_cents"], paid["currency"])
    for invoice, fees, gross, tax in (
        (
            voided,
            voided["fees"],
            voided["sub_total_including_taxes_amount_cents"],
            voided["taxes_amount_cents"],
        ),
        (
            credited,
            [{**fee, "amount_cents": _half(fee)}],
            note["total_amount_cents"],
            note["taxes_amount_cents"],
        ),
    ):
        ccy = invoice["currency"]
        for f in fees:
            expected[(ccy, _revenue_account(env, f, ccy))] += _money(f["amount_cents"], ccy)
        expected[(ccy, "22000000")] += _money(tax, ccy)
        expected[(ccy, RECEIVABLES_ACCOUNT)] -= _money(gross, ccy)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in expected.items() if v}


def _half(fee: dict[str, Any]) -> int:
    return int(fee["amount_cents"]) // 2


def _money(cents: Any, ccy: str) -> Decimal:
    return Decimal(int(cents)).scaleb(-MINOR_UNITS[ccy])


def _revenue_account(env: LeadToCash, fee: dict[str, Any], ccy: str) -> str:
    mappings = env.hub.config.mappings
    product = str(fee["item"]["code"]).removesuffix(f"__{ccy}")
    table = mappings["sap_revenue_accounts"]
    family = mappings["product_families"].get(product)
    return str(table.get(product) or table.get(family) or table["_default"])


def _balances(env: LeadToCash) -> dict[tuple[str, str], Decimal]:
    ledger = env.http["sap"].get("/__sandbox/sap/ledger").json()
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for company in ledger["company_codes"].values():
        for ccy, bucket in company["transaction_currency"].items():
            for account, value in bucket["accounts"].items():
                out[(ccy, account)] += Decimal(value)
    return dict(out)
