"""A payment's life after the invoice, as the deal shows it: the shipped routes on the three sandboxes.

Lago moves an invoice's payment in any direction (succeeded -> failed when a direct debit is returned,
failed -> pending -> succeeded on a retry, a chargeback lost, a void); its webhooks arrive out of order
(parallel workers) and the poll fallback re-reads the invoice. Whatever the order, the Opportunity must
end on what Lago holds now, and an older event must never move it back.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lead2cash.adapters.lago import invoice_from_lago
from lead2cash.adapters.salesforce import PAYMENT_STATUS_VALUES, payment_status_key
from lead2cash.canonical_model import Invoice
from lead2cash.demo.environment import LeadToCash, order_of
from lead2cash.sandbox.lago.money import tax_amount

ROUTE = "billing-status-to-opportunity"


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(tmp_path / "l2c", seed=11, seed_size=24, store_url=store_url)
    yield environment
    environment.close()


def _shown(env: LeadToCash, opp: str) -> dict[str, Any]:
    rows = env.soql(
        f"SELECT Id, Billing_Invoice_Number__c, Billing_Payment_Status__c FROM Opportunity WHERE Id = '{opp}'"
    )
    return rows[0]


def _truth(env: LeadToCash, lago_id: str) -> str:
    """The oracle: what the deal must show for the invoice as Lago holds it now."""
    raw = env.http["lago"].get(f"/api/v1/invoices/{lago_id}", headers=_auth(env)).json()["invoice"]
    return PAYMENT_STATUS_VALUES[payment_status_key(invoice_from_lago({"invoice": raw}))]


def _auth(env: LeadToCash) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.lago.api_key}"}


@pytest.mark.timeout(300)
def test_a_payment_that_fails_after_it_succeeded_reaches_the_deal_and_older_events_never_move_it_back(
    env: LeadToCash,
) -> None:
    lago = env.http["lago"]

    def pay(lago_id: str, status: str) -> None:
        r = lago.put(
            f"/api/v1/invoices/{lago_id}", json={"invoice": {"payment_status": status}}, headers=_auth(env)
        )
        r.raise_for_status()

    def tick(seconds: float = 2) -> None:
        """Let Lago's time move on (its updated_at has whole seconds), nothing else."""
        now = datetime.fromisoformat(lago.get("/__sandbox/lago/clock").json()["now"])
        lago.post("/__sandbox/lago/clock", json={"to": (now + timedelta(seconds=seconds)).isoformat()})

    def webhooks(**settings: Any) -> None:
        lago.put("/__sandbox/lago/webhooks", json=settings).raise_for_status()

    async def settle(opp: str, value: str, timeout: float = 30, webhooks_held: bool = False) -> None:
        end = time.monotonic() + timeout
        shown = None
        while time.monotonic() < end:
            idle = webhooks_held or not env.lago.webhooks.pending
            if idle and env.hub.store.count_messages(ROUTE, "pending") == 0:
                shown = (await asyncio.to_thread(_shown, env, opp))["Billing_Payment_Status__c"]
                if shown == value:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"opportunity {opp} shows {shown!r}, not {value!r}")

    async def scenario() -> dict[str, tuple[str, str]]:
        await env.start()
        env.close_won(8)
        assert await env.wait_settled(timeout=120)
        # Deals with exactly one finalized invoice: what the deal shows is that invoice's state.
        invoices = [i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized"]
        per_deal: dict[str, list[dict[str, Any]]] = {}
        for inv in invoices:
            per_deal.setdefault(str(order_of(inv)), []).append(inv)
        single = [(opp, found[0]) for opp, found in sorted(per_deal.items()) if len(found) == 1]
        assert len(single) >= 4, per_deal
        (opp_a, inv_a), (opp_b, inv_b), (opp_c, inv_c), (opp_d, inv_d) = single[:4]
        a, b, c, d = (str(i["lago_id"]) for i in (inv_a, inv_b, inv_c, inv_d))

        # 1. In order: paid, then the direct debit is returned, then the retry pays.
        tick()
        pay(a, "succeeded")
        await settle(opp_a, "Paid")
        tick()
        pay(a, "failed")
        await settle(opp_a, "Payment Failed")
        tick()
        pay(a, "pending")
        tick()
        pay(a, "succeeded")
        await settle(opp_a, "Paid")

        # 2. Out of order: Lago's workers deliver the failure before the success that preceded it.
        webhooks(paused=True)
        tick()
        pay(b, "succeeded")
        tick()
        pay(b, "failed")
        webhooks(reorder=True, paused=False)
        await settle(opp_b, "Payment Failed")

        # 3. Two changes in the same second (no tick), delivered newest first: only a read can order them.
        webhooks(paused=True)
        pay(c, "succeeded")
        pay(c, "failed")
        webhooks(reorder=True, paused=False)
        await settle(opp_c, "Payment Failed")
        webhooks(reorder=False)

        # 4. A chargeback lost shows over the payment; a void shows voided.
        tick()
        lago.post(f"/api/v1/invoices/{a}/lose_dispute", headers=_auth(env)).raise_for_status()
        await settle(opp_a, "Dispute Lost")
        tick()
        lago.post(f"/api/v1/invoices/{c}/void", headers=_auth(env)).raise_for_status()
        await settle(opp_c, "Voided")

        # 5. A webhook that has not come yet: the poll fallback reads the invoice, and the late webhook
        #    (the same state) changes nothing.
        webhooks(paused=True)
        tick()
        pay(d, "succeeded")
        await env.hub.ingest(ROUTE)
        await settle(opp_d, "Paid", webhooks_held=True)
        webhooks(paused=False)
        await settle(opp_d, "Paid")

        # 6. A refund (a credit note refunding part of the payment) shows; the provider declines it, and
        #    the deal shows the payment again.
        tick()
        invoice_d = lago.get(f"/api/v1/invoices/{d}", headers=_auth(env)).json()["invoice"]
        fee = invoice_d["fees"][0]
        refund = 100 + sum(tax_amount(100, Decimal(str(t["tax_rate"]))) for t in fee.get("applied_taxes", []))
        note = lago.post("/api/v1/credit_notes", headers=_auth(env), json={"credit_note": {
            "invoice_id": d, "reason": "product_unsatisfactory", "credit_amount_cents": 0,
            "refund_amount_cents": refund, "items": [{"fee_id": fee["lago_id"], "amount_cents": 100}]}})  # fmt: skip
        note.raise_for_status()
        await settle(opp_d, "Refunded")
        tick()
        lago.post(f"/__sandbox/lago/credit_notes/{note.json()['credit_note']['lago_id']}/refund",
                  json={"status": "failed"}).raise_for_status()  # fmt: skip
        await settle(opp_d, "Paid")
        await env.stop()
        return {opp: (lago_id, inv["number"]) for opp, lago_id, inv in
                ((opp_a, a, inv_a), (opp_b, b, inv_b), (opp_c, c, inv_c), (opp_d, d, inv_d))}  # fmt: skip

    deals = asyncio.run(scenario())
    for opp, (lago_id, number) in deals.items():
        shown = _shown(env, opp)
        assert shown["Billing_Invoice_Number__c"] == number
        assert shown["Billing_Payment_Status__c"] == _truth(env, lago_id), (opp, lago_id)
    assert env.hub.store.dlq_count() == 0, [d.error_message for d in env.hub.store.dlq_list()]
    # Each change of state was passed on once, in Lago's order (a new key per change, duplicates
    # dropped); the older success delivered after B's and C's failures was never passed on.
    passed: dict[str, list[str]] = {}
    versions: dict[str, list[int]] = {}
    for m in env.hub.store.messages_for(ROUTE, "delivered"):
        entity = Invoice.model_validate_json(m.payload)
        passed.setdefault(entity.id, []).append(PAYMENT_STATUS_VALUES[payment_status_key(entity)])
        versions.setdefault(entity.id, []).append(entity.version)
    for seq in versions.values():
        assert seq == list(range(1, len(seq) + 1)), versions
    (a, _), (b, _), (c, _), (d, _) = deals.values()
    assert passed[a] == ["Pending", "Paid", "Payment Failed", "Pending", "Paid", "Dispute Lost"]
    assert passed[b] == ["Pending", "Payment Failed"]
    assert passed[c] == ["Pending", "Payment Failed", "Voided"]
    assert passed[d] == ["Pending", "Paid", "Refunded", "Paid"]
    # The ledger posted each invoice once, whatever happened to its payment.
    agreement = env.agreement()
    posting = {
        "posted_twice",
        "posted_amount_differs",
        "delivered_not_in_ledger",
        "dead_letter",
        "pending_delivery",
    }
    assert not [
        d for d in agreement.differences if d.cause in posting and d.route != "won-opportunity-to-billing"
    ], agreement.problems


@pytest.mark.timeout(300)
def test_the_ledger_document_written_after_a_payment_never_brings_back_the_old_payment_status(
    env: LeadToCash,
) -> None:
    """Route 4 writes the SAP document with the invoice as route 2 posted it; when SAP posts late, the
    invoice may have been paid meanwhile, and the deal must keep showing it paid."""
    lago = env.http["lago"]

    async def scenario() -> tuple[str, str]:
        await env.start()
        # SAP refuses everything for now (429, Retry-After 1 s): the ledger route waits, nothing fails.
        env.set_faults({"sap": {"*": {"error_rate": 1.0, "error_statuses": [429], "retry_after_s": 1}}})
        env.close_won(3)
        end = time.monotonic() + 60
        invoice: dict[str, Any] | None = None
        while invoice is None and time.monotonic() < end:
            await env.poll_now()
            await asyncio.sleep(0.3)
            found = [i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized"]
            shown = {o["Id"]: o for o in env.soql("SELECT Id, Billing_Payment_Status__c FROM Opportunity")}
            invoice = next(
                (i for i in found if (shown.get(str(order_of(i))) or {}).get("Billing_Payment_Status__c")),
                None,
            )
        assert invoice is not None, "no invoice reached its deal"
        opp, lago_id = str(order_of(invoice)), str(invoice["lago_id"])
        r = lago.put(f"/api/v1/invoices/{lago_id}", json={"invoice": {"payment_status": "succeeded"}},
                     headers=_auth(env))  # fmt: skip
        r.raise_for_status()
        end = time.monotonic() + 30
        while _shown(env, opp)["Billing_Payment_Status__c"] != "Paid" and time.monotonic() < end:
            await asyncio.sleep(0.1)
        assert _shown(env, opp)["Billing_Payment_Status__c"] == "Paid"
        env.set_faults({})
        assert await env.wait_settled(timeout=120)
        await env.stop()
        return opp, lago_id

    opp, lago_id = asyncio.run(scenario())
    rows = env.soql(
        f"SELECT Billing_Payment_Status__c, SAP_Accounting_Document__c FROM Opportunity WHERE Id = '{opp}'"
    )
    assert rows[0]["SAP_Accounting_Document__c"], "the ledger document was written back"
    assert rows[0]["Billing_Payment_Status__c"] == "Paid" == _truth(env, lago_id)
