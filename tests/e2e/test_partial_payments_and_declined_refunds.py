"""Partial payments and declined refunds on the shipped routes (config/lead-to-cash.yaml and
config/accounting.yaml), on the three sandboxes over real sockets.

- An invoice paid in three parts by manual payments (``POST /payments``; Lago sends no webhook for a
  partial one, the hub reads them by the poll of ``GET /payments``): each part clears exactly its amount
  against the manual payments' bank account, and after each the invoice's receivable in SAP equals
  Lago's ``total_due_amount_cents``. The last part settles the invoice: its
  ``invoice.payment_status_updated`` brings that payment without waiting for the poll, and clears
  nothing more by the invoice's status.
- An invoice paid a third by hand, then the rest by its payment status (the provider), which then fails
  (a returned debit): the status route clears and reverses only the rest; the hand-paid third stands.
- A paid invoice's credit note refunds part of it; the provider declines the refund
  (``credit_note.refund_failure``): its cash out is reversed. Another is declined while the hub is away
  (webhooks held, then read by the poll as declined): nothing is posted for it.
Every webhook arrives twice; each document is posted once; at the end, per customer and currency, SAP's
receivable equals what Lago says is owed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from waiting import async_wait_until

from lead2cash.canonical_model import MINOR_UNITS
from lead2cash.demo.environment import CONFIG_DIR, LeadToCash, sap_reference
from lead2cash.sandbox.sap.config import RECEIVABLES_ACCOUNT

MANUAL = "11002020"  # config/mappings.yaml: sap_clearing_accounts.manual
CLEARING = "11001020"  # ... _default (the customers' provider)
ITEMS = "/sap/opu/odata/sap/API_OPLACCTGDOCITEMCUBE_SRV/A_OperationalAcctgDocItemCube"
RECORDS = "payment-record-to-ledger"


@pytest.fixture()
def env(tmp_path: Path, store_url: str):  # type: ignore[no-untyped-def]
    environment = LeadToCash(
        tmp_path / "l2c", seed=23, seed_size=30, store_url=store_url,
        extra_route_files=[CONFIG_DIR / "accounting.yaml"],
    )  # fmt: skip
    yield environment
    environment.close()


def _money(cents: Any, ccy: str) -> Decimal:
    return Decimal(int(cents)).scaleb(-MINOR_UNITS[ccy])


def _rows(env: LeadToCash) -> list[dict[str, Any]]:
    sap = env.sap
    response = env.http["sap"].get(ITEMS, params={"$format": "json", "$top": "10000"},
                                   auth=(sap.username, sap.password))  # fmt: skip
    response.raise_for_status()
    return list(response.json()["d"]["results"])


def _receivable_of(env: LeadToCash, number: str) -> Decimal:
    """What SAP's receivable holds for one invoice: its items assigned to the invoice number."""
    return sum(
        (
            Decimal(str(r["AmountInTransactionCurrency"]))
            for r in _rows(env)
            if r["GLAccount"] == RECEIVABLES_ACCOUNT and r["AssignmentReference"] == number
        ),
        Decimal(0),
    )


@pytest.mark.timeout(600)
def test_partial_payments_clear_in_steps_and_declined_refunds_are_reversed(env: LeadToCash) -> None:
    seen: dict[str, Any] = {}
    lago = env.http["lago"]

    def tick(seconds: float = 2) -> None:
        now = datetime.fromisoformat(lago.get("/__sandbox/lago/clock").json()["now"])
        lago.post("/__sandbox/lago/clock", json={"to": (now + timedelta(seconds=seconds)).isoformat()})

    def invoice(lago_id: str) -> dict[str, Any]:
        return dict(env.lago_api("GET", f"/invoices/{lago_id}")["invoice"])

    async def settled() -> None:
        assert await env.wait_settled(timeout=120), env.progress()

    async def receivable_is_due(inv: dict[str, Any], poll: bool = True) -> None:
        """Poll the payments now (or not: a webhook must bring them), and wait until SAP's receivable of
        the invoice is Lago's due."""
        due = _money(invoice(inv["lago_id"])["total_due_amount_cents"], inv["currency"])

        async def agrees() -> bool:
            if poll:
                await env.poll_now(RECORDS)
            return await asyncio.to_thread(_receivable_of, env, inv["number"]) == due

        # Without a poll, well within the poll fallback's 60 s.
        await async_wait_until(
            agrees, timeout=60 if poll else 20, step=0.3, what=f"receivable of {inv['number']} = {due}"
        )

    async def scenario() -> None:
        await env.start()
        lago.put("/__sandbox/lago/webhooks", json={"duplicate": 2}).raise_for_status()
        env.close_won(8)
        await settled()
        pending = [
            i for i in env.lago_invoices(detailed=True)
            if i["status"] == "finalized" and i["payment_status"] == "pending" and i["invoice_type"] != "credit"
            and i["total_amount_cents"] >= 1000
        ]  # fmt: skip
        assert len(pending) >= 4, [(i["number"], i["total_amount_cents"]) for i in pending]
        a, b, c, d = pending[:4]

        # A: three manual payments, the receivable cleared in steps.
        total = int(a["total_amount_cents"])
        parts = [total // 4, total // 2, total - total // 4 - total // 2]
        payments = []
        for n, part in enumerate(parts, start=1):
            tick()
            payments.append(env.lago_api("POST", "/payments", json={"payment": {
                "invoice_id": a["lago_id"], "amount_cents": part, "reference": f"wire A{n}"}})["payment"])  # fmt: skip
            # The settling payment comes with the invoice's payment_status_updated, before any poll.
            await receivable_is_due(a, poll=n < len(parts))
            assert (invoice(a["lago_id"])["payment_status"] == "succeeded") == (n == len(parts))

        # B: a third by hand, the rest by the provider, whose debit is then returned.
        tick()
        env.lago_api("POST", "/payments", json={"payment": {
            "invoice_id": b["lago_id"], "amount_cents": int(b["total_amount_cents"]) // 3,
            "reference": "wire B1"}})  # fmt: skip
        await receivable_is_due(b)
        tick()
        env.lago_api("PUT", f"/invoices/{b['lago_id']}", json={"invoice": {"payment_status": "succeeded"}})

        async def b_cleared() -> bool:
            return await asyncio.to_thread(_receivable_of, env, b["number"]) == 0

        await async_wait_until(b_cleared, timeout=60, step=0.3, what="B cleared by its status")  # fmt: skip
        tick()
        env.lago_api("PUT", f"/invoices/{b['lago_id']}", json={"invoice": {"payment_status": "failed"}})
        await receivable_is_due(b)  # the hand-paid third stands

        # C: paid, a credit note refunds part; the provider declines the refund after its cash out.
        notes = []
        for inv, hold in ((c, False), (d, True)):
            tick()
            env.lago_api(
                "PUT", f"/invoices/{inv['lago_id']}", json={"invoice": {"payment_status": "succeeded"}}
            )
            await settled()
            fee = inv["fees"][0]
            credited = int(fee["amount_cents"]) // 2
            taxes = sum(
                int((Decimal(credited) * Decimal(str(t["tax_rate"])) / 100).quantize(Decimal(1)))
                for t in fee.get("applied_taxes", [])
            )
            if hold:
                # D: the hub hears nothing while the refund is issued and declined, then reads both.
                lago.put("/__sandbox/lago/webhooks", json={"paused": True}).raise_for_status()
            tick()
            note = env.lago_api("POST", "/credit_notes", json={"credit_note": {
                "invoice_id": inv["lago_id"], "reason": "order_cancellation", "credit_amount_cents": 0,
                "refund_amount_cents": credited + taxes,
                "items": [{"fee_id": fee["lago_id"], "amount_cents": credited}]}})["credit_note"]  # fmt: skip
            if not hold:
                wanted = sap_reference(f"{note['number']}-RF")

                def refunded(ref: str = wanted) -> bool:
                    return any(ref == d["DocumentReferenceID"] for d in env.sap_documents())

                await async_wait_until(lambda: asyncio.to_thread(refunded), timeout=60, step=0.3, what="-RF")
            tick()
            lago.post(f"/__sandbox/lago/credit_notes/{note['lago_id']}/refund",
                      json={"status": "failed"}).raise_for_status()  # fmt: skip
            if hold:
                # The poll reads the credit note as it is now (declined): nothing to reverse. The held
                # webhooks come after: the issued state is older than what was passed on, the decline a
                # duplicate.
                for route in ("credit-note-to-ledger", "credit-note-refund-to-ledger"):
                    await env.poll_now(route)
                lago.put("/__sandbox/lago/webhooks", json={"paused": False}).raise_for_status()
            notes.append(env.lago_api("GET", f"/credit_notes/{note['lago_id']}")["credit_note"])
        await settled()
        await env.stop()
        seen.update(a=a, b=b, payments=payments, parts=parts, notes=notes)

    asyncio.run(scenario())
    assert env.hub.store.dlq_list() == [], [d.error_message for d in env.hub.store.dlq_list()]
    agreement = env.agreement()  # the product's three-way check: the cash documents are no billing
    assert agreement.agree, agreement.problems[:10]
    rows = _rows(env)
    documents: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["CompanyCode"], row["FiscalYear"], row["AccountingDocument"])
        doc = documents.setdefault(key, {"ref": row["DocumentReferenceID"], "ccy": row["TransactionCurrency"],
                                         "accounts": defaultdict(Decimal)})  # fmt: skip
        doc["accounts"][row["GLAccount"]] += Decimal(str(row["AmountInTransactionCurrency"]))
    for doc in documents.values():
        assert sum(doc["accounts"].values()) == 0, doc  # every entry balances
    refs = [d["ref"] for d in documents.values()]
    assert len(refs) == len(set(refs)), "a reference was posted twice"
    by_ref = {d["ref"]: {k: v for k, v in d["accounts"].items() if v} for d in documents.values()}

    # A: one document per payment, exactly its amount, on the manual payments' account; nothing by
    # its status (settled by the records: the status route leaves it alone).
    a, ccy = seen["a"], seen["a"]["currency"]
    for payment, part in zip(seen["payments"], seen["parts"], strict=True):
        ref = "P" + payment["lago_id"].replace("-", "").upper()[:13] + "-1"  # 16 characters
        assert by_ref[ref] == {MANUAL: _money(part, ccy), RECEIVABLES_ACCOUNT: -_money(part, ccy)}, ref
    assert not [r for r in refs if r.startswith(sap_reference(f"{a['number']}-P"))]
    # B: the status route cleared the two thirds left, then reversed only them.
    b = seen["b"]
    rest = _money(int(b["total_amount_cents"]) - int(b["total_amount_cents"]) // 3, b["currency"])
    assert by_ref[sap_reference(f"{b['number']}-P2")] == {CLEARING: rest, RECEIVABLES_ACCOUNT: -rest}
    assert by_ref[sap_reference(f"{b['number']}-P3")] == {CLEARING: -rest, RECEIVABLES_ACCOUNT: rest}
    # C: the cash out and its reversal; D: declined before the hub saw it: nothing at all.
    c_note, d_note = seen["notes"]
    assert c_note["refund_status"] == d_note["refund_status"] == "failed"
    out = _money(c_note["refund_amount_cents"], c_note["currency"])
    assert by_ref[sap_reference(f"{c_note['number']}-RF")] == {RECEIVABLES_ACCOUNT: out, CLEARING: -out}
    assert by_ref[sap_reference(f"{c_note['number']}-RD")] == {RECEIVABLES_ACCOUNT: -out, CLEARING: out}
    assert not [r for r in refs if r in {sap_reference(f"{d_note['number']}{s}") for s in ("-RF", "-RD")}]
    assert sap_reference(d_note["number"]) in refs  # the credit note itself is posted

    # Per customer and currency: SAP's receivable = what Lago says is owed (what is due on unpaid
    # invoices, less the credit notes' credit left and the refunds declined: owed to the customer).
    partners = {
        env.hub.store.xref_get("Customer", cust, "sap"): cust
        for cust in {i["customer"]["external_id"] for i in env.lago_invoices()}
    }
    receivable: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["GLAccount"] == RECEIVABLES_ACCOUNT:
            receivable[(partners[row["Customer"]], row["TransactionCurrency"])] += Decimal(
                str(row["AmountInTransactionCurrency"])
            )
    owed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for i in env.lago_invoices():
        if i["status"] == "finalized" and i["payment_status"] != "succeeded":
            owed[(i["customer"]["external_id"], i["currency"])] += _money(
                i["total_due_amount_cents"], i["currency"]
            )
    for n in env.lago_api("GET", "/credit_notes", params={"per_page": 100})["credit_notes"]:
        declined = n["refund_amount_cents"] if n["refund_status"] == "failed" else 0
        owed[(n["customer"]["external_id"], n["currency"])] -= _money(
            n["balance_amount_cents"] + declined, n["currency"]
        )
    assert {k: v for k, v in receivable.items() if v} == {k: v for k, v in owed.items() if v}
