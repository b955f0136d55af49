"""The SOAP service driven by zeep built from SAP's published WSDL (endpoint overridden to the sandbox), and
hostile XML refused quickly."""

from __future__ import annotations

import resource
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from lxml import etree
from zeep import Client, Settings
from zeep.transports import Transport

SFIN = "{http://sap.com/xi/SAPSCORE/SFIN}"
SOAP_PATH = "/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi"


@pytest.fixture(scope="module")
def zeep_client(specs_dir, sap_conf_cluster):  # type: ignore[no-untyped-def]
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override the sandbox CA otherwise
    session.verify = str(sap_conf_cluster.ca_bundle)
    session.auth = ("LEAD2CASH", "Sandbox-Passw0rd")
    transport = Transport(session=session, timeout=10)
    yield Client(
        str(specs_dir / "sap" / "JOURNALENTRYCREATEREQUESTCONFI.wsdl"),
        transport=transport,
        settings=Settings(strict=True, xml_huge_tree=False),
    )
    session.close()  # an open keep-alive connection would hold up the server's shutdown


def _request(reference: str, amount: str = "119.00", currency: str = "EUR") -> dict:
    now = datetime.now(UTC).replace(microsecond=0)
    header = {"ID": {"_value_1": f"MSG-{reference}"}, "CreationDateTime": now}
    base = Decimal(amount) / Decimal("1.19")
    base = base.quantize(Decimal("0.01"))
    tax = Decimal(amount) - base
    return {
        "MessageHeader": header,
        "JournalEntryCreateRequest": [
            {
                "MessageHeader": header,
                "JournalEntry": {
                    "OriginalReferenceDocumentType": "BKPFF",
                    "OriginalReferenceDocument": reference,
                    "OriginalReferenceDocumentLogicalSystem": "LEAD2CASH",
                    "BusinessTransactionType": "RFBU",
                    "AccountingDocumentType": "DR",
                    "DocumentReferenceID": reference,
                    "DocumentHeaderText": "Invoice " + reference,
                    "CreatedByUser": "LEAD2CASH",
                    "CompanyCode": "1010",
                    "DocumentDate": now.date(),
                    "PostingDate": now.date(),
                    "Item": [
                        {
                            "GLAccount": {"_value_1": "41000000"},
                            "AmountInTransactionCurrency": {"_value_1": -base, "currencyCode": currency},
                            "DebitCreditCode": "H",
                            "Tax": {"TaxCode": {"_value_1": "A1"}},
                            "AccountAssignment": {"ProfitCenter": "YB600"},
                        }
                    ],
                    "DebtorItem": [
                        {
                            "ReferenceDocumentItem": "1",
                            "Debtor": "1000001",
                            "AmountInTransactionCurrency": {
                                "_value_1": Decimal(amount),
                                "currencyCode": currency,
                            },
                            "DebitCreditCode": "S",
                        }
                    ],
                    "ProductTaxItem": [
                        {
                            "TaxCode": {"_value_1": "A1"},
                            "AmountInTransactionCurrency": {"_value_1": -tax, "currencyCode": currency},
                            "DebitCreditCode": "H",
                            "TaxBaseAmountInTransCrcy": {"_value_1": -base, "currencyCode": currency},
                        }
                    ],
                },
            }
        ],
    }


@pytest.mark.parametrize("binding", ["binding", "binding_soap12"])
def test_zeep_from_real_wsdl_posts_and_parses(zeep_client, sap_conf_cluster, binding):
    service = zeep_client.create_service(f"{SFIN}{binding}", sap_conf_cluster.base_url("sap") + SOAP_PATH)
    result = service.JournalEntryCreateRequestConfirmation_In(**_request(f"ZEEP-{binding[-2:]}"))
    confirmation = result.JournalEntryCreateConfirmation[0]
    assert confirmation.Log.MaximumLogItemSeverityCode == "1"
    document = confirmation.JournalEntryCreateConfirmation
    assert document.CompanyCode == "1010"
    assert document.FiscalYear == str(datetime.now(UTC).year)
    assert len(document.AccountingDocument) == 10
    assert confirmation.Log.Item[0].Note.startswith("Document posted successfully: BKPFF")
    assert result.Log.MaximumLogItemSeverityCode == "1"


def test_zeep_sees_business_errors_in_the_log(zeep_client, sap_conf_cluster):
    service = zeep_client.create_service(f"{SFIN}binding", sap_conf_cluster.base_url("sap") + SOAP_PATH)
    request = _request("ZEEP-UNBAL")
    request["JournalEntryCreateRequest"][0]["JournalEntry"]["DebtorItem"][0]["AmountInTransactionCurrency"][
        "_value_1"
    ] = Decimal("1.00")
    result = service.JournalEntryCreateRequestConfirmation_In(**request)
    confirmation = result.JournalEntryCreateConfirmation[0]
    assert confirmation.Log.MaximumLogItemSeverityCode == "3"
    assert any("Balance in transaction currency" in i.Note for i in confirmation.Log.Item)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<n0:JournalEntryBulkCreateRequest xmlns:n0="http://sap.com/xi/SAPSCORE/SFIN"><MessageHeader><ID>&lol9;</ID>
</MessageHeader></n0:JournalEntryBulkCreateRequest></soapenv:Body></soapenv:Envelope>"""

XXE = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<n0:JournalEntryBulkCreateRequest xmlns:n0="http://sap.com/xi/SAPSCORE/SFIN"><MessageHeader><ID>&xxe;</ID>
</MessageHeader></n0:JournalEntryBulkCreateRequest></soapenv:Body></soapenv:Envelope>"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_hostile_xml_is_refused_quickly(sap_conf, payload):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    r = sap_conf.post(SOAP_PATH, content=payload, headers={"content-type": "text/xml"})
    assert time.monotonic() - started < 2
    assert r.status_code == 500
    assert b"faultstring" in r.content
    assert b"root:" not in r.content
    # The sandbox runs in this process: no expansion means no memory growth worth mentioning.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50_000


def _bulk(references: list[str]) -> dict:
    """One bulk message with an entry per reference (each with its own message header)."""
    requests_ = [_request(r)["JournalEntryCreateRequest"][0] for r in references]
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "MessageHeader": {"ID": {"_value_1": "BULK-" + references[0]}, "CreationDateTime": now},
        "JournalEntryCreateRequest": requests_,
    }


def test_bulk_message_is_answered_entry_by_entry(zeep_client, sap_conf_cluster, sap_conf, specs_dir):
    """Many JournalEntryCreateRequests in one call: one JournalEntryCreateConfirmation each, in order,
    each with its own message header (ReferenceID = the request's ID), document and log; a failed entry
    (unbalanced) gets document 0000000000 and severity 3, and its neighbours are posted. The raw response
    validates against the published WSDL's schema."""
    references = [f"ZBULK-{n}" for n in range(5)]
    request = _bulk(references)
    request["JournalEntryCreateRequest"][2]["JournalEntry"]["DebtorItem"][0]["AmountInTransactionCurrency"][
        "_value_1"
    ] = Decimal("1.00")
    service = zeep_client.create_service(f"{SFIN}binding", sap_conf_cluster.base_url("sap") + SOAP_PATH)
    envelope = zeep_client.create_message(service, "JournalEntryCreateRequestConfirmation_In", **request)
    raw = sap_conf.post(SOAP_PATH, content=etree.tostring(envelope), headers={"content-type": "text/xml"})
    assert raw.status_code == 200, raw.text
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    wsdl = specs_dir / "sap" / "JOURNALENTRYCREATEREQUESTCONFI.wsdl"
    schema = etree.XMLSchema(
        etree.fromstring(
            etree.tostring(etree.parse(str(wsdl), parser).find(".//{http://www.w3.org/2001/XMLSchema}schema"))
        )
    )
    body = etree.fromstring(raw.content, parser).find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    assert body.tag == f"{SFIN}JournalEntryBulkCreateConfirmation"
    assert schema.validate(etree.fromstring(etree.tostring(body))), schema.error_log.last_error
    confirmations = body.findall("JournalEntryCreateConfirmation")
    assert [c.findtext("MessageHeader/ReferenceID") for c in confirmations] == [
        f"MSG-{r}" for r in references
    ]
    documents = [c.findtext("JournalEntryCreateConfirmation/AccountingDocument") for c in confirmations]
    severities = [c.findtext("Log/MaximumLogItemSeverityCode") for c in confirmations]
    assert severities == ["1", "1", "3", "1", "1"]
    assert documents[2] == "0000000000"
    posted = [d for i, d in enumerate(documents) if i != 2]
    assert len(set(posted)) == 4 and all(len(d) == 10 and d != "0000000000" for d in posted)
    assert body.findtext("Log/MaximumLogItemSeverityCode") == "3"

    # zeep, from the published WSDL, reads the same structure: one confirmation per entry.
    again = _bulk([f"ZBULK2-{n}" for n in range(3)])
    result = service.JournalEntryCreateRequestConfirmation_In(**again)
    assert len(result.JournalEntryCreateConfirmation) == 3
    assert all(c.Log.MaximumLogItemSeverityCode == "1" for c in result.JournalEntryCreateConfirmation)
