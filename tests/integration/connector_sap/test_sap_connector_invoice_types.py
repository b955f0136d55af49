"""Lago's invoice types posted to the SAP sandbox through the router by their nature, as the shipped
tables declare them: a wallet top-up (invoice_type credit) to the customer advance, never revenue; an
invoice partly settled by prepaid credits moves them from the advance to the receivable; hardware and
software fees on their family's revenue account; an unknown invoice type is a dead letter naming it."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import doubles
from sap_hub_config import sap_system

from lead2cash.hub import Hub

MAPPINGS = {
    "product_families": {"HW-GW": "Hardware", "PLAT-BASE": "Software"},
    "sap_invoice_postings": {
        "subscription": "revenue", "add_on": "revenue", "one_off": "revenue",
        "progressive_billing": "revenue", "credit": "advance",
    },
}  # fmt: skip


def _customer(n: int) -> dict[str, Any]:
    return {"lago_id": f"c-{n}", "external_id": f"001TYPES{n:04d}", "name": f"Types {n} GmbH",
            "country": "DE", "currency": "EUR", "address_line1": "Hauptstr. 1", "city": "Berlin",
            "zipcode": "10115"}  # fmt: skip


def _fee(lago_id: str, kind: str, code: str, cents: int) -> dict[str, Any]:
    return {"lago_id": lago_id, "amount_cents": cents, "units": "1.0", "amount_currency": "EUR",
            "item": {"type": kind, "code": code, "name": code}, "applied_taxes": []}  # fmt: skip


def _invoice(n: int, invoice_type: str, fees: list[dict[str, Any]], prepaid: int = 0) -> dict[str, Any]:
    net = sum(f["amount_cents"] for f in fees)
    return {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": {
        "lago_id": f"inv-{n}", "number": f"LAG-TYP-{n:03d}", "currency": "EUR", "status": "finalized",
        "payment_status": "pending", "invoice_type": invoice_type, "issuing_date": "2026-01-05",
        "updated_at": "2026-01-05T10:00:00Z", "customer": _customer(n % 2), "fees": fees,
        "fees_amount_cents": net, "coupons_amount_cents": 0, "sub_total_excluding_taxes_amount_cents": net,
        "taxes_amount_cents": 0, "sub_total_including_taxes_amount_cents": net, "applied_taxes": [],
        "credit_notes_amount_cents": 0, "prepaid_credit_amount_cents": prepaid,
        "total_amount_cents": net - prepaid}}  # fmt: skip


def test_each_invoice_type_lands_on_its_accounts(tmp_path: Path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    system = sap_system(sap_box, invoice_postings="sap_invoice_postings")
    route = {
        "name": "invoices-to-sap",
        "source": {"system": "mem", "object": "invoices", "trigger": {"type": "poll", "interval": "1s"}},
        "mapping": {
            "adapter": "lago.invoice",
            "entity": "Invoice",
            "options": {"product_family_table": "product_families"},
        },
        "target": {"system": "s4", "action": "journal_entry.post"},
        "idempotency_key": "invoice:{invoice_number}",
        "ordering_key": "{customer.id}",
        "retry": {"attempts": 5, "initial_backoff": "5ms", "max_backoff": "50ms", "jitter": "5ms"},
    }
    config = {
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "logging": {"level": "WARNING"},
        "systems": {"mem": {"type": "python", "factory": "doubles:memory_system"}, "s4": system},
        "mappings": MAPPINGS,
        "routes": [route],
    }
    path = tmp_path / "types.yaml"
    path.write_text(json.dumps(config))
    records = [
        # a wallet top-up of 500.00: a prepayment
        _invoice(1, "credit", [_fee("f-1", "credit", "credit", 50000)]),
        # a one-off invoice: 329.99 hardware, 459.00 software, 200.00 of it settled by prepaid credits
        _invoice(
            2,
            "one_off",
            [_fee("f-2", "add_on", "HW-GW", 32999), _fee("f-3", "subscription", "PLAT-BASE__EUR", 45900)],
            prepaid=20000,
        ),
        # a type Lago does not issue: refused, not guessed
        _invoice(3, "gift_card", [_fee("f-4", "add_on", "HW-GW", 1000)]),
    ]
    doubles.REGISTRY.clear()
    hub = Hub.from_files([path], configure_logs=False)
    doubles.REGISTRY["mem"].records.extend(records)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=60))
        dead = hub.store.dlq_list()
    finally:
        hub.close()
    assert [d.error_message for d in dead] == [
        "ValueError: invoice.invoice_type: 'gift_card' is not a Lago invoice type "
        "(add_on, credit, one_off, progressive_billing, subscription)"
    ]
    ledger = sap_admin.get("/__sandbox/sap/ledger").json()
    assert ledger["documents"] == 2
    book = ledger["company_codes"]["1010"]["transaction_currency"]["EUR"]
    assert Decimal(book["balance"]) == 0
    accounts = {a: Decimal(v) for a, v in book["accounts"].items()}
    assert accounts == {
        "12100000": Decimal("500.00") + Decimal("588.99"),  # what Lago says is owed: totals less prepaid
        "21800000": Decimal("-500.00") + Decimal("200.00"),  # advance received, then partly used
        "41300000": Decimal("-329.99"),  # hardware
        "41000000": Decimal("-459.00"),  # software; the top-up is on no revenue account
    }
