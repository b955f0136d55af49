"""The ceiling for ``bench/lead_to_cash.py``: a minimal hand-written lead-to-cash script, without state.

    .venv/bin/python bench/lead_to_cash_baseline.py [--deals 1000] [--concurrency 16] [--client httpx|aiohttp]

It makes the hub's effect calls for every won deal and nothing else (no ledger, no lookups, no retries,
no webhooks): read the won opportunities from Salesforce (one SOQL query, paged with nextRecordsUrl), upsert
the Lago customer, create one subscription per recurring line and the one-off invoice for the one-time
lines; for that invoice find or create the SAP business partner (OData, CSRF token, once per account),
post the journal entry (a raw SOAP 1.1 POST of JournalEntryBulkCreateRequest) and write invoice number,
amount, payment status and SAP document back onto the opportunity (composite collections of up to 200,
gathered for 5 ms, as the hub does). Billing runs ``concurrency`` deals at a time, ledger and write-back
another ``concurrency``: the hub's routes 1 and 2 run side by side with 16 each.

HTTP: httpx on the aiohttp transport (what the hub uses), or plain aiohttp; one keep-alive pool per system.
It imports nothing of lead2cash except, when run alone, the bench support that starts the sandboxes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import ssl
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote
from xml.sax.saxutils import escape

import yaml

MAPPINGS = Path(__file__).resolve().parents[1] / "config" / "mappings.yaml"
MINOR_UNITS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}
COUNTRY_CODES = {
    "United States": "US",
    "Germany": "DE",
    "United Kingdom": "GB",
    "Japan": "JP",
    "Kuwait": "KW",
}
SOQL = (
    "SELECT Id, Name, CloseDate, AccountId, CurrencyIsoCode, Account.Id, Account.Name, Account.BillingStreet, "
    "Account.BillingCity, Account.BillingState, Account.BillingPostalCode, Account.BillingCountry, "
    "(SELECT Id, Quantity, UnitPrice, TotalPrice, ServiceDate, PricebookEntry.Product2.ProductCode, "
    "PricebookEntry.Product2.Name, PricebookEntry.Product2.Family, PricebookEntry.Product2.Billing_Type__c "
    "FROM OpportunityLineItems) FROM Opportunity WHERE IsWon = true"
)
SFIN = "http://sap.com/xi/SAPSCORE/SFIN"
WRITE_WINDOW_S = 0.005
COLLECTION_MAX = 200


def loads(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal)


def cents(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(MINOR_UNITS[currency]).to_integral_value())


def major(amount_cents: int, currency: str) -> Decimal:
    return Decimal(amount_cents).scaleb(-MINOR_UNITS[currency])


# ---------------------------------------------------------------------------------------------- HTTP
class Http(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]: ...

    async def aclose(self) -> None: ...


class HttpxHttp:
    """httpx's API on the aiohttp transport, as the hub's connectors use it."""

    def __init__(self, ctx: ssl.SSLContext, limit: int) -> None:
        import httpx
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(verify=ctx, trust_env=False, limits=httpx.Limits(max_connections=limit))
        self.client = httpx.AsyncClient(transport=transport, timeout=60, trust_env=False)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        r = await self.client.request(method, url, headers=headers, params=params, content=content)
        return r.status_code, r.headers, r.content

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpHttp:
    """Plain aiohttp: the real ceiling here (DESIGN.md, HTTP transport)."""

    def __init__(self, ctx: ssl.SSLContext, limit: int) -> None:
        import aiohttp

        # unsafe=True: keep the SAP session cookie although the host is an IP address.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self.session.request(method, url, headers=headers, params=params, data=content) as r:
            return r.status, r.headers, await r.read()

    async def aclose(self) -> None:
        await self.session.close()


CLIENTS: dict[str, type[HttpxHttp] | type[AiohttpHttp]] = {"httpx": HttpxHttp, "aiohttp": AiohttpHttp}


class CallError(RuntimeError):
    pass


class System:
    """One system's pool plus a count of calls by operation."""

    def __init__(self, http: Http, calls: Counter[str], name: str) -> None:
        self.http = http
        self.calls = calls
        self.name = name

    async def call(
        self,
        op: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> tuple[Mapping[str, str], bytes]:
        self.calls[f"{self.name} {op}"] += 1
        h = dict(headers or {})
        if body is not None:
            content = dumps(body)
            h.setdefault("Content-Type", "application/json")
        status, rh, data = await self.http.request(method, url, headers=h, params=params, content=content)
        if status not in ok:
            raise CallError(f"{self.name} {op}: HTTP {status}: {data[:300]!r}")
        return rh, data


_DEC = re.compile(r'"__dec__(-?[0-9.]+)"')


def dumps(body: Any) -> bytes:
    """JSON with Decimal amounts written as JSON numbers, exactly (never through float)."""

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"__dec__{value}"
        raise TypeError(type(value).__name__)

    return _DEC.sub(r"\1", json.dumps(body, default=default, ensure_ascii=False)).encode()


# ---------------------------------------------------------------------------------------------- the script
@dataclass
class Result:
    deals: int = 0
    invoices: int = 0
    seconds: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # set by the caller that measured it


class Baseline:
    def __init__(self, systems: Mapping[str, Any], ca_bundle: str, concurrency: int, client: str) -> None:
        self.cfg = systems
        ctx = ssl.create_default_context(cafile=ca_bundle)
        make = CLIENTS[client]
        self.result = Result()
        calls = self.result.calls
        self.sf = System(make(ctx, 32), calls, "salesforce")
        self.lago = System(make(ctx, 32), calls, "lago")
        self.sap = System(make(ctx, 32), calls, "sap")
        self.bill_sem = asyncio.Semaphore(concurrency)
        self.ledger_sem = asyncio.Semaphore(concurrency)
        tables = yaml.safe_load(MAPPINGS.read_text())["mappings"]
        self.revenue_accounts: dict[str, str] = tables["sap_revenue_accounts"]
        self.tax_codes: dict[str, str] = tables["sap_tax_codes"]
        sap = systems["sap"]
        self.sap_auth = {
            "Authorization": "Basic "
            + __import__("base64")
            .b64encode(f"{sap['auth']['username']}:{sap['auth']['password']}".encode())
            .decode()
        }
        self.bp_service = sap["odata"]["business_partner"]
        self.sap_client = str(sap.get("client", "100"))
        self.csrf: str | None = None
        self.csrf_lock = asyncio.Lock()
        self.partners: dict[str, str] = {}
        self.partner_locks: dict[str, asyncio.Lock] = {}
        self.pending_writes: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.sf_headers: dict[str, str] = {}
        self.sf_base = ""
        self.started = 0.0
        self.last: dict[str, float] = {}

    def _mark(self, stage: str) -> None:
        self.last[stage] = time.perf_counter() - self.started

    # -- salesforce
    async def sf_login(self) -> None:
        sf = self.cfg["salesforce"]
        auth = sf["auth"]
        form = f"grant_type=client_credentials&client_id={quote(auth['client_id'])}&client_secret={quote(auth['client_secret'])}"
        _, data = await self.sf.call(
            "oauth.token",
            "POST",
            sf["token_url"],
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            content=form.encode(),
        )
        token = loads(data)
        self.sf_base = f"{token.get('instance_url') or sf['instance_url']}"
        self.sf_headers = {"Authorization": f"Bearer {token['access_token']}"}

    async def won_pages(self) -> Any:
        version = self.cfg["salesforce"].get("api_version", "62.0")
        url, params = f"{self.sf_base}/services/data/v{version}/query", {"q": SOQL}
        while True:
            _, data = await self.sf.call("query", "GET", url, headers=self.sf_headers, params=params)
            page = loads(data)
            yield page["records"]
            if page.get("done", True):
                return
            url, params = f"{self.sf_base}{page['nextRecordsUrl']}", {}

    async def write_back(self, record: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending_writes.append((record, future))
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        await asyncio.sleep(WRITE_WINDOW_S)
        # Taken with no await in between: a write arriving from now on opens the next window.
        batch, self.pending_writes, self.flusher = self.pending_writes, [], None
        version = self.cfg["salesforce"].get("api_version", "62.0")
        sends = []
        for start in range(0, len(batch), COLLECTION_MAX):
            chunk = batch[start : start + COLLECTION_MAX]
            body = {
                "allOrNone": False,
                "records": [{"attributes": {"type": "Opportunity"}, **r} for r, _ in chunk],
            }
            sends.append((chunk, body))

        async def send(chunk: list[tuple[dict[str, Any], asyncio.Future[None]]], body: Any) -> None:
            try:
                _, data = await self.sf.call(
                    "composite.sobjects.update",
                    "PATCH",
                    f"{self.sf_base}/services/data/v{version}/composite/sobjects",
                    headers=self.sf_headers,
                    body=body,
                )
                results = loads(data)
                for (_r, fut), res in zip(chunk, results, strict=True):
                    if res.get("success"):
                        fut.set_result(None)
                    else:
                        fut.set_exception(CallError(f"writeback: {res.get('errors')}"))
            except Exception as exc:
                for _r, fut in chunk:
                    if not fut.done():
                        fut.set_exception(exc)

        await asyncio.gather(*(send(c, b) for c, b in sends))

    # -- lago
    async def bill(self, opp: Mapping[str, Any]) -> dict[str, Any] | None:
        base = self.cfg["lago"]["base_url"]
        headers = {"Authorization": f"Bearer {self.cfg['lago']['api_key']}"}
        currency = opp["CurrencyIsoCode"]
        account = opp["Account"]
        country = account.get("BillingCountry")
        customer = {
            "external_id": opp["AccountId"],
            "name": account["Name"],
            "currency": currency,
            "customer_type": "company",
            "address_line1": account.get("BillingStreet"),
            "city": account.get("BillingCity"),
            "state": account.get("BillingState"),
            "zipcode": account.get("BillingPostalCode"),
            "country": COUNTRY_CODES.get(country, country),
        }
        await self.lago.call(
            "customers.upsert", "POST", f"{base}/customers", headers=headers, body={"customer": customer}
        )
        lines = (opp.get("OpportunityLineItems") or {}).get("records") or []
        fees = []
        for line in lines:
            product = line["PricebookEntry"]["Product2"]
            net = cents(Decimal(line["TotalPrice"]), currency)
            if product.get("Billing_Type__c") == "Recurring":
                sub = {
                    "external_customer_id": opp["AccountId"],
                    "plan_code": f"{product['ProductCode']}__{currency}",
                    "external_id": f"{opp['Id']}:{line['Id']}",
                    "name": product["Name"],
                    "billing_time": "calendar",
                    "subscription_at": f"{line.get('ServiceDate') or opp['CloseDate']}T00:00:00Z",
                    "plan_overrides": {"amount_cents": net, "amount_currency": currency},
                }
                await self.lago.call(
                    "subscriptions.create",
                    "POST",
                    f"{base}/subscriptions",
                    headers=headers,
                    body={"subscription": sub},
                )
            else:
                fees.append(
                    {
                        "add_on_code": product["ProductCode"],
                        "units": "1",
                        "unit_amount_cents": net,
                        "description": f"{product['Name']} (order {opp['Id']})",
                    }
                )
        if not fees:
            return None
        body = {"invoice": {"external_customer_id": opp["AccountId"], "currency": currency, "fees": fees}}
        _, data = await self.lago.call(
            "invoices.create", "POST", f"{base}/invoices", headers=headers, body=body
        )
        invoice: dict[str, Any] = loads(data)["invoice"]
        return invoice

    # -- sap
    async def csrf_token(self) -> str:
        async with self.csrf_lock:
            if self.csrf is not None:
                return self.csrf
            headers, _ = await self.sap.call(
                "csrf.fetch",
                "GET",
                f"{self.bp_service}/",
                headers={**self.sap_auth, "x-csrf-token": "Fetch"},
                params={"sap-client": self.sap_client},
            )
            self.csrf = headers["x-csrf-token"]
        return self.csrf

    async def partner(self, opp: Mapping[str, Any], company_code: str) -> str:
        key = str(opp["AccountId"]).upper()
        lock = self.partner_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.partners:
                return self.partners[key]
            url = f"{self.bp_service}/A_BusinessPartner"
            params = {
                "$format": "json",
                "$filter": f"SearchTerm1 eq '{key}'",
                "$select": "BusinessPartner",
                "$top": "5",
                "sap-client": self.sap_client,
            }
            _, data = await self.sap.call(
                "business_partner.find",
                "GET",
                url,
                headers={**self.sap_auth, "Accept": "application/json"},
                params=params,
            )
            rows = loads(data)["d"]["results"]
            if rows:
                number = str(rows[0]["BusinessPartner"])
            else:
                account = opp["Account"]
                country = account.get("BillingCountry")
                payload = {
                    "BusinessPartnerCategory": "2",
                    "SearchTerm1": key,
                    "to_BusinessPartnerRole": [
                        {"BusinessPartnerRole": "FLCU00"},
                        {"BusinessPartnerRole": "FLCU01"},
                    ],
                    "OrganizationBPName1": str(account["Name"])[:40],
                    "to_BusinessPartnerAddress": [
                        {
                            "Country": COUNTRY_CODES.get(country, country),
                            "CityName": account.get("BillingCity"),
                            "StreetName": account.get("BillingStreet"),
                            "PostalCode": account.get("BillingPostalCode"),
                        }
                    ],
                    "to_Customer": {
                        "to_CustomerCompany": [
                            {
                                "CompanyCode": company_code,
                                "ReconciliationAccount": self.cfg["sap"]["receivables_account"],
                            }
                        ]
                    },
                }
                headers = {
                    **self.sap_auth,
                    "Accept": "application/json",
                    "x-csrf-token": await self.csrf_token(),
                }
                _, data = await self.sap.call(
                    "business_partner.create",
                    "POST",
                    url,
                    headers=headers,
                    params={"sap-client": self.sap_client},
                    body=payload,
                )
                number = str(loads(data)["d"]["BusinessPartner"])
            self.partners[key] = number
            return number

    def journal_entry_xml(
        self, invoice: Mapping[str, Any], company_code: str, debtor: str, opp: Mapping[str, Any]
    ) -> bytes:
        ccy = invoice["currency"]
        full = str(invoice["number"])
        # SAP's field lengths, as the shipped ledger route fills them (long_references: tail): the reference
        # is the longest tail of whole "-" segments within 16 characters; the rest is cut to length.
        parts = full.split("-")
        ref = escape(
            next(("-".join(parts[i:]) for i in range(len(parts)) if len("-".join(parts[i:])) <= 16), full)
        )
        number = escape(full[:18])
        header = escape(f"Invoice {full}"[:25])
        item_text = escape(f"Invoice {full}"[:50])
        day = invoice["issuing_date"]
        families = {}
        for line in (opp.get("OpportunityLineItems") or {}).get("records") or []:
            product = line["PricebookEntry"]["Product2"]
            families[product["ProductCode"]] = product.get("Family")
        default = self.revenue_accounts.get("_default", "")

        def amount(tag: str, value: Decimal) -> str:
            return f'<{tag} currencyCode="{ccy}">{value}</{tag}>'

        items, taxes = [], []
        n = 1
        total = major(int(invoice["total_amount_cents"]), ccy)
        debtor_item = (
            f"<DebtorItem><ReferenceDocumentItem>{n}</ReferenceDocumentItem><Debtor>{debtor}</Debtor>"
            f"{amount('AmountInTransactionCurrency', total)}<DebitCreditCode>S</DebitCreditCode>"
            f"<DocumentItemText>{item_text}</DocumentItemText><AssignmentReference>{number}</AssignmentReference></DebtorItem>"
        )
        for fee in invoice["fees"]:
            n += 1
            code = fee["item"]["code"]
            account = self.revenue_accounts.get(code) or self.revenue_accounts.get(
                families.get(code) or "", default
            )
            applied = fee.get("applied_taxes") or []
            lago_tax = applied[0]["tax_code"] if applied else "_default"
            tax_code = self.tax_codes.get(lago_tax, self.tax_codes.get("_default", ""))
            items.append(
                f"<Item><ReferenceDocumentItem>{n}</ReferenceDocumentItem><GLAccount>{account}</GLAccount>"
                f"{amount('AmountInTransactionCurrency', -major(int(fee['amount_cents']), ccy))}"
                f"<DebitCreditCode>H</DebitCreditCode><DocumentItemText>{escape(code)}</DocumentItemText>"
                f"<AssignmentReference>{number}</AssignmentReference><Tax><TaxCode>{tax_code}</TaxCode></Tax></Item>"
            )
        for tax in invoice.get("applied_taxes") or []:
            if not int(tax["amount_cents"]):
                continue
            n += 1
            tax_code = self.tax_codes.get(tax["tax_code"], self.tax_codes.get("_default", ""))
            taxes.append(
                f"<ProductTaxItem><ReferenceDocumentItem>{n}</ReferenceDocumentItem><TaxCode>{tax_code}</TaxCode>"
                f"{amount('AmountInTransactionCurrency', -major(int(tax['amount_cents']), ccy))}"
                f"<DebitCreditCode>H</DebitCreditCode>"
                f"{amount('TaxBaseAmountInTransCrcy', -major(int(tax['fees_amount_cents']), ccy))}</ProductTaxItem>"
            )
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        message = uuid.uuid4().hex
        entry = (
            "<JournalEntry><OriginalReferenceDocumentType>BKPFF</OriginalReferenceDocumentType>"
            f"<OriginalReferenceDocument>{ref}</OriginalReferenceDocument>"
            "<BusinessTransactionType>RFBU</BusinessTransactionType><AccountingDocumentType>DR</AccountingDocumentType>"
            f"<DocumentReferenceID>{ref}</DocumentReferenceID><DocumentHeaderText>{header}</DocumentHeaderText>"
            f"<CreatedByUser>BASELINE</CreatedByUser><CompanyCode>{company_code}</CompanyCode>"
            f"<DocumentDate>{day}</DocumentDate><PostingDate>{day}</PostingDate>"
            f"{''.join(items)}{debtor_item}{''.join(taxes)}</JournalEntry>"
        )
        return (
            "<?xml version='1.0' encoding='utf-8'?>"
            '<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
            f'<ns0:JournalEntryBulkCreateRequest xmlns:ns0="{SFIN}">'
            f"<MessageHeader><ID>{message}</ID><CreationDateTime>{now}</CreationDateTime></MessageHeader>"
            f"<JournalEntryCreateRequest><MessageHeader><ID>{message}-1</ID><CreationDateTime>{now}</CreationDateTime>"
            f"</MessageHeader>{entry}</JournalEntryCreateRequest></ns0:JournalEntryBulkCreateRequest>"
            "</soap-env:Body></soap-env:Envelope>"
        ).encode()

    async def post(self, invoice: Mapping[str, Any], opp: Mapping[str, Any]) -> str:
        company_code = self.cfg["sap"]["company_code_by_currency"][invoice["currency"]]
        debtor = await self.partner(opp, company_code)
        _, data = await self.sap.call(
            "journal_entry.post",
            "POST",
            self.cfg["sap"]["soap"]["journal_entry_post"],
            headers={**self.sap_auth, "Content-Type": "text/xml; charset=utf-8"},
            content=self.journal_entry_xml(invoice, company_code, debtor, opp),
        )
        text = data.decode()
        found = re.search(
            r"<AccountingDocument>(\d+)</AccountingDocument><CompanyCode>(\w+)</CompanyCode><FiscalYear>(\d+)</FiscalYear>",
            text,
        )
        if found is None or set(found.group(1)) == {"0"}:
            raise CallError(f"journal entry for {invoice['number']} not posted: {text[-600:]}")
        return "/".join(found.groups())

    # -- one deal
    async def deal(self, opp: Mapping[str, Any]) -> None:
        try:
            async with self.bill_sem:
                invoice = await self.bill(opp)
            self._mark("billed")
            self.result.deals += 1
            if invoice is None:
                return
            async with self.ledger_sem:
                document = await self.post(invoice, opp)
                self._mark("posted")
                ccy = invoice["currency"]
                await self.write_back(
                    {
                        "Id": opp["Id"],
                        "Billing_Invoice_Number__c": invoice["number"],
                        "Billing_Invoiced_Amount__c": major(int(invoice["total_amount_cents"]), ccy),
                        "Billing_Payment_Status__c": "Pending",
                        "SAP_Accounting_Document__c": document,
                        "Billing_Last_Sync__c": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    }
                )
            self._mark("written_back")
            self.result.invoices += 1
        except Exception as exc:
            self.result.errors.append(f"{opp.get('Id')}: {exc}")

    async def run(self) -> Result:
        self.started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.sf_login()
            async for records in self.won_pages():
                self._mark("read")
                tasks.extend(asyncio.create_task(self.deal(r)) for r in records)
            await asyncio.gather(*tasks)
        finally:
            self.result.seconds = time.perf_counter() - self.started
            self.result.stage_s = dict(self.last)
            for system in (self.sf, self.lago, self.sap):
                await system.http.aclose()
        return self.result


async def run_baseline(
    systems: Mapping[str, Any], ca_bundle: str, *, concurrency: int = 16, client: str = "httpx"
) -> Result:
    return await Baseline(systems, ca_bundle, concurrency, client).run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=1000, help="won opportunities to process")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--client", choices=sorted(CLIENTS), default="httpx")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _l2c_support import SandboxesProcess, close_won_total, seed_size_for

    sandboxes = SandboxesProcess.start(
        Path(tempfile.mkdtemp()) / "sandbox", seed=args.seed, seed_size=seed_size_for(args.deals)
    )
    try:
        won = close_won_total(sandboxes, args.deals)
        result = asyncio.run(
            run_baseline(
                sandboxes.hub_config(),
                str(sandboxes.ca_bundle),
                concurrency=args.concurrency,
                client=args.client,
            )
        )
    finally:
        sandboxes.stop()
    print(f"baseline ({args.client}, concurrency {args.concurrency}): {won} won deals")
    print(
        f"  {result.deals} deals, {result.invoices} invoices posted and written back in {result.seconds:.2f} s"
    )
    print(f"  {result.deals / result.seconds:,.1f} deals/s; stages (s after start): {result.stage_s}")
    for name, count in sorted(result.calls.items()):
        print(f"  {count:>7}  {name}")
    for error in result.errors[:10]:
        print(f"  error: {error}")


if __name__ == "__main__":
    main()
