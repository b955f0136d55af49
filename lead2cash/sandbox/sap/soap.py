"""SOAP endpoint of ``JournalEntryCreateRequestConfirmation_In`` (SOAP 1.1 and 1.2, as the WSDL binds both).

Requests are parsed with a hardened lxml parser (no DTD, no entities, no network) and a document with a
DOCTYPE is refused outright (SOAP forbids DTDs), so XXE and entity-expansion payloads cost nothing. The body is
validated against the XML schema in the team-written WSDL (``metadata/journalentrycreaterequestconfi.wsdl``);
malformed XML, schema violations and unknown operations are answered with a SOAP fault and HTTP 500, as the
SAP SOAP runtime does. Business errors (unbalanced entry, closed period, ...) are not faults: they come back in
the confirmation's ``Log`` with ``MaximumLogItemSeverityCode`` 3 and no document number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from lxml import etree

from lead2cash.sandbox.sap.ledger import EntryLine, EntryRequest, PostingResult

WSDL_PATH = Path(__file__).with_name("metadata") / "journalentrycreaterequestconfi.wsdl"
SFIN = "http://sap.com/xi/SAPSCORE/SFIN"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XSD = "http://www.w3.org/2001/XMLSchema"
MAX_BODY = 10 * 1024 * 1024

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


class SoapFault(Exception):
    def __init__(self, message: str, sender: bool = True):
        super().__init__(message)
        self.message = message
        self.sender = sender


def _load_schema() -> etree.XMLSchema:
    wsdl = etree.parse(str(WSDL_PATH), _PARSER)
    schema_el = wsdl.find(f".//{{{XSD}}}schema")
    return etree.XMLSchema(etree.fromstring(etree.tostring(schema_el), _PARSER))


SCHEMA = _load_schema()


@dataclass
class SoapRequest:
    version: str  # "1.1" | "1.2"
    payload: etree._Element


def parse_envelope(body: bytes) -> SoapRequest:
    if len(body) > MAX_BODY:
        raise SoapFault("Request message too large")
    # SOAP messages must not contain a document type declaration (SOAP 1.1 sec. 3, SOAP 1.2 part 1 sec. 5).
    if b"<!DOCTYPE" in body:
        raise SoapFault("XML document type declarations are not allowed in SOAP messages")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SoapFault(f"XML parser error: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise SoapFault("XML document type declarations are not allowed in SOAP messages")
    qname = etree.QName(root)
    if qname.localname != "Envelope" or qname.namespace not in (SOAP11, SOAP12):
        raise SoapFault("Message is not a SOAP envelope")
    version = "1.1" if qname.namespace == SOAP11 else "1.2"
    body_el = root.find(f"{{{qname.namespace}}}Body")
    if body_el is None or len(body_el) == 0:
        raise SoapFault("SOAP body is empty")
    payload = body_el[0]
    if payload.tag != f"{{{SFIN}}}JournalEntryBulkCreateRequest":
        raise SoapFault(f"Operation for element {payload.tag} is not supported by this endpoint")
    return SoapRequest(version, payload)


def validate(payload: etree._Element) -> None:
    doc = etree.fromstring(etree.tostring(payload), _PARSER)
    if not SCHEMA.validate(doc):
        error = SCHEMA.error_log.last_error
        raise SoapFault(f"Schema validation failed: {error.message if error else 'invalid message'}")


def _text(el: etree._Element | None, name: str) -> str | None:
    if el is None:
        return None
    child = el.find(name)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _amount(el: etree._Element, name: str) -> tuple[Decimal, str] | None:
    child = el.find(name)
    if child is None:
        return None
    return Decimal((child.text or "0").strip()), (child.get("currencyCode") or "").strip()


def _date(value: str | None) -> date:
    return date.fromisoformat(value or "")


def to_entries(payload: etree._Element) -> list[tuple[str | None, EntryRequest]]:
    """Map a validated bulk request to ledger requests, with each entry's message header ID."""
    entries = []
    for req in payload.findall("JournalEntryCreateRequest"):
        header = req.find("MessageHeader")
        je = req.find("JournalEntry")
        lines: list[EntryLine] = []
        for item in je.findall("Item"):
            amount, currency = _amount(item, "AmountInTransactionCurrency") or (Decimal(0), "")
            tax = item.find("Tax")
            assignment = item.find("AccountAssignment")
            lines.append(
                EntryLine(
                    kind="GL",
                    account=_text(item, "GLAccount") or "",
                    amount=amount,
                    currency=currency,
                    debit_credit=_text(item, "DebitCreditCode"),
                    reference_item=_text(item, "ReferenceDocumentItem"),
                    text=_text(item, "DocumentItemText"),
                    assignment=_text(item, "AssignmentReference"),
                    tax_code=_text(tax, "TaxCode"),
                    profit_center=_text(assignment, "ProfitCenter"),
                    cost_center=_text(assignment, "CostCenter"),
                )
            )
        for item in je.findall("DebtorItem"):
            amount, currency = _amount(item, "AmountInTransactionCurrency") or (Decimal(0), "")
            lines.append(
                EntryLine(
                    kind="DEBTOR",
                    account=_text(item, "Debtor") or "",
                    amount=amount,
                    currency=currency,
                    debit_credit=_text(item, "DebitCreditCode"),
                    reference_item=_text(item, "ReferenceDocumentItem"),
                    text=_text(item, "DocumentItemText"),
                    assignment=_text(item, "AssignmentReference"),
                )
            )
        for item in je.findall("ProductTaxItem"):
            amount, currency = _amount(item, "AmountInTransactionCurrency") or (Decimal(0), "")
            base = _amount(item, "TaxBaseAmountInTransCrcy")
            lines.append(
                EntryLine(
                    kind="TAX",
                    account="",
                    amount=amount,
                    currency=currency,
                    debit_credit=_text(item, "DebitCreditCode"),
                    reference_item=_text(item, "ReferenceDocumentItem"),
                    tax_code=_text(item, "TaxCode"),
                    tax_base=base[0] if base else None,
                )
            )
        entries.append(
            (
                _text(header, "ID"),
                EntryRequest(
                    company_code=_text(je, "CompanyCode") or "",
                    document_date=_date(_text(je, "DocumentDate")),
                    posting_date=_date(_text(je, "PostingDate")),
                    document_type=_text(je, "AccountingDocumentType") or "",
                    business_transaction_type=_text(je, "BusinessTransactionType") or "",
                    original_reference_type=_text(je, "OriginalReferenceDocumentType") or "",
                    created_by=_text(je, "CreatedByUser") or "",
                    lines=lines,
                    original_reference=_text(je, "OriginalReferenceDocument"),
                    logical_system=_text(je, "OriginalReferenceDocumentLogicalSystem"),
                    document_reference_id=_text(je, "DocumentReferenceID"),
                    header_text=_text(je, "DocumentHeaderText"),
                    message_id=_text(header, "ID"),
                ),
            )
        )
    return entries


def _header(parent: etree._Element, reference_id: str | None) -> None:
    header = etree.SubElement(parent, "MessageHeader")
    etree.SubElement(header, "UUID").text = str(uuid.uuid4())
    if reference_id:
        etree.SubElement(header, "ReferenceID").text = reference_id
    now = datetime.now(UTC)
    etree.SubElement(header, "CreationDateTime").text = (
        now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"
    )


def _log(parent: etree._Element, result_items: list, max_severity: str) -> None:
    log = etree.SubElement(parent, "Log")
    etree.SubElement(log, "MaximumLogItemSeverityCode").text = max_severity
    for item in result_items:
        el = etree.SubElement(log, "Item")
        etree.SubElement(el, "TypeID").text = item.type_id
        etree.SubElement(el, "SeverityCode").text = item.severity
        etree.SubElement(el, "Note").text = item.note[:200]


def envelope_ns(version: str) -> str:
    return SOAP11 if version == "1.1" else SOAP12


def content_type(version: str) -> str:
    return "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml; charset=utf-8"


def confirmation(version: str, bulk_id: str | None, results: list[tuple[str | None, PostingResult]]) -> bytes:
    ns = envelope_ns(version)
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap-env": ns})
    etree.SubElement(env, f"{{{ns}}}Header")
    body = etree.SubElement(env, f"{{{ns}}}Body")
    bulk = etree.SubElement(body, f"{{{SFIN}}}JournalEntryBulkCreateConfirmation", nsmap={"n0": SFIN})
    _header(bulk, bulk_id)
    for message_id, result in results:
        conf = etree.SubElement(bulk, "JournalEntryCreateConfirmation")
        _header(conf, message_id)
        je = etree.SubElement(conf, "JournalEntryCreateConfirmation")
        # SAP answers a failed entry with the placeholder document number 0000000000.
        etree.SubElement(je, "AccountingDocument").text = result.document or "0000000000"
        etree.SubElement(je, "CompanyCode").text = result.company_code or "0000"
        etree.SubElement(je, "FiscalYear").text = result.fiscal_year or "0000"
        _log(conf, result.log, result.max_severity)
    overall = max((r.max_severity for _, r in results), default="1")
    _log(bulk, [], overall)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def fault(version: str, message: str, sender: bool = True) -> bytes:
    ns = envelope_ns(version)
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap-env": ns})
    etree.SubElement(env, f"{{{ns}}}Header")
    body = etree.SubElement(env, f"{{{ns}}}Body")
    fault_el = etree.SubElement(body, f"{{{ns}}}Fault")
    if version == "1.1":
        etree.SubElement(fault_el, "faultcode").text = "soap-env:Client" if sender else "soap-env:Server"
        fs = etree.SubElement(fault_el, "faultstring")
        fs.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        fs.text = message
        detail = etree.SubElement(fault_el, "detail")
        etree.SubElement(detail, "Text").text = message
    else:
        code = etree.SubElement(fault_el, f"{{{ns}}}Code")
        etree.SubElement(code, f"{{{ns}}}Value").text = "soap-env:Sender" if sender else "soap-env:Receiver"
        reason = etree.SubElement(fault_el, f"{{{ns}}}Reason")
        text = etree.SubElement(reason, f"{{{ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = message
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def served_wsdl(endpoint: str) -> bytes:
    """The team-written WSDL with its addresses pointing at this sandbox."""
    text = WSDL_PATH.read_bytes()
    return text.replace(
        b"https://localhost/sap/bc/srt/scs_ext/sap/journalentrycreaterequestconfi", endpoint.encode()
    )
