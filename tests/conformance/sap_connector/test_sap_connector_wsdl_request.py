"""The request the connector builds from the shipped subset WSDL is byte-for-byte the request zeep builds
from SAP's published JOURNALENTRYCREATEREQUESTCONFI.wsdl, for SOAP 1.1 and 1.2; and it validates against the
published schema."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from lead2cash.adapters import sap
from lead2cash.connectors.sap import DEFAULT_WSDL
from lead2cash.connectors.sap.odata import BasicCredentials
from lead2cash.connectors.sap.soap import JournalEntrySoapClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "sap_adapter"))
import sap_factories

XS = "{http://www.w3.org/2001/XMLSchema}"
RULES = sap.PostingRules(
    receivables_account="12100000",
    revenue_accounts={"_default": "41000000", "Services": {"41100000": 2, "41200000": 1}},
    tax_codes={"DE_VAT_19": "A1", "ZERO_RATED": "A0"},
    company_code="1010",
    profit_centers={"Software": "YB600"},
    cost_centers={"Training": "10101101"},
)


def _request(client: JournalEntrySoapClient) -> dict:
    invoices = [
        sap_factories.invoice(n, "EUR", zero_rated_line=n % 2 == 0, issue_date=date(2024, 11, n + 1))
        for n in range(1, 4)
    ]
    header = sap.SoapHeader(created_by="LEAD2CASH", logical_system="L2CCLNT100")
    bodies = [
        sap.journal_entry_to_soap(
            sap.invoice_to_journal_entry(inv, RULES), {inv.customer.id: "1000001"}, header
        )
        for inv in invoices
    ]
    return client.bulk_request(
        bodies, message_id="L2C-CONFORMANCE-1", created_at=datetime(2024, 11, 15, 10, 30, tzinfo=UTC)
    )


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_shipped_wsdl_serializes_the_same_request_as_the_published_one(specs_dir: Path, version: str) -> None:
    real_wsdl = specs_dir / "sap" / "JOURNALENTRYCREATEREQUESTCONFI.wsdl"
    creds = BasicCredentials("U", "p")
    ours = JournalEntrySoapClient("https://s4.invalid/post", creds, soap_version=version)
    real = JournalEntrySoapClient("https://s4.invalid/post", creds, wsdl=real_wsdl, soap_version=version)
    try:
        mine = ours.serialize(_request(ours))
        theirs = real.serialize(_request(real))
    finally:
        ours.close()
        real.close()
    assert ours.wsdl == str(DEFAULT_WSDL)
    assert mine == theirs
    root = etree.fromstring(mine)
    # Every kind of item is in the message, so the comparison covered them.
    for tag in (
        "DebtorItem",
        "Item",
        "ProductTaxItem",
        "AccountAssignment",
        "Tax",
        "TaxBaseAmountInTransCrcy",
    ):
        assert root.findall(f".//{tag}"), tag
    envelope_ns = etree.QName(root).namespace
    assert envelope_ns == (
        "http://schemas.xmlsoap.org/soap/envelope/"
        if version == "1.1"
        else "http://www.w3.org/2003/05/soap-envelope"
    )


def test_request_validates_against_the_published_schema(specs_dir: Path) -> None:
    real_wsdl = specs_dir / "sap" / "JOURNALENTRYCREATEREQUESTCONFI.wsdl"
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    schema_el = etree.parse(str(real_wsdl), parser).find(f".//{XS}schema")
    schema = etree.XMLSchema(etree.fromstring(etree.tostring(schema_el), parser))
    client = JournalEntrySoapClient("https://s4.invalid/post", BasicCredentials("U", "p"))
    try:
        envelope = etree.fromstring(client.serialize(_request(client)))
    finally:
        client.close()
    payload = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    assert schema.validate(etree.fromstring(etree.tostring(payload))), schema.error_log.last_error
