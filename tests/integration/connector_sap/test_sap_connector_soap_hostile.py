"""The SOAP client against a hostile or broken endpoint (a small local HTTP server): XXE, entity expansion,
an endless body and garbage end in clean, classified errors, quickly and with bounded memory; SOAP faults,
throttling and rejected postings are classified."""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lead2cash.connectors.sap.odata import BasicCredentials
from lead2cash.connectors.sap.soap import JournalEntrySoapClient, PostingRejected
from lead2cash.errors import PermanentError, ThrottledError, TransientError

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SFIN = "http://sap.com/xi/SAPSCORE/SFIN"

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>
<n0:JournalEntryBulkCreateConfirmation xmlns:n0="http://sap.com/xi/SAPSCORE/SFIN"><MessageHeader>
<ID>&lol9;</ID><CreationDateTime>2024-01-01T00:00:00Z</CreationDateTime></MessageHeader><Log/>
</n0:JournalEntryBulkCreateConfirmation></soap-env:Body></soap-env:Envelope>"""

XXE = (
    LAUGHS.split(b"<!DOCTYPE")[0]
    + b"""<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>
<n0:JournalEntryBulkCreateConfirmation xmlns:n0="http://sap.com/xi/SAPSCORE/SFIN"><MessageHeader>
<ID>&xxe;</ID><CreationDateTime>2024-01-01T00:00:00Z</CreationDateTime></MessageHeader><Log/>
</n0:JournalEntryBulkCreateConfirmation></soap-env:Body></soap-env:Envelope>"""
)


def _fault(code: str, text: str) -> bytes:
    return (
        f'<soap-env:Envelope xmlns:soap-env="{SOAP}"><soap-env:Body><soap-env:Fault>'
        f"<faultcode>soap-env:{code}</faultcode><faultstring>{text}</faultstring>"
        "</soap-env:Fault></soap-env:Body></soap-env:Envelope>"
    ).encode()


def _confirmation(document: str, severity: str, notes: list[tuple[str, str]]) -> bytes:
    items = "".join(
        f"<Item><TypeID>{t}</TypeID><SeverityCode>{severity}</SeverityCode><Note>{n}</Note></Item>"
        for t, n in notes
    )
    header = "<MessageHeader><CreationDateTime>2024-01-01T00:00:00Z</CreationDateTime></MessageHeader>"
    return (
        f'<soap-env:Envelope xmlns:soap-env="{SOAP}"><soap-env:Body>'
        f'<n0:JournalEntryBulkCreateConfirmation xmlns:n0="{SFIN}">{header}'
        f"<JournalEntryCreateConfirmation>{header}<JournalEntryCreateConfirmation>"
        f"<AccountingDocument>{document}</AccountingDocument><CompanyCode>1010</CompanyCode><FiscalYear>2024</FiscalYear>"
        f"</JournalEntryCreateConfirmation><Log><MaximumLogItemSeverityCode>{severity}</MaximumLogItemSeverityCode>{items}</Log>"
        f"</JournalEntryCreateConfirmation><Log><MaximumLogItemSeverityCode>{severity}</MaximumLogItemSeverityCode></Log>"
        "</n0:JournalEntryBulkCreateConfirmation></soap-env:Body></soap-env:Envelope>"
    ).encode()


RESPONSES = {
    "/laughs": (200, {}, LAUGHS),
    "/xxe": (200, {}, XXE),
    "/garbage": (200, {}, b"this is not <xml"),
    "/client-fault": (500, {}, _fault("Client", "Schema validation failed: element GLAccount too long")),
    "/server-fault": (500, {}, _fault("Server", "Internal error")),
    "/throttle": (429, {"retry-after": "9"}, _fault("Server", "Too many requests")),
    "/unauthorized": (401, {}, b"<html><body>Logon failed</body></html>"),
    "/posted": (
        200,
        {},
        _confirmation(
            "1800000042", "1", [("614(RW)", "Document posted successfully: BKPFF 180000004210102024 X")]
        ),
    ),
    "/rejected": (
        200,
        {},
        _confirmation(
            "0000000000",
            "3",
            [("609(RW)", "Error in document: BKPFF $ X"), ("201(F5)", "Posting period 010 2024 is not open")],
        ),
    ),
}


class Hostile(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/endless":
            self.send_response(200)
            self.send_header("content-type", "text/xml")
            self.end_headers()
            chunk = b"<a>" * 65536
            try:
                for _ in range(2000):  # ~390 MB if anyone read it all
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        status, headers, body = RESPONSES[self.path]
        self.send_response(status)
        self.send_header("content-type", "text/xml; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _client(url: str) -> JournalEntrySoapClient:
    return JournalEntrySoapClient(
        url, BasicCredentials("U", "pw-secret"), timeout=10, max_response_bytes=1024 * 1024
    )


ENTRY = {
    "OriginalReferenceDocumentType": "BKPFF",
    "BusinessTransactionType": "RFBU",
    "AccountingDocumentType": "DR",
    "CreatedByUser": "LEAD2CASH",
    "CompanyCode": "1010",
    "DocumentDate": date(2024, 11, 15),
    "PostingDate": date(2024, 11, 15),
}


def _post(url: str):  # type: ignore[no-untyped-def]
    client = _client(url)
    try:
        request = client.bulk_request([ENTRY], created_at=datetime(2024, 11, 15, tzinfo=UTC))
        return asyncio.run(client.post(request))
    finally:
        client.close()


@pytest.mark.parametrize("path", ["/laughs", "/xxe", "/garbage", "/endless"])
def test_hostile_responses_end_in_a_clean_transient_error(hostile: str, path: str) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        _post(hostile + path)
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50_000  # KiB
    message = info.value.describe()
    assert "root:" not in message and "lol" not in message and "pw-secret" not in message
    expected = {"/laughs": "DTD", "/xxe": "DTD", "/garbage": "not valid XML", "/endless": "exceeds"}[path]
    assert expected in message


@pytest.mark.parametrize(
    ("path", "error", "fragment"),
    [
        ("/client-fault", PermanentError, "Schema validation failed"),
        ("/server-fault", TransientError, "Internal error"),
        ("/throttle", ThrottledError, "Too many requests"),
        ("/unauthorized", PermanentError, "logon failed"),
    ],
)
def test_faults_and_statuses_are_classified(hostile: str, path: str, error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        _post(hostile + path)
    assert type(info.value) is error
    assert fragment in info.value.message
    if path == "/throttle":
        assert info.value.retry_after == 9.0


def test_confirmations_are_parsed(hostile: str) -> None:
    (ok,) = _post(hostile + "/posted")
    assert ok.posted and (ok.accounting_document, ok.company_code, ok.fiscal_year) == (
        "1800000042",
        "1010",
        "2024",
    )
    (bad,) = _post(hostile + "/rejected")
    assert not bad.posted
    rejected = PostingRejected(bad, "INV-1")
    assert rejected.message == "SAP rejected the journal entry: Posting period 010 2024 is not open"
    assert rejected.details["sap_messages"] == "609(RW),201(F5)" and rejected.details["reference"] == "INV-1"
