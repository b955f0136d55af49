"""Invoice state written back onto Opportunities through the hub, against a faulty sandbox: every effect is
applied exactly once (lost responses are resolved by reading the Opportunity back), validation failures
are dead-lettered with the field, and a spent API allocation pauses the route without losing work."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from waiting import wait_until

from lead2cash.canonical_model import Customer, Invoice, InvoiceLine, Money
from lead2cash.hub import Hub


def _invoice(i: int, opp: dict[str, Any] | None, amount: str = "1234.56", **kw: Any) -> Invoice:
    ccy = opp["CurrencyIsoCode"] if opp else "USD"
    refs = {"lago": f"lago-{i}", "sap": f"5100{i:06d}"}
    if opp:
        refs["salesforce"] = opp["Id"]
    line = InvoiceLine(id=f"l{i}", description="Platform", net_amount=Money.of(Decimal(amount), ccy))
    fields: dict[str, Any] = {"status": "finalized", **kw}
    return Invoice.build(
        id=f"inv-{i}",
        refs=refs,
        invoice_number=f"INV-{i:06d}",
        customer=Customer(id=f"c{i}", name=f"Customer {i}"),
        currency=ccy,
        issue_date=dt.date(2025, 1, 15),
        lines=[line],
        **fields,
    )


def _route(**retry: Any) -> dict[str, Any]:
    return {
        "name": "writeback",
        "source": {"system": "files", "object": "invoices", "trigger": {"type": "poll", "interval": "1h"}},
        "mapping": {"adapter": "canonical", "entity": "Invoice"},
        "target": {"system": "sf", "action": "writeback"},
        "idempotency_key": "invoice:{id}:v{version}",
        "batch_size": 200,
        "concurrency": 32,
        "retry": {"attempts": 40, "initial_backoff": "1ms", "max_backoff": "20ms", "jitter": "1ms", **retry},
    }


def _write_invoices(tmp_path: Path, invoices: list[Invoice]) -> None:
    with (tmp_path / "invoices.jsonl").open("a") as fh:
        for inv in invoices:
            fh.write(inv.model_dump_json() + "\n")


def _close(hub: Hub) -> None:
    hub.systems["sf"].close()  # type: ignore[attr-defined]
    hub.close()


def test_writeback_exactly_once_through_lost_responses_and_expired_sessions(org, tmp_path: Path) -> None:
    opps = org.soql("SELECT Id, CurrencyIsoCode FROM Opportunity WHERE IsWon = true ORDER BY Id")[:60]
    good = [_invoice(i, o, status="paid", payment_status="succeeded") if i % 3 == 0 else _invoice(i, o)
            for i, o in enumerate(opps)]  # fmt: skip
    negative = _invoice(900, opps[0] | {"Id": opps[1]["Id"]}, amount="-10.00")  # the org's validation rule
    orphan = _invoice(901, None)
    _write_invoices(tmp_path, [*good, negative, orphan])
    config = org.write_config(tmp_path, [_route()])
    org.admin(
        "PUT",
        "faults",
        json={
            "rules": {
                "collections.update": {
                    "commit_then_drop_rate": 0.3,
                    "error_rate": 0.2,
                    "retry_after_s": 0,
                    "expire_session_rate": 0.1,
                }
            }
        },
    )
    hub = Hub.from_files([config], configure_logs=False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=60))
        dead = {json.loads(d.original_payload)["id"]: d for d in hub.store.dlq_list("writeback")}
        recovered = hub.metrics.recovered.labels("writeback")._value.get()
        logins = hub.systems["sf"].client.logins  # type: ignore[attr-defined]
    finally:
        _close(hub)
    assert set(dead) == {"inv-900", "inv-901"}
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in dead["inv-900"].error_message
    assert dead["inv-900"].error_class == "permanent"
    assert "refs.salesforce" in dead["inv-901"].error_message
    assert recovered > 0, "lost responses must have been resolved by lookup"
    assert logins > 1, "expired sessions must have been refreshed"

    effects = org.admin("GET", "effects")["Opportunity.update"]
    assert effects == {inv.refs["salesforce"]: 1 for inv in good}, "every write-back applied exactly once"
    rows = {
        r["Id"]: r
        for r in org.soql(
            "SELECT Id, Billing_Invoice_Number__c, Billing_Invoiced_Amount__c, Billing_Payment_Status__c, "
            "SAP_Accounting_Document__c, Billing_Last_Sync__c FROM Opportunity WHERE IsWon = true"
        )
    }
    for inv in good:
        row = rows[inv.refs["salesforce"]]
        assert row["Billing_Invoice_Number__c"] == inv.invoice_number
        assert Decimal(str(row["Billing_Invoiced_Amount__c"])) == inv.total.amount
        assert row["Billing_Payment_Status__c"] == ("Paid" if inv.status == "paid" else "Pending")
        assert row["SAP_Accounting_Document__c"] == inv.refs["sap"]
        assert row["Billing_Last_Sync__c"]


def test_spent_allocation_pauses_the_route_and_resumes_with_nothing_lost(org, tmp_path: Path) -> None:
    opps = org.soql("SELECT Id, CurrencyIsoCode FROM Opportunity WHERE IsWon = true ORDER BY Id")[:30]
    _write_invoices(tmp_path, [_invoice(i, o) for i, o in enumerate(opps)])
    config = org.write_config(
        tmp_path,
        [_route(max_inline_wait="100ms") | {"concurrency": 1}],
        api_budget={"pause_below": 0.2, "retry_after": "300ms"},
        write_window=0,
    )
    used = org.admin("GET", "salesforce/limits")["used"]
    org.admin("PUT", "salesforce/limits", json={"max": used + 12})  # ~10 calls before the governor stops

    def raise_allocation() -> None:
        # The allocation returns once the governor has paused the route (not after a guessed time).
        wait_until(lambda: hub.metrics.paused.labels("writeback")._value.get() >= 1, 60, what="the pause")
        org.admin("PUT", "salesforce/limits", json={"max": 15000})

    helper = threading.Thread(target=raise_allocation)
    hub = Hub.from_files([config], configure_logs=False)
    try:
        helper.start()
        assert asyncio.run(hub.run_until_idle(timeout=60))
        paused = hub.metrics.paused.labels("writeback")._value.get()
        dead = hub.store.dlq_count("writeback")
        governor = hub.systems["sf"].client.governor  # type: ignore[attr-defined]
    finally:
        helper.join()
        _close(hub)
    assert paused == 1, "the route must have been paused while the allocation was spent"
    assert governor.max == 15000 and dead == 0
    effects = org.admin("GET", "effects")["Opportunity.update"]
    assert effects == {o["Id"]: 1 for o in opps}


def test_spent_allocation_keeps_the_source_checkpoint(org, tmp_path: Path) -> None:
    route = {
        "name": "won-deals",
        "source": {"system": "sf", "object": "Opportunity", "trigger": {"type": "poll", "interval": "1h"}},
        "mapping": {"adapter": "salesforce.opportunity", "entity": "Order"},
        "target": {"system": "files", "action": "append", "options": {"object": "orders"}},
        "idempotency_key": "order:{id}:v{version}",
    }
    config = org.write_config(tmp_path, [route], safety_lag="0s", api_budget={"retry_after": "0s"})
    org.admin("PUT", "salesforce/limits", json={"used": 15000, "max": 15000})
    hub = Hub.from_files([config], configure_logs=False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30))
        assert hub.store.checkpoint_get("won-deals:sf/Opportunity") is None
        assert hub.store.count_messages("won-deals", "pending") == 0
    finally:
        _close(hub)
    org.admin("PUT", "salesforce/limits", json={"used": 0, "max": 15000})
    org.advance(120)
    hub = Hub.from_files([config], configure_logs=False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30))
    finally:
        _close(hub)
    won = {r["Id"] for r in org.soql("SELECT Id FROM Opportunity WHERE IsWon = true")}
    lines = (tmp_path / "orders.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["entity"]["id"] for line in lines) == sorted(won)


def test_concurrent_calls_reuse_pooled_connections(org, caplog) -> None:  # type: ignore[no-untyped-def]
    """As many connections are kept as calls may run at once: none is discarded and handshaken again."""
    from lead2cash.connectors.salesforce import ConnectionSettings, SalesforceClient
    from lead2cash.connectors.salesforce.auth import Credentials

    cfg = org.system()
    client = SalesforceClient(
        ConnectionSettings(
            token_url=org.base + "/services/oauth2/token",
            credentials=Credentials("client_credentials", org.sandbox.client_id, org.sandbox.client_secret),
            ca_bundle=cfg["ca_bundle"],
            max_concurrent_calls=16,
        )
    )
    budget = client.budget("pool")

    async def burst() -> list[Any]:
        calls = [
            client.call(budget, lambda sf: sf.query("SELECT Id FROM Account LIMIT 1"), "q") for _ in range(48)
        ]
        return await asyncio.gather(*calls)

    try:
        with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
            results = asyncio.run(burst())
    finally:
        client.close()
    assert len(results) == 48 and all(r["totalSize"] == 1 for r in results)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
