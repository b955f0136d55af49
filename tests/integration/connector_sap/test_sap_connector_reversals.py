"""Voided invoices on the SAP sandbox through the router (journal_entry.reverse): a posted invoice's void
is a reversal document under <number>-RV on the same accounts, the original's number as the assignment;
a void of an invoice never posted posts nothing; a void that overtakes its invoice's posting waits for
it; a duplicate void reverses once. The invoice is never posted twice."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import doubles
from sap_hub_config import sap_system
from test_sap_connector_invoice_types import MAPPINGS, _fee, _invoice

from lead2cash.hub import Hub

RETRY = {"attempts": 60, "initial_backoff": "20ms", "max_backoff": "50ms", "jitter": "5ms"}


def _route(name: str, source: str, action: str, key: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"system": source, "object": "invoices", "trigger": {"type": "poll", "interval": "1s"}},
        "mapping": {
            "adapter": "lago.invoice",
            "entity": "Invoice",
            "options": {"product_family_table": "product_families"},
        },
        "target": {"system": "s4", "action": action, "options": options},
        "idempotency_key": key,
        "ordering_key": "{customer.id}",
        "retry": RETRY,
    }


def _voided(record: dict[str, Any]) -> dict[str, Any]:
    invoice = {**record["invoice"], "status": "voided", "updated_at": "2026-01-06T09:00:00Z"}
    return {**record, "webhook_type": "invoice.voided", "invoice": invoice}


def test_voids_reverse_posted_invoices_once_and_post_nothing_for_the_others(
    tmp_path: Path,
    sap_box: Any,
    sap_admin: Any,
) -> None:
    config = {
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "logging": {"level": "WARNING"},
        "systems": {
            "mem": {"type": "python", "factory": "doubles:memory_system"},
            "memvoid": {"type": "python", "factory": "doubles:memory_system"},
            "s4": sap_system(sap_box, invoice_postings="sap_invoice_postings"),
        },
        "mappings": MAPPINGS,
        "routes": [
            _route("invoices", "mem", "journal_entry.post", "invoice:{invoice_number}"),
            _route(
                "voids",
                "memvoid",
                "journal_entry.reverse",
                "invoice-void:{invoice_number}",
                after_route="invoices",
                after_key="invoice:{invoice_number}",
            ),
        ],
    }
    path = tmp_path / "voids.yaml"
    path.write_text(json.dumps(config))
    posted = _invoice(
        1,
        "one_off",
        [_fee("f-1", "add_on", "HW-GW", 32999), _fee("f-2", "subscription", "PLAT-BASE__EUR", 1000)],
    )
    overtaken = _invoice(2, "one_off", [_fee("f-3", "add_on", "HW-GW", 5000)])
    never = _invoice(3, "one_off", [_fee("f-4", "add_on", "HW-GW", 7000)])
    doubles.REGISTRY.clear()
    hub = Hub.from_files([path], configure_logs=False)
    invoices, voids = doubles.REGISTRY["mem"].records, doubles.REGISTRY["memvoid"].records

    async def scenario() -> None:
        # 1. Posted, then voided (the void delivered twice).
        invoices.append(posted)
        assert await hub.run_until_idle(timeout=60)
        voids.extend([_voided(posted), _voided(posted)])
        assert await hub.run_until_idle(timeout=60)
        # 2. The void overtakes the posting: both queued, the reversal route delivers first and waits.
        invoices.append(overtaken)
        voids.append(_voided(overtaken))
        await hub.ingest("invoices")
        await hub.ingest("voids")

        async def later() -> None:
            await asyncio.sleep(0.4)
            await hub.routes["invoices"].deliver_once("w1")

        await asyncio.gather(hub.routes["voids"].deliver_once("w2"), later())
        # 3. Voided before it was ever posted: route 2 never saw it finalized.
        voids.append(_voided(never))
        assert await hub.run_until_idle(timeout=60)

    try:
        asyncio.run(scenario())
        assert hub.store.dlq_list() == []
        refs = {m.idempotency_key: m.target_ref for m in hub.store.messages_for("voids")}
        waited = hub.metrics.retries.labels("voids", "transient")._value.get()
    finally:
        hub.close()
    assert refs["invoice-void:LAG-TYP-003"] == "not-posted"
    assert waited > 0, "the overtaking void did not wait for its invoice's posting"
    documents = sap_admin.get("/__sandbox/sap/ledger/documents").json()
    docs = documents if isinstance(documents, list) else documents["documents"]
    references = sorted(d["DocumentReferenceID"] for d in docs)
    assert references == ["LAG-TYP-001", "LAG-TYP-001-RV", "LAG-TYP-002", "LAG-TYP-002-RV"]
    book = sap_admin.get("/__sandbox/sap/ledger").json()["company_codes"]["1010"]["transaction_currency"][
        "EUR"
    ]
    # Every void reversed exactly what was posted: nothing left on any account.
    assert {a: Decimal(v) for a, v in book["accounts"].items() if Decimal(v)} == {}
    assert Decimal(book["debit"]) == Decimal("2") * (Decimal("339.99") + Decimal("50.00"))
