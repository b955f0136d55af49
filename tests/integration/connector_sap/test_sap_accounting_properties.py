"""The accounting property (tests/unit/sap_adapter/test_accounting_properties.py) through the router and
the SAP sandbox: each random sequence's records go to three routes declared as the shipped ones are
(lago.invoice -> journal_entry.post, lago.invoice -> journal_entry.reverse, lago.credit_note ->
journal_entry.post, lago.payment -> payment.clear, lago.payment_record -> payment_record.clear,
lago.credit_note -> credit_note.refund, lago.wallet_transaction -> wallet_credits.void, the shipped
filters and mapping tables), duplicates included, and what SAP booked is read back:
per customer the receivable equals what Lago says is owed, the customer advance equals the wallets' paid
credits, the sales deduction the granted credits used less those voids gave back,
revenue is on each fee's family account, every document once and every document balanced.

``LEAD2CASH_ACCOUNTING_SANDBOX_EXAMPLES`` sets the number of sequences (200 by default)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import doubles
import pytest
from hypothesis import HealthCheck, settings
from sap_hub_config import sap_system
from test_accounting_properties import (
    ADVANCE,
    GRANTED,
    MAPPINGS,
    RECEIVABLE,
    SEQUENCES,
    SHIPPED_ROUTES,
    VOIDED,
    check,
    simulate,
)

from lead2cash.hub import Hub

RETRY = {"attempts": 60, "initial_backoff": "10ms", "max_backoff": "50ms", "jitter": "5ms"}
SOURCES = {
    "invoices": "mem_invoices",
    "voids": "mem_voids",
    "credit_notes": "mem_notes",
    "payments": "mem_payments",
    "records": "mem_records",
    "refunds": "mem_refunds",
    "wallet_transactions": "mem_wallet",
}
# The shipped routes' filters (config/accounting.yaml), by the name the sequences give their records.
SHIPPED = {
    "payments": "payment-to-ledger",
    "records": "payment-record-to-ledger",
    "refunds": "credit-note-refund-to-ledger",
}


def _route(name: str, action: str, key: str, adapter: str, entity: str, **options: Any) -> dict[str, Any]:
    route = {
        "name": name,
        "source": {"system": SOURCES[name], "object": name, "trigger": {"type": "poll", "interval": "1s"}},
        "mapping": {
            "adapter": adapter,
            "entity": entity,
            "options": {"product_family_table": "product_families"},
        },
        "target": {"system": "s4", "action": action, "options": {"long_references": "tail", **options}},
        "idempotency_key": key,
        "ordering_key": {"Invoice": "{customer.id}", "Payment": "{id}"}.get(entity, "{customer_id}"),
        "retry": RETRY,
    }
    if name in SHIPPED:
        route["filter"] = SHIPPED_ROUTES[SHIPPED[name]]["filter"]
    return route


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("LEAD2CASH_ACCOUNTING_SANDBOX_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@SEQUENCES
def test_sap_sandbox_receivables_agree_with_lago_after_random_sequences(
    sap_box: Any, sap_admin: Any, currencies: list[str], steps: list[tuple[int, Any, bool]]
) -> None:
    sim = simulate(currencies, steps)
    sap_admin.post("/__sandbox/reset").raise_for_status()
    doubles.REGISTRY.clear()
    system = sap_system(sap_box, invoice_postings="sap_invoice_postings")
    system.pop("revenue_account_by_family")
    system.pop("tax_code_by_catalog_code")
    system.update(
        revenue_accounts="sap_revenue_accounts",
        tax_codes="sap_tax_codes",
        clearing_accounts="sap_clearing_accounts",
    )
    workdir = Path(tempfile.mkdtemp(prefix="l2c-accounting-"))
    config = {
        "state": {"url": f"sqlite:///{workdir / 'state.db'}"},
        "logging": {"level": "ERROR"},
        "systems": {
            **{s: {"type": "python", "factory": "doubles:memory_system"} for s in SOURCES.values()},
            "s4": system,
        },
        "mappings": MAPPINGS,
        "routes": [
            _route("invoices", "journal_entry.post", "invoice:{invoice_number}", "lago.invoice", "Invoice"),
            _route(
                "voids",
                "journal_entry.reverse",
                "invoice-void:{invoice_number}",
                "lago.invoice",
                "Invoice",
                after_route="invoices",
                after_key="invoice:{invoice_number}",
            ),
            _route(
                "credit_notes", "journal_entry.post", "credit-note:{id}", "lago.credit_note", "CreditNote"
            ),
            _route("payments", "payment.clear", "payment:{id}:v{version}", "lago.payment", "Payment"),
            _route(
                "records",
                "payment_record.clear",
                "payment-record:{id}:v{version}",
                "lago.payment_record",
                "Payment",
            ),
            _route(
                "refunds",
                "credit_note.refund",
                "credit-note-refund:{id}:v{version}",
                "lago.credit_note",
                "CreditNote",
            ),
            _route(
                "wallet_transactions",
                "wallet_credits.void",
                "wallet-transaction:{id}",
                "lago.wallet_transaction",
                "WalletTransaction",
            ),
        ],
    }
    path = workdir / "accounting.yaml"
    path.write_text(json.dumps(config))
    hub = Hub.from_files([path], configure_logs=False)
    for route, record in sim.records:
        doubles.REGISTRY[SOURCES[route]].records.append(record)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=120)), "the routes did not drain"
        dead = [d.error_message for d in hub.store.dlq_list()]
        partners = {customer: hub.store.xref_get("Customer", customer, "sap") for customer in sim.owed}
    finally:
        hub.close()
    assert dead == []
    ledger = sap_box.running["sap"].system.ledger
    rows = list(ledger.items.rows.values())
    customer_of = {p: c for c, p in partners.items() if p}
    receivables: dict[str, Decimal] = defaultdict(Decimal)
    advance: dict[str, Decimal] = defaultdict(Decimal)
    revenue: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    granted: dict[str, Decimal] = defaultdict(Decimal)
    voided: dict[str, Decimal] = defaultdict(Decimal)
    per_document: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        amount, cur, account = (
            Decimal(row["AmountInTransactionCurrency"]),
            row["TransactionCurrency"],
            row["GLAccount"],
        )
        per_document[row["AccountingDocument"] + row["CompanyCode"]] += amount
        if account == RECEIVABLE:
            receivables[customer_of[row["Customer"]]] += amount
        elif account == ADVANCE:
            advance[cur] -= amount
        elif account == GRANTED:
            granted[cur] += amount
        elif account == VOIDED:
            voided[cur] -= amount
        elif account.startswith("41"):
            revenue[(cur, account)] -= amount
    assert all(v == 0 for v in per_document.values()), "a document does not balance"
    references = Counter(d["DocumentReferenceID"] for d in ledger.documents.values())
    assert not [r for r, n in references.items() if n > 1], references
    check(sim, receivables, advance, revenue, granted, voided)
