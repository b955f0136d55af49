"""The three-way reconciliation's parts that need no system: which systems and routes it compares, the
report's JSON, the metrics of a scheduled run. The comparison itself runs on the sandboxes
(tests/integration/reconcile)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lead2cash.config import load_config
from lead2cash.observability import Metrics
from lead2cash.reconcile.three_way import (
    Difference,
    ThreeWay,
    ThreeWayReport,
    _invoice_ids,
    _order_ids,
    deals_of,
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
    # Joined from the fee listing, an invoice has no subscriptions: its fees name them.
    assert (
        order_of({"fees": [{"external_subscription_id": None}, {"external_subscription_id": "006F:l2"}]})
        == "006F"
    )
    assert order_of({}) is None


def test_an_invoice_lago_consolidated_names_every_deal_it_bills() -> None:
    """Lago bills a customer's subscriptions due the same day on one invoice: it names each deal once,
    the one ``order_of`` attributes it to first; a subscription that is not ``<order>:<line>`` names none."""
    consolidated = {
        "subscriptions": [{"external_id": "006G:l1"}, {"external_id": "006H:l1"}],
        "fees": [
            {"external_subscription_id": "006G:l1"},
            {"external_subscription_id": "006H:l1"},
            {"external_subscription_id": "006J:l2"},
            {"external_subscription_id": "K000123~2"},
            {"external_subscription_id": None},
        ],
    }
    assert deals_of(consolidated) == ["006G", "006H", "006J"]
    assert deals_of({"metadata": [{"key": "lead2cash_order", "value": "006K"}], **consolidated})[0] == "006K"
    assert deals_of({"subscriptions": [{"external_id": "006E:line1"}]}) == ["006E"]
    assert deals_of({}) == []


class _Lago:
    """The Lago client's reads three-way makes, from listed invoices and fees; counts its calls."""

    def __init__(self, invoices: list[dict[str, Any]], fees: list[dict[str, Any]]) -> None:
        self.listed, self.fees = invoices, fees
        self.calls: Counter[str] = Counter()

    async def invoices(self, params: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls["invoices.list"] += 1
        for inv in self.listed:
            yield {k: v for k, v in inv.items() if k not in ("fees", "subscriptions")}

    async def pages(self, path: str, operation: str, root: str, params: Any) -> AsyncIterator[dict[str, Any]]:
        assert (path, operation, root, params) == ("/fees", "fees.list", "fees", {})  # every fee type
        self.calls[operation] += 1
        for fee in self.fees:
            yield fee

    async def get_invoice(self, lago_id: str) -> dict[str, Any]:
        self.calls["invoices.get"] += 1
        return next(i for i in self.listed if i["lago_id"] == lago_id)


def _fee(
    lago_id: str, invoice: str, cents: int, sub: str | None = None, desc: str | None = None
) -> dict[str, Any]:
    return {"lago_id": lago_id, "lago_invoice_id": invoice, "amount_cents": cents,
            "external_subscription_id": sub, "description": desc}  # fmt: skip


def test_invoices_are_read_by_listings_and_whole_only_when_their_fees_are_not_listed(
    config, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    def invoice(lago_id: str, status: str, fees: list[dict[str, Any]], subs: list[str]) -> dict[str, Any]:
        return {"lago_id": lago_id, "status": status, "fees_amount_cents": sum(f["amount_cents"] for f in fees),
                "fees": fees, "subscriptions": [{"external_id": s} for s in subs]}  # fmt: skip

    sub = _fee("f1", "i1", 1000, sub="006A:l1")
    charge = _fee("f2", "i1", 250, sub="006A:l1")
    one_off = _fee("f3", "i2", 500, desc="Setup (order 006B)")
    credit = _fee("f4", "i3", 9000)  # a wallet top-up's fee
    late = _fee("f5", "i4", 700, sub="006C:l1")  # not in the listing: i4 is read whole
    partial = [_fee("f6", "i5", 100, sub="006D:l1"), _fee("f7", "i5", 50, sub="006D:l1")]
    voided = _fee("f8", "i6", 300, sub="006E:l1")
    listed = [
        invoice("i1", "finalized", [sub, charge], ["006A:l1"]),
        invoice("i2", "finalized", [one_off], []),
        invoice("i3", "finalized", [credit], []),
        invoice("i4", "finalized", [late], ["006C:l1"]),
        invoice("i5", "finalized", partial, ["006D:l1"]),
        invoice("i6", "voided", [voided], ["006E:l1"]),
        invoice("i7", "draft", [], []),
    ]
    # The listing moved between two pages: a fee comes twice; one of i5's fees was missed.
    lago = _Lago(listed, [sub, charge, charge, one_off, credit, partial[0], _fee("f9", "elsewhere", 1)])
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    check = ThreeWay(config, store, {"lago": SimpleNamespace(client=lago)})
    got = asyncio.run(check._invoices())
    store.close()
    assert lago.calls == {"invoices.list": 1, "fees.list": 1, "invoices.get": 2}  # i4 and i5
    assert [i["lago_id"] for i in got] == [i["lago_id"] for i in listed]  # the listing's order
    by_id = {i["lago_id"]: i for i in got}
    assert by_id["i1"]["fees"] == [sub, charge] and "subscriptions" not in by_id["i1"]
    assert by_id["i5"] == listed[4] and by_id["i4"] == listed[3]  # read whole
    assert by_id["i6"]["fees"] == [] and by_id["i7"]["fees"] == []  # not finalized: fees not compared
    assert [order_of(by_id[i]) for i in ("i1", "i2", "i3", "i4", "i5")] == [
        "006A",
        "006B",
        None,
        "006C",
        "006D",
    ]
