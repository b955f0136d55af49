"""The three-way reconciliation's parts that need no system: which systems and routes it compares, the
report's JSON, the metrics of a scheduled run. The comparison itself runs on the sandboxes
(tests/integration/reconcile)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from lead2cash.config import load_config
from lead2cash.observability import Metrics
from lead2cash.reconcile.three_way import (
    Difference,
    ThreeWay,
    ThreeWayReport,
    _invoice_ids,
    _order_ids,
    order_of,
    publish,
)
from lead2cash.store import Store

ROOT = Path(__file__).resolve().parents[3]
ENV = {
    "SALESFORCE_CLIENT_ID": "id",
    "SALESFORCE_USERNAME": "u",
    "SALESFORCE_KEY_FILE": "k.pem",
    "LAGO_API_KEY": "key",
    "LAGO_HMAC_KEY": "hmac",
    "SAP_COMM_USER": "u",
    "SAP_COMM_PASSWORD": "p",
    "LEAD2CASH_ADMIN_TOKEN": "token-token",
}


@pytest.fixture()
def config(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    files = [ROOT / "config" / n for n in ("systems.example.yaml", "mappings.yaml", "lead-to-cash.yaml")]
    return load_config(files).config


def test_the_systems_and_routes_are_found_by_type_and_action(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    check = ThreeWay(config, store, {}, config_files=["systems.yaml", "lead-to-cash.yaml"])
    assert (check.crm, check.billing, check.ledger) == ("salesforce", "lago", "sap")
    assert check.billing_route == "won-opportunity-to-billing"
    assert check.ledger_route == "posted-invoice-to-ledger"
    assert check.writeback_routes == ["billing-status-to-opportunity", "ledger-document-to-opportunity"]
    assert check.long_references == "tail" and check.receivables == "12100000"
    assert check.revenue_accounts and all(a.isdigit() for a in check.revenue_accounts)
    # The fixes name the operator's files and the dead letter.
    assert check._cmd("dlq", "replay", "7") == "lead2cash dlq replay -c systems.yaml -c lead-to-cash.yaml 7"
    store.close()


def test_a_system_that_is_not_there_or_ambiguous_is_named(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    named = config.model_copy(
        update={
            "reconcile": config.reconcile.model_copy(
                update={"three_way": config.reconcile.three_way.model_copy(update={"ledger": "sap2"})}
            )
        }
    )
    with pytest.raises(ValueError, match="no system 'sap2'"):
        ThreeWay(named, store, {})
    two = config.model_copy(update={"systems": {**config.systems, "sap2": config.systems["sap"]}})
    with pytest.raises(ValueError, match="one system of type sap"):
        ThreeWay(two, store, {})
    store.close()


def test_the_json_report_has_clean_totals_and_rows() -> None:
    report = ThreeWayReport(
        won={"EUR": Decimal("100.00")},
        invoiced={"EUR": Decimal("119.00"), "JPY": Decimal("1000")},
        posted={"EUR": Decimal("119.00")},
    )
    assert report.as_json()["clean"] is True
    report.differences.append(
        Difference(
            "dead_letter",
            "JPY",
            "invoice X not posted",
            "`lead2cash dlq replay -c a.yaml 3`",
            invoice="X",
            invoiced=Decimal("1000"),
            dead_letter=3,
        )
    )
    data = json.loads(json.dumps(report.as_json()))
    assert data["clean"] is False and data["differences_by_cause"] == {"dead_letter": 1}
    assert data["currencies"]["EUR"] == {
        "won": "100.00",
        "invoiced": "119.00",
        "posted_receivable": "119.00",
        "invoiced_equals_posted": True,
        "differences": 0,
    }
    assert data["currencies"]["JPY"]["posted_receivable"] is None
    assert data["currencies"]["JPY"]["invoiced_equals_posted"] is False
    assert data["differences"][0]["invoiced"] == "1000" and data["differences"][0]["dead_letter"] == 3
    assert report.problems == ["invoice X not posted [dead_letter]"] and not report.agree


def test_a_scheduled_run_sets_the_metrics_and_a_fixed_cause_goes_to_zero() -> None:
    metrics = Metrics()
    sample = metrics.registry.get_sample_value
    report = ThreeWayReport(invoiced={"USD": Decimal(1)}, posted={"USD": Decimal(0)})
    report.differences.append(Difference("pending_delivery", "USD", "d", "f"))
    labels = publish(metrics, report)
    assert (
        sample(
            "lead2cash_reconcile_differences",
            {"check": "three_way", "currency": "USD", "cause": "pending_delivery"},
        )
        == 1
    )
    assert sample("lead2cash_reconcile_clean", {"check": "three_way"}) == 0
    assert sample("lead2cash_reconcile_last_run_timestamp", {"check": "three_way"})
    publish(metrics, ThreeWayReport(), labels)
    assert (
        sample(
            "lead2cash_reconcile_differences",
            {"check": "three_way", "currency": "USD", "cause": "pending_delivery"},
        )
        == 0
    )
    assert sample("lead2cash_reconcile_clean", {"check": "three_way"}) == 1


def test_records_are_told_apart_by_their_deal_and_invoice() -> None:
    order = json.dumps({"id": "006A", "status": "lost"})
    assert _order_ids(order, None, "order:006A:v12") == {"006A"}
    assert _order_ids(None, json.dumps({"Id": "006B", "Amount": 1}), None) == {"006B"}
    invoice = json.dumps({"id": "lago-1", "invoice_number": "LAG-1-001"})
    assert _invoice_ids(invoice, json.dumps({"invoice": {"number": "LAG-1-001"}}), "invoice:LAG-1-001") == {
        "LAG-1-001"
    }
    assert order_of({"metadata": [{"key": "lead2cash_order", "value": "006C"}]}) == "006C"
    assert order_of({"fees": [{"description": "Setup (order 006D)"}]}) == "006D"
    assert order_of({"subscriptions": [{"external_id": "006E:line1"}]}) == "006E"
    assert order_of({}) is None
