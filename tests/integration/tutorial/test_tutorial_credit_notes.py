"""The tutorial's result runs: ``config/examples/credit-notes-to-sap.yaml`` loaded with the shipped routes
posts exactly one reverse journal entry in SAP for a credit note issued in Lago (docs/tutorial-credit-notes.md).

Everything goes over real sockets: the three sandboxes over HTTPS, Lago's signed webhook to the hub's web
app, the hub's SOAP posting and OData reads against SAP.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from waiting import async_wait_until

from lead2cash.canonical_model import MINOR_UNITS
from lead2cash.config.sap import SapBasicAuth, SapSystemConfig
from lead2cash.demo.environment import LeadToCash
from lead2cash.hub import Hub

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "config" / "examples"
EXAMPLE = EXAMPLES / "credit-notes-to-sap.yaml"
ROUTE = "credit-note-to-ledger"


def _with_example(env: LeadToCash) -> None:
    """The harness builds its hub from the shipped files; rebuild it with the tutorial's file added, as a
    deployment would list it on the command line."""
    env.hub.close()
    env.config_files = [*env.config_files, EXAMPLE]
    env.hub = Hub.from_files(env.config_files)


def _sap_items(env: LeadToCash, reference: str) -> list[dict[str, Any]]:
    """The journal entry items SAP holds under a header reference (XBLNR), read over OData."""
    sap = env.hub.config.systems["sap"]
    assert isinstance(sap, SapSystemConfig) and isinstance(sap.auth, SapBasicAuth)
    auth = sap.auth
    r = env.http["sap"].get(
        "/sap/opu/odata/sap/API_OPLACCTGDOCITEMCUBE_SRV/A_OperationalAcctgDocItemCube",
        params={"$filter": f"DocumentReferenceID eq '{reference}'", "$format": "json"},
        auth=httpx.BasicAuth(auth.username, auth.password.get_secret_value()),
    )
    r.raise_for_status()
    return list(r.json()["d"]["results"])


async def _wait(predicate: Any, timeout: float, env: LeadToCash) -> bool:
    try:
        return bool(await async_wait_until(lambda: asyncio.to_thread(predicate), timeout, step=0.2))
    except AssertionError:
        return False


@pytest.mark.slow
def test_a_credit_note_posts_exactly_one_reverse_journal_entry(
    tmp_path: Path,
) -> None:
    env = LeadToCash(tmp_path, seed=7, seed_size=12)
    try:
        _with_example(env)
        assert ROUTE in env.hub.routes
        # The tutorial's mapping function lives next to its YAML; the hub found and loaded it by itself.
        assert str(EXAMPLES) not in sys.path
        from credit_note_mapping import sap_reference

        async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
            await env.start()
            try:
                env.close_won(3)
                await env.poll_now()
                assert await env.wait_settled(20), env.progress()
                invoices = [
                    i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized" and i["fees"]
                ]
                assert invoices, "no finalized invoice to credit"
                invoice = invoices[0]
                fee = invoice["fees"][0]
                # Credit half of the first fee (the tax on it is credited by Lago in proportion).
                body = {
                    "credit_note": {
                        "invoice_id": invoice["lago_id"],
                        "reason": "product_unsatisfactory",
                        "items": [{"fee_id": fee["lago_id"], "amount_cents": int(fee["amount_cents"]) // 2}],
                    }
                }
                note = env.lago_api("POST", "credit_notes", json=body)["credit_note"]
                delivered = await _wait(
                    lambda: (
                        env.hub.store.count_messages(ROUTE, "delivered") == 1 and bool(env.sap_documents())
                    ),
                    10,
                    env,
                )
                assert delivered, (env.progress(), env.hub.store.dlq_list(ROUTE))
                # A duplicate webhook and a poll of the same note change nothing (idempotent consumer and
                # effect ledger).
                env.drain_webhooks()
                await env.hub.ingest(ROUTE)
                # Whatever the duplicate and the poll queued has been delivered (or ignored) by now.
                await _wait(lambda: env.hub.store.count_messages(ROUTE, "pending") == 0, 10, env)
                return invoice, note
            finally:
                await env.stop()

        invoice, note = asyncio.run(scenario())

        assert env.hub.store.dlq_count() == 0, env.hub.store.dlq_list()
        assert env.hub.store.count_messages(ROUTE) == 1
        # Lago's number (invoice number + -CN<n>) is longer than SAP's 16-character reference: the tail.
        reference = sap_reference(note["number"])
        assert len(note["number"]) > 16 >= len(reference) and note["number"].endswith(reference)
        docs = [d for d in env.sap_documents() if d["DocumentReferenceID"] == reference]
        assert len(docs) == 1, docs
        items = _sap_items(env, reference)
        assert items and {i["AccountingDocument"] for i in items} == {docs[0]["AccountingDocument"]}
        currency = note["currency"]
        total = Decimal(int(note["total_amount_cents"])).scaleb(-MINOR_UNITS[currency])
        receivable = env.sap_receivables()
        credited = sum(
            (Decimal(str(i["AmountInTransactionCurrency"])) for i in items if i["GLAccount"] == receivable),
            Decimal(0),
        )
        assert credited == -total, (credited, total)
        assert all(i["TransactionCurrency"] == currency for i in items)
        # Balanced, and the credit memo document type (the SAP system's credit_document_type).
        assert sum((Decimal(str(i["AmountInTransactionCurrency"])) for i in items), Decimal(0)) == 0
        assert {i["AccountingDocumentType"] for i in items} == {"DG"}
        # The invoice's own entry is untouched: still one document for it.
        assert len([d for d in env.sap_documents() if d["DocumentReferenceID"] == invoice["number"]]) == 1
    finally:
        env.close()


def test_the_reference_keeps_the_longest_tail_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from credit_note_mapping import sap_reference

    assert sap_reference("LAG-1234-001-002") == "LAG-1234-001-002"  # fits: unchanged
    assert sap_reference("LAG-1234-001-002-CN1") == "1234-001-002-CN1"
    assert sap_reference("LEA-1C12-001-001-CN001") == "001-001-CN001"
    with pytest.raises(ValueError, match="credit_note_number"):
        sap_reference("X-" + "9" * 17)
