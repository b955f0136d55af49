"""Journal entry posting over SOAP, read-back through OData, ledger and effects."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from lxml import etree


def _confirmation(r: httpx.Response) -> etree._Element:
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    return root.find(".//{http://sap.com/xi/SAPSCORE/SFIN}JournalEntryBulkCreateConfirmation")


def _entry_result(r: httpx.Response) -> tuple[str, str, list[str]]:
    conf = _confirmation(r).find("JournalEntryCreateConfirmation")
    doc = conf.findtext("JournalEntryCreateConfirmation/AccountingDocument")
    severity = conf.findtext("Log/MaximumLogItemSeverityCode")
    notes = [i.findtext("Note") for i in conf.findall("Log/Item")]
    return doc, severity, notes


def test_balanced_entry_posts_and_reads_back(sap, admin, h):
    body = h.journal_entry(
        "INV-OK-1",
        lines=[("41000000", "-100.00", "A1"), ("41100000", "-50.00", "A1")],
        tax=("A1", "-28.50", "-150.00"),
    )
    doc, severity, notes = _entry_result(h.post_soap(sap, body))
    assert severity == "1"
    assert doc.startswith("18") and len(doc) == 10
    assert notes == [f"Document posted successfully: BKPFF {doc}10102024 LEAD2CASH"]
    # A BKPFF posting's reference key is the document itself; the sender's reference is the header's XBLNR.
    items = sap.get(
        h.GL + "/GLAccountLineItem",
        params={
            "$filter": f"ReferenceDocument eq '{doc}' and CompanyCode eq '1010'",
            "$orderby": "LedgerGLLineItem",
        },
    ).json()["d"]["results"]
    assert [(i["GLAccount"], i["AmountInTransactionCurrency"], i["DebitCreditCode"]) for i in items] == [
        ("41000000", "-100.00", "H"),
        ("41100000", "-50.00", "H"),
        ("12100000", "178.50", "S"),
        ("22000000", "-28.50", "H"),
    ]
    debtor = items[2]
    assert debtor["Customer"] == "1000001" and debtor["AccountingDocument"] == doc
    assert debtor["PostingDate"] == "/Date(1731628800000)/"
    assert debtor["AssignmentReference"] == "INV-OK-1"
    by_doc = sap.get(h.GL + "/GLAccountLineItem", params={"$filter": f"AccountingDocument eq '{doc}'"}).json()
    assert len(by_doc["d"]["results"]) == 4
    by_reference = sap.get(
        h.CUBE + "/A_OperationalAcctgDocItemCube",
        params={
            "$filter": "DocumentReferenceID eq 'INV-OK-1' and CompanyCode eq '1010'",
            "$select": "CompanyCode,FiscalYear,AccountingDocument,OriginalReferenceDocument",
        },
    ).json()["d"]["results"]
    assert {(i["AccountingDocument"], i["FiscalYear"]) for i in by_reference} == {(doc, "2024")}
    assert {i["OriginalReferenceDocument"] for i in by_reference} == {f"{doc}10102024"}
    assert len(by_reference) == 4
    # The analytical item API aggregates by the selected dimensions.
    agg = sap.get(
        h.JE + "/A_JournalEntryItemBasic",
        params={
            "$filter": "GLAccount eq '22000000' and CompanyCode eq '1010'",
            "$select": "GLAccount,AmountInTransactionCurrency",
        },
    ).json()["d"]["results"]
    assert len(agg) == 1 and agg[0]["TransactionCurrency"] == "EUR"
    assert Decimal(agg[0]["AmountInTransactionCurrency"]) <= Decimal("-28.50")
    assert admin.get("/__sandbox/effects").json()["journal_entry.post"]["1010:INV-OK-1"] == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"lines": [("41000000", "-100.00", "")], "debtor": None}, "Balance in transaction currency"),
        ({"company_code": "9999"}, "Company code 9999 is not defined"),
        (
            {"lines": [("49999999", "-100.00", "")]},
            "G/L account 49999999 is not defined in chart of accounts YCOA",
        ),
        (
            {"lines": [("12100000", "-100.00", "")]},
            "Reconciliation account 12100000 cannot be directly posted to",
        ),
        ({"debtor": "9999999"}, "Customer 9999999 is not defined in company code 1010"),
        (
            {"lines": [("41000000", "-100.00", "A1")], "tax": ("A1", "-20.00", "-100.00")},
            "Tax entered incorrectly",
        ),
        ({"currency": "JPY", "lines": [("41000000", "-100.50", "")]}, "more than 0 decimal places"),
    ],
)
def test_rejected_entries_have_error_log_and_no_document(sap, admin, h, kwargs, expected):
    before = admin.get("/__sandbox/sap/ledger").json()["documents"]
    doc, severity, notes = _entry_result(h.post_soap(sap, h.journal_entry("INV-BAD", **kwargs)))
    assert severity == "3"
    assert doc == "0000000000"
    assert notes[0].startswith("Error in document: BKPFF $")
    assert any(expected in n for n in notes), notes
    assert admin.get("/__sandbox/sap/ledger").json()["documents"] == before


def test_closed_period_then_opened(sap, admin, h):
    period = {"company_code": "1010", "fiscal_year": 2024, "period": 11}
    assert admin.put("/__sandbox/sap/periods", json={**period, "open": False}).status_code == 200
    _, severity, notes = _entry_result(h.post_soap(sap, h.journal_entry("INV-PER-1")))
    assert severity == "3"
    assert "Posting period 011 2024 is not open" in notes
    admin.put("/__sandbox/sap/periods", json={**period, "open": True})
    doc, severity, _ = _entry_result(h.post_soap(sap, h.journal_entry("INV-PER-1")))
    assert severity == "1" and doc != "0000000000"


def test_soap12_and_foreign_currency(sap, h):
    body = h.journal_entry(
        "INV-S12",
        company_code="1710",
        currency="EUR",
        debtor=None,
        lines=[("41000000", "-10.00", ""), ("11001020", "10.00", "")],
        soap12=True,
    )
    r = h.post_soap(sap, body, soap12=True)
    assert r.headers["content-type"].startswith("application/soap+xml")
    doc, severity, _ = _entry_result(r)
    assert severity == "1"
    items = sap.get(
        h.GL + "/GLAccountLineItem",
        params={"$filter": f"AccountingDocument eq '{doc}' and CompanyCode eq '1710'"},
    ).json()["d"]["results"]
    assert {i["CompanyCodeCurrency"] for i in items} == {"USD"}
    assert sum(Decimal(i["AmountInCompanyCodeCurrency"]) for i in items) == 0


def test_commit_then_drop_is_counted_once(sap, admin, h):
    admin.put("/__sandbox/faults", json={"rules": {"journal_entry.post": {"commit_then_drop_rate": 1.0}}})
    with pytest.raises(httpx.TransportError):
        h.post_soap(sap, h.journal_entry("INV-DROP-1"))
    admin.put("/__sandbox/faults", json={"rules": {}})
    effects = admin.get("/__sandbox/effects").json()["journal_entry.post"]
    assert effects["1010:INV-DROP-1"] == 1
    # The caller finds the posting by its reference instead of posting again.
    found = sap.get(
        h.CUBE + "/A_OperationalAcctgDocItemCube", params={"$filter": "DocumentReferenceID eq 'INV-DROP-1'"}
    ).json()
    assert {i["AccountingDocument"] for i in found["d"]["results"]}


def test_read_apis_hold_the_metadata_lengths(sap, h):
    """A 16-character reference fits DocumentReferenceID (16) but not ReferenceDocument (10): the filter is
    refused as on a tenant, and an unknown property in $filter or $select too."""
    reference = "LEA-1C12-1000-01"
    doc, severity, _ = _entry_result(h.post_soap(sap, h.journal_entry(reference)))
    assert severity == "1"
    too_long = sap.get(h.GL + "/GLAccountLineItem", params={"$filter": f"ReferenceDocument eq '{reference}'"})
    assert too_long.status_code == 400
    assert "exceeds length 10" in too_long.json()["error"]["message"]["value"]
    reversed_operands = sap.get(
        h.GL + "/GLAccountLineItem", params={"$filter": f"'{reference}' eq ReferenceDocument"}
    )
    assert reversed_operands.status_code == 400
    over_cube = sap.get(
        h.CUBE + "/A_OperationalAcctgDocItemCube",
        params={"$filter": f"DocumentReferenceID eq '{reference}X'"},
    )
    assert over_cube.status_code == 400
    found = sap.get(
        h.CUBE + "/A_OperationalAcctgDocItemCube",
        params={"$filter": f"DocumentReferenceID eq '{reference}'", "$select": "AccountingDocument"},
    )
    assert found.status_code == 200, found.text
    assert {i["AccountingDocument"] for i in found.json()["d"]["results"]} == {doc}
    for params in (
        {"$filter": f"DocumentReferenceID eq '{reference}'"},
        {"$select": "AccountingDocument,DocumentReferenceID"},
    ):
        unknown = sap.get(h.GL + "/GLAccountLineItem", params=params)
        assert unknown.status_code == 400, params
        assert "not found in type GLAccountLineItemType" in unknown.json()["error"]["message"]["value"]


def test_soap_faults_for_malformed_and_invalid(sap, h):
    r = h.post_soap(sap, b"<not-xml")
    assert r.status_code == 500 and b"faultstring" in r.content
    invalid = h.journal_entry("INV-X").replace(b"<CompanyCode>1010</CompanyCode>", b"")
    r = h.post_soap(sap, invalid)
    assert r.status_code == 500
    assert b"Schema validation failed" in r.content


def test_trial_balance_balances_per_currency(sap, admin, h):
    h.post_soap(
        sap,
        h.journal_entry(
            "INV-TB-1",
            company_code="1510",
            currency="JPY",
            debtor="1000003",
            lines=[("41300000", "-51000", "")],
        ),
    )
    report = admin.get("/__sandbox/sap/ledger").json()
    assert report["documents"] >= 1
    for cc in report["company_codes"].values():
        for kind in ("transaction_currency", "company_code_currency"):
            for totals in cc[kind].values():
                assert Decimal(totals["balance"]) == 0
                assert sum(Decimal(v) for v in totals["accounts"].values()) == 0
    assert (
        Decimal(report["company_codes"]["1510"]["transaction_currency"]["JPY"]["accounts"]["41300000"])
        <= -51000
    )
