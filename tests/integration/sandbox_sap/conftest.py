"""A running SAP sandbox (over HTTPS on a local port) and an authenticated httpx client."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from lead2cash.sandbox.sap import SapSandbox

USER, PASSWORD = "LEAD2CASH", "Sandbox-Passw0rd"
BP = "/sap/opu/odata/sap/API_BUSINESS_PARTNER"
GL = "/sap/opu/odata/sap/API_GLACCOUNTLINEITEM"
JE = "/sap/opu/odata/sap/API_JOURNALENTRYITEMBASIC_SRV"
CUBE = "/sap/opu/odata/sap/API_OPLACCTGDOCITEMCUBE_SRV"
SOAP = "/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi"


@pytest.fixture(scope="session")
def sap_sandbox() -> SapSandbox:
    return SapSandbox(seed=7, seed_size=25, page_size=10)


@pytest.fixture(scope="session")
def sap_cluster(start_sandboxes, sap_sandbox):  # type: ignore[no-untyped-def]
    return start_sandboxes(sap_sandbox)


@pytest.fixture(scope="session")
def sap_url(sap_cluster) -> str:  # type: ignore[no-untyped-def]
    return sap_cluster.base_url("sap")


@pytest.fixture()
def sap(sap_cluster, sap_url) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=sap_url,
        verify=ssl.create_default_context(cafile=str(sap_cluster.ca_bundle)),
        auth=(USER, PASSWORD),
        timeout=10,
    ) as client:
        yield client


@pytest.fixture()
def admin(sap_cluster, sap_url) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=sap_url, verify=ssl.create_default_context(cafile=str(sap_cluster.ca_bundle)), timeout=10
    ) as client:
        yield client
        client.put("/__sandbox/faults", json={"rules": {}})


def csrf(client: httpx.Client, service: str = BP) -> str:
    r = client.get(service + "/", headers={"x-csrf-token": "Fetch"})
    assert r.status_code == 200
    return r.headers["x-csrf-token"]


def journal_entry(
    reference: str,
    company_code: str = "1010",
    currency: str = "EUR",
    lines: list[tuple[str, str, str]] | None = None,
    debtor: str | None = "1000001",
    posting_date: str = "2024-11-15",
    tax: tuple[str, str, str] | None = None,
    soap12: bool = False,
) -> bytes:
    """A raw SOAP request: debtor debit, GL credits ``(account, amount, taxcode)``, optional tax item."""
    lines = lines if lines is not None else [("41000000", "-100.00", "")]
    items = "".join(
        f"<Item><GLAccount>{acct}</GLAccount>"
        f'<AmountInTransactionCurrency currencyCode="{currency}">{amt}</AmountInTransactionCurrency>'
        + (f"<Tax><TaxCode>{tc}</TaxCode></Tax>" if tc else "")
        + "</Item>"
        for acct, amt, tc in lines
    )
    taxes = ""
    if tax:
        code, amount, base = tax
        taxes = (
            f"<ProductTaxItem><TaxCode>{code}</TaxCode>"
            f'<AmountInTransactionCurrency currencyCode="{currency}">{amount}</AmountInTransactionCurrency>'
            f'<TaxBaseAmountInTransCrcy currencyCode="{currency}">{base}</TaxBaseAmountInTransCrcy>'
            "</ProductTaxItem>"
        )
    from decimal import Decimal

    total = -sum(Decimal(a) for _, a, _ in lines) - (Decimal(tax[1]) if tax else 0)
    debtor_xml = (
        f"<DebtorItem><ReferenceDocumentItem>1</ReferenceDocumentItem><Debtor>{debtor}</Debtor>"
        f'<AmountInTransactionCurrency currencyCode="{currency}">{total}</AmountInTransactionCurrency>'
        "<DebitCreditCode>S</DebitCreditCode></DebtorItem>"
        if debtor
        else ""
    )
    env = "http://www.w3.org/2003/05/soap-envelope" if soap12 else "http://schemas.xmlsoap.org/soap/envelope/"
    return (
        f'<soapenv:Envelope xmlns:soapenv="{env}" xmlns:sfin="http://sap.com/xi/SAPSCORE/SFIN">'
        "<soapenv:Header/><soapenv:Body><sfin:JournalEntryBulkCreateRequest>"
        "<MessageHeader><ID>BULK1</ID><CreationDateTime>2024-11-15T10:00:00Z</CreationDateTime></MessageHeader>"
        "<JournalEntryCreateRequest><MessageHeader><ID>MSG1</ID>"
        "<CreationDateTime>2024-11-15T10:00:00Z</CreationDateTime></MessageHeader><JournalEntry>"
        "<OriginalReferenceDocumentType>BKPFF</OriginalReferenceDocumentType>"
        f"<OriginalReferenceDocument>{reference}</OriginalReferenceDocument>"
        "<OriginalReferenceDocumentLogicalSystem>LEAD2CASH</OriginalReferenceDocumentLogicalSystem>"
        "<BusinessTransactionType>RFBU</BusinessTransactionType><AccountingDocumentType>DR</AccountingDocumentType>"
        f"<DocumentReferenceID>{reference}</DocumentReferenceID><DocumentHeaderText>Invoice</DocumentHeaderText>"
        f"<CreatedByUser>LEAD2CASH</CreatedByUser><CompanyCode>{company_code}</CompanyCode>"
        f"<DocumentDate>{posting_date}</DocumentDate><PostingDate>{posting_date}</PostingDate>"
        f"{items}{debtor_xml}{taxes}"
        "</JournalEntry></JournalEntryCreateRequest></sfin:JournalEntryBulkCreateRequest></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def post_soap(client: httpx.Client, body: bytes, soap12: bool = False) -> httpx.Response:
    ctype = "application/soap+xml; charset=utf-8" if soap12 else "text/xml; charset=utf-8"
    return client.post(SOAP, content=body, headers={"content-type": ctype})


@pytest.fixture(scope="session")
def h():  # type: ignore[no-untyped-def]
    """Helpers and paths (conftest modules are not importable from test modules)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        csrf=csrf,
        journal_entry=journal_entry,
        post_soap=post_soap,
        BP=BP,
        GL=GL,
        JE=JE,
        CUBE=CUBE,
        SOAP=SOAP,
        USER=USER,
        PASSWORD=PASSWORD,
    )
