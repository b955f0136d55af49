"""The reliability checker (tests/harness/processes.py ``check``) fed known effects: it must name every lost,
duplicated and unexpected effect, and nothing when the systems hold exactly what the sources ask for. The
systems are a double with the checker's four reads; the store is a real one (SQLite)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.processes import LEDGER_ROUTE, SALESFORCE_SOURCE, check

from lead2cash.demo.environment import sap_reference
from lead2cash.store import NewMessage, Store

STAMP = "2026-01-05T10:00:00.000+0000"
INVOICE = "INV-2026-0001"
DOCUMENT = "100000001"


class Observed:
    """What the three systems counted and hold, as ``harness.processes.Systems`` reads it over HTTP."""

    def __init__(self) -> None:
        self.won = {
            "006A": {
                "Id": "006A",
                "AccountId": "001A",
                "SystemModstamp": STAMP,
                "Billing_Invoice_Number__c": INVOICE,
                "SAP_Accounting_Document__c": DOCUMENT,
                "recurring_lines": ["00kR"],
                "one_time_lines": ["00kO"],
            }
        }
        self.invoices: list[dict[str, Any]] = [
            {
                "lago_id": "lago-1",
                "number": INVOICE,
                "status": "finalized",
                "invoice_type": "one_off",
                "customer": {"external_id": "001a"},
                "metadata": [{"key": "lead2cash_order", "value": "006A"}],
            }
        ]
        ref = sap_reference(INVOICE)
        self.counts: dict[str, dict[str, dict[str, int]]] = {
            "lago": {
                "customer.create": {"001A": 1},
                "subscription.create": {"006A:00kR": 1},
                "invoice.metadata": {"lead2cash_order=006A": 1},
            },
            "sap": {"journal_entry.post": {f"1710:{ref}": 1}, "business_partner.create": {"001A": 1}},
            "salesforce": {"Opportunity.update": {"006A": 2}},
        }
        self.documents = [{"DocumentReferenceID": ref, "AccountingDocument": DOCUMENT}]

    def won_deals(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self.won)

    def effects(self, system: str) -> dict[str, dict[str, int]]:
        return copy.deepcopy(self.counts[system])

    def lago_invoices(self, detailed: bool = False) -> list[dict[str, Any]]:
        return copy.deepcopy(self.invoices)

    def sap_documents(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.documents)


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    cursor = json.dumps({"ts": STAMP.replace("+0000", "+00:00"), "id": "006A"})
    store.checkpoint_set(f"{SALESFORCE_SOURCE}:salesforce", cursor, "test")
    return store


def test_exactly_what_the_sources_ask_for_is_ok(store: Store) -> None:
    verdict = check(Observed(), store)  # type: ignore[arg-type]
    assert verdict.problems == []
    assert (verdict.deals, verdict.invoices, verdict.lost, verdict.duplicated, verdict.unexpected) == (
        1,
        1,
        0,
        0,
        0,
    )
    assert verdict.ok


def _lose_journal_entry(o: Observed) -> None:
    o.counts["sap"]["journal_entry.post"] = {}


def _duplicate_subscription(o: Observed) -> None:
    o.counts["lago"]["subscription.create"]["006A:00kR"] = 2


def _unexpected_customer(o: Observed) -> None:
    o.counts["lago"]["customer.create"]["001Z"] = 1


def _write_to_an_open_deal(o: Observed) -> None:
    o.counts["salesforce"]["Opportunity.update"]["006OPEN"] = 1


def _lose_write_back(o: Observed) -> None:
    o.won["006A"]["SAP_Accounting_Document__c"] = None


def _lose_one_off_invoice(o: Observed) -> None:
    o.invoices[0]["invoice_type"] = "subscription"


@pytest.mark.parametrize(
    ("change", "counter", "problem"),
    [
        (_lose_journal_entry, "lost", f"lost SAP journal entry for invoice {sap_reference(INVOICE)}"),
        (_lose_one_off_invoice, "lost", "lost Lago one-off invoice for deal 006A"),
        (_lose_write_back, "lost", "lost write-back on opportunity 006A"),
        (_duplicate_subscription, "duplicated", "duplicated Lago subscription 006A:00kR x2"),
        (_unexpected_customer, "unexpected", "unexpected Lago customer 001Z x1"),
        (_write_to_an_open_deal, "unexpected", "unexpected Salesforce update of opportunity 006OPEN x1"),
    ],
)
def test_each_known_fault_is_named(
    store: Store, change: Callable[[Observed], None], counter: str, problem: str
) -> None:
    observed = Observed()
    change(observed)
    verdict = check(observed, store)  # type: ignore[arg-type]
    assert not verdict.ok
    assert getattr(verdict, counter) == 1
    assert [p for p in verdict.problems if p.startswith(problem)] != [], verdict.problems
    others = {"lost", "duplicated", "unexpected"} - {counter}
    assert all(getattr(verdict, name) == 0 for name in others), verdict.problems


def test_a_permanent_dead_letter_accounts_for_its_invoice(store: Store) -> None:
    """An invoice the hub set aside with a reason is not expected in SAP (not lost), and is counted."""
    observed = Observed()
    _lose_journal_entry(observed)
    observed.counts["sap"]["business_partner.create"] = {}
    observed.documents = []
    payload = json.dumps({"invoice_number": INVOICE})
    store.enqueue(LEDGER_ROUTE, [NewMessage("k1", "Invoice", payload, "t1")])
    [message] = store.claim(LEDGER_ROUTE, "w", 1, 60_000)
    store.dead_letter_message(message, "permanent", "no tax code: 'X1'", [])
    verdict = check(observed, store)  # type: ignore[arg-type]
    assert verdict.problems == []
    assert verdict.dead_lettered == {"no tax code": 1}


def test_effects_left_sent_and_a_checkpoint_behind_the_head_are_problems(store: Store) -> None:
    from lead2cash.store import EffectState

    store.effects_reserve("T", "r", [("k", 1)])
    store.effects_mark("T", ["k"], EffectState.SENT)
    store.checkpoint_set(
        f"{SALESFORCE_SOURCE}:salesforce", json.dumps({"ts": "2026-01-01T00:00:00+00:00", "id": "006"}), "t"
    )
    verdict = check(Observed(), store)  # type: ignore[arg-type]
    assert verdict.sent_left == 1
    assert any(p.startswith("effect ledger: 1 sent") for p in verdict.problems)
    assert any("behind the newest won deal" in p for p in verdict.problems)
