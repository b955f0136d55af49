"""SAP S/4HANA binding: the OData, SOAP and RFC connectors paired with the SAP adapter.

Target actions
    ``journal_entry.post``      Invoice, CreditNote (or a ready JournalEntry): ensure the business partner,
                                post the balanced entry, return ``<document>/<company code>/<fiscal year>``
                                and store it as the entity's ``sap`` cross-reference.
    ``journal_entry.reverse``   Invoice (voided): the reversal of its posting (``<number>-RV``), or nothing
                                when the invoice was never posted; never a second posting of the invoice.
                                With ``after_route``/``after_key`` it waits while that route still holds
                                the invoice's posting undelivered (the void overtook it).
    ``payment.clear``           Payment (one per state of an invoice's payment): the receivable cleared
                                against the bank/clearing account by what this state changes (a success
                                clears the amount, a failure after it reverses only what was cleared),
                                under ``<invoice number>-P<version>``; nothing when nothing changes.
    ``payment_record.clear``    Payment (one per state of one of Lago's payment records: a manual
                                payment, part of an invoice or all of it): the receivable cleared by
                                its amount, a failure after it reversing what it cleared, under
                                ``P<payment id digits>-<version>``.
    ``credit_note.refund``      CreditNote: the cash leg of its refund (receivable debited, the provider's
                                bank/clearing account credited) under ``<credit note number>-RF``;
                                nothing (``no-refund``) when it refunds nothing. A refund the provider
                                declined reverses that cash leg (``<number>-RD``) if it was posted, and
                                posts nothing (``refund-not-posted``) if not.
    ``wallet_credits.void``     WalletTransaction: paid credits voided, the advance debited and the voided
                                credits account credited under ``VC<transaction id tail>``; nothing
                                (``nothing-to-post``) for any other wallet movement.
    ``business_partner.ensure`` Customer: find the partner by its search key or create it.

Exactly once: a posting's reference is the document number (the header's DocumentReferenceID, XBLNR, up to
16 characters); ``lookup`` finds an entry posted under it (cross-reference first, then the journal entry
items of API_OPLACCTGDOCITEMCUBE_SRV by DocumentReferenceID and company code) before the router resends an
unconfirmed attempt. The first lookup checks the tenant's ``$metadata``: a field that cannot hold the whole
reference would answer "not found" for a posted entry, and the entry would be posted again.
Partners are looked up by search key before any create, under a per-key lock.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jmespath
import structlog
from lxml import etree
from pydantic import BaseModel

from lead2cash.adapters import sap as adapter
from lead2cash.canonical_model import (
    CreditNote,
    Customer,
    Invoice,
    JournalEntry,
    Money,
    Payment,
    WalletTransaction,
)
from lead2cash.config.errors import ConfigProblems
from lead2cash.config.sap import SapBasicAuth, SapSystemConfig
from lead2cash.connectors.sap.odata import (
    BasicCredentials,
    Credentials,
    OAuthClientCredentials,
    ODataClient,
    and_,
    eq,
)
from lead2cash.connectors.sap.rfc import RfcJournalPoster, pyrfc_connection_factory, split_obj_key
from lead2cash.connectors.sap.soap import JournalEntrySoapClient, PostingConfirmation, PostingRejected
from lead2cash.errors import DeliveryError, PermanentError, TransientError
from lead2cash.pacing import fence
from lead2cash.routes.batching import Coalescer
from lead2cash.routes.interfaces import Source, Target
from lead2cash.routes.mapping import KeyTemplate
from lead2cash.systems import BindingContext

log = structlog.get_logger("lead2cash.bindings.sap")

SYSTEM = "sap"
CLOSED_PERIOD_MESSAGES = ("201(F5)",)  # "Posting period ... is not open"
ACTIONS = (
    "journal_entry.post",
    "journal_entry.reverse",
    "payment.clear",
    "payment_record.clear",
    "credit_note.refund",
    "wallet_credits.void",
    "business_partner.ensure",
)
NOT_POSTED = "not-posted"
"""A reversal's confirmation when the voided invoice was never posted: nothing to reverse, nothing sent."""
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _table(
    value: str | Mapping[str, Any] | None,
    tables: Mapping[str, Mapping[str, Any]],
    path: str,
    problems: list[Any],
) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        if value not in tables:
            known = ", ".join(sorted(tables)) or "none"
            problems.append(((path,), f"no table {value!r} under mappings: (known: {known})"))
            return {}
        return tables[value]
    return value


def _posting_options(options: Mapping[str, Any], known: set[str]) -> str:
    """A posting action's options checked against ``known``; its ``long_references`` policy."""
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigProblems(
            [(("options", unknown[0]), f"unknown option; known: {', '.join(sorted(known))}")]
        )
    long_references = options.get("long_references", "reject")
    if long_references not in ("reject", "tail"):
        raise ConfigProblems([(("options", "long_references"), "expected reject or tail")])
    return str(long_references)


def _credentials(cfg: SapSystemConfig) -> Credentials:
    if isinstance(cfg.auth, SapBasicAuth):
        return BasicCredentials(cfg.auth.username, cfg.auth.password.get_secret_value())
    return OAuthClientCredentials(
        cfg.auth.token_url, cfg.auth.client_id, cfg.auth.client_secret.get_secret_value(), cfg.auth.scope
    )


def _import(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def _today() -> date:
    return datetime.now(UTC).date()


class SapSystem:
    def __init__(self, name: str, cfg: SapSystemConfig, context: BindingContext) -> None:
        self.name = name
        self.cfg = cfg
        self.store = context.store
        problems: list[tuple[tuple[str | int, ...], str]] = []
        tables = context.tables
        self.rules = adapter.PostingRules(
            receivables_account=cfg.receivables_account,
            revenue_accounts=_table(cfg.revenue_accounts, tables, "revenue_accounts", problems),
            tax_codes={
                str(k): str(v) for k, v in _table(cfg.tax_codes, tables, "tax_codes", problems).items()
            },
            tax_account=cfg.tax_account,
            company_code=cfg.company_code,
            company_code_by_currency=dict(cfg.company_code_by_currency),
            document_type=cfg.document_type,
            credit_document_type=cfg.credit_document_type,
            profit_centers=_table(cfg.profit_centers, tables, "profit_centers", problems),
            cost_centers=_table(cfg.cost_centers, tables, "cost_centers", problems),
            invoice_postings=_table(cfg.invoice_postings, tables, "invoice_postings", problems)
            if cfg.invoice_postings is not None
            else dict(adapter.DEFAULT_INVOICE_POSTINGS),
            advance_account=cfg.advance_account,
            granted_credits_account=cfg.granted_credits_account,
            voided_credits_account=cfg.voided_credits_account,
            clearing_accounts=_table(cfg.clearing_accounts, tables, "clearing_accounts", problems),
            payment_document_type=cfg.payment_document_type,
        )
        bp = cfg.business_partner
        self.partner_rules = adapter.PartnerRules(
            search_field=bp.search_field,
            category=bp.category,
            grouping=bp.grouping,
            roles=tuple(bp.roles),
            payment_terms=bp.payment_terms,
            language=bp.language,
        )
        if "FLCU00" not in bp.roles:
            problems.append(
                (("business_partner", "roles"), "role FLCU00 is needed to give partners company code data")
            )
        self.search_expr = jmespath.compile(bp.search_value)
        credentials = _credentials(cfg)
        base_dir = context.base_dir
        ca_bundle = None
        if cfg.ca_bundle:
            path = base_dir / cfg.ca_bundle if not cfg.ca_bundle.startswith("/") else None
            ca_bundle = str(path) if path is not None else cfg.ca_bundle
        self.odata = ODataClient(
            cfg.base_url,
            credentials,
            sap_client=cfg.client,
            ca_bundle=ca_bundle,
            timeout=cfg.timeout,
            page_size=cfg.odata.page_size,
            retries=cfg.retries,
            max_inline_wait=cfg.max_inline_wait,
        )
        self.soap: JournalEntrySoapClient | None = None
        self.rfc: RfcJournalPoster | None = None
        if cfg.transport == "soap":
            wsdl = cfg.soap.wsdl
            if wsdl and not wsdl.startswith(("http://", "https://", "/")):
                wsdl = str(base_dir / wsdl)
            self.soap = JournalEntrySoapClient(
                self.odata.url(cfg.soap.journal_entry_post),
                credentials,
                wsdl=wsdl,
                soap_version=cfg.soap.soap_version,
                ca_bundle=ca_bundle,
                timeout=cfg.soap.timeout,
                max_workers=cfg.soap.workers,
            )
        else:
            rfc = cfg.rfc
            assert rfc is not None  # the schema requires it with transport: rfc
            params = {**rfc.params, **{k: v.get_secret_value() for k, v in rfc.secrets.items()}}
            connect: Callable[[], Any]
            try:
                if rfc.connection_factory:
                    factory = _import(rfc.connection_factory)

                    def connect() -> Any:
                        return factory(**params)

                else:
                    connect = pyrfc_connection_factory(params)
                self.rfc = RfcJournalPoster(connect, max_workers=cfg.soap.workers)
            except (ImportError, AttributeError) as exc:
                problems.append((("transport",), str(exc)))
        if problems:
            raise ConfigProblems(problems)
        self.soap_header = adapter.SoapHeader(
            created_by=cfg.soap.created_by_user
            or (cfg.auth.username if isinstance(cfg.auth, SapBasicAuth) else "LEAD2CASH"),
            logical_system=cfg.soap.logical_system,
        )
        self.partners = PartnerDirectory(self)
        self.bulk: Coalescer[dict[str, Any], PostingConfirmation] = Coalescer(
            self._post_bulk, max_size=cfg.soap.bulk_size, linger=cfg.soap.bulk_linger
        )
        self.lookup_checked = False
        # The ledger vouches only for what this store saw: a document the billing engine created before this
        # process started may have been posted by a history a restored store forgot (see ``unvouched``).
        self.started_at = datetime.now(UTC)

    async def _post_bulk(self, bodies: list[dict[str, Any]]) -> list[PostingConfirmation | BaseException]:
        """One bulk message for the entries of the deliveries in flight; each entry's own confirmation.
        A message SAP refuses as a whole for its form (a SOAP sender fault, a schema violation) posts
        nothing: then each entry goes alone, so only a faulty entry fails. Any other failure of the call
        (a timeout, a 5xx) leaves every entry in doubt: each delivery's lookup by reference decides."""
        soap = self.soap
        assert soap is not None
        try:
            return list(await soap.post(soap.bulk_request(bodies)))
        except PermanentError as exc:
            if len(bodies) == 1 or not ({"fault_code", "zeep"} & set(exc.details)):
                raise
        log.warning("bulk journal entry message refused as a whole; sending its entries one by one")
        out: list[PostingConfirmation | BaseException] = []
        for body in bodies:
            try:
                out.append((await soap.post(soap.bulk_request([body])))[0])
            except DeliveryError as exc:
                out.append(exc)
        return out

    # --- SystemBinding --------------------------------------------------------------------------------
    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        raise ValueError(f"SAP system {self.name!r} is a target only; it has no source object {object!r}")

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        if action == "journal_entry.post":
            return JournalEntryTarget(self, _posting_options(options, {"long_references"}))
        if action == "journal_entry.reverse":
            long_references = _posting_options(options, {"long_references", "after_route", "after_key"})
            if ("after_route" in options) != ("after_key" in options):
                raise ConfigProblems([(("options",), "give after_route and after_key together")])
            after = (
                (str(options["after_route"]), str(options["after_key"])) if "after_route" in options else None
            )
            return ReversalTarget(self, long_references, after)
        if action == "payment.clear":
            return PaymentTarget(self, _posting_options(options, {"long_references"}))
        if action == "payment_record.clear":
            return PaymentRecordTarget(self, _posting_options(options, {"long_references"}))
        if action == "credit_note.refund":
            return RefundTarget(self, _posting_options(options, {"long_references"}))
        if action == "wallet_credits.void":
            return VoidedCreditsTarget(self, _posting_options(options, {"long_references"}))
        if action == "business_partner.ensure":
            return PartnerTarget(self)
        raise ValueError(f"unknown SAP action {action!r}; known: {', '.join(ACTIONS)}")

    async def aclose(self) -> None:
        """At the hub's shutdown: the OData client (its slot's) and the pooled SOAP connections."""
        await self.odata.aclose()
        if self.soap is not None:
            self.soap.release()

    def close(self) -> None:
        """Release everything held outside an event loop (thread pools, SOAP sessions)."""
        if self.soap is not None:
            self.soap.close()
        if self.rfc is not None:
            self.rfc.close()

    def xref_put(self, entity_type: str, canonical_id: str, ref: str) -> None:
        if self.store is not None:
            self.store.xref_put(entity_type, canonical_id, SYSTEM, ref, stable=True)

    def xref_get(self, entity_type: str, canonical_id: str) -> str | None:
        return (
            self.store.xref_get(entity_type, canonical_id, SYSTEM, stable=True)
            if self.store is not None
            else None
        )


class PartnerNotReady(TransientError):
    """The business partner exists but is no customer in SAP yet (another route or system is still
    creating it, or the partner the hub remembered is gone): a wait, retried with the route's policy and
    dead-lettered ("exhausted", replayable) only once the policy is spent."""


FIND_BATCH = 40
"""Search keys per partner query (an ``or`` filter; SAP Gateway's URL stays well under 8 KB)."""


class PartnerDirectory:
    """Business partners by canonical customer: cross-reference, then search key, then deep insert.

    Cache: a customer's partner number is its ``Customer`` cross-reference (the store remembers stable
    cross-references in memory); which company codes a partner has is remembered in this process. Reads
    of concurrent deliveries go as one query (``SearchTerm1 eq 'A' or ...`` with the partners' customer
    company codes expanded), so a backfill pays one partner read per batch, not one per invoice.
    Invalidation: SAP's word wins. A company code that SAP refuses a posting for (351(F5)) is forgotten;
    a remembered number that SAP does not know as a customer is not trusted again until the search key
    finds it (a partner deleted or archived, a sandbox reset)."""

    def __init__(self, system: SapSystem) -> None:
        self.system = system
        self.odata = system.odata
        self.service = system.cfg.odata.business_partner
        self._companies: set[tuple[str, str]] = set()
        self._not_customer: set[str] = set()
        self._stale: set[str] = set()  # customer ids whose remembered partner SAP did not know
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finder: Coalescer[str, str | None] = Coalescer(
            self._find_many, max_size=FIND_BATCH, linger=0.005
        )
        self.reads = 0

    def search_key(self, customer: Customer) -> str:
        raw = self.system.search_expr.search(customer.model_dump(mode="json"))
        if not isinstance(raw, str | int) or raw == "":
            raise PermanentError(
                "business_partner.search_value found no key on the customer",
                details={
                    "customer": customer.id,
                    "expression": self.system.cfg.business_partner.search_value,
                },
            )
        try:
            return adapter.search_value(str(raw))
        except adapter.PostingRuleError as exc:
            raise PermanentError(str(exc), details={"customer": customer.id}) from exc

    def _lock(self, key: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._locks.clear()
            self._loop = loop
        return self._locks.setdefault(key, asyncio.Lock())

    async def find(self, key: str) -> str | None:
        """The partner with search key ``key`` (the lowest number if several share it), or None; the
        reads of concurrent callers go as one query."""
        return await self._finder.submit(key)

    async def _find_many(self, keys: list[str]) -> list[str | None]:
        field = self.system.partner_rules.search_field
        unique = sorted(set(keys))
        self.reads += 1
        rows = await self.odata.query(
            self.service,
            "A_BusinessPartner",
            filter=" or ".join(eq(field, k) for k in unique),
            select=[
                "BusinessPartner",
                field,
                "to_Customer/Customer",
                "to_Customer/to_CustomerCompany/CompanyCode",
            ],
            expand=["to_Customer/to_CustomerCompany"],
            limit=5 * len(unique),
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            number = str(row.get("BusinessPartner") or "")
            if not number:
                continue
            found.setdefault(str(row.get(field) or "").upper(), []).append(number)
            customer = row.get("to_Customer")
            if not isinstance(customer, Mapping) or not customer.get("Customer"):
                self._not_customer.add(number)
                continue
            self._not_customer.discard(number)
            companies = customer.get("to_CustomerCompany")
            if isinstance(companies, Mapping):
                companies = companies.get("results")
            for company in companies or []:
                if isinstance(company, Mapping) and company.get("CompanyCode"):
                    self._companies.add((number, str(company["CompanyCode"])))
        out: list[str | None] = []
        for key in keys:
            numbers = sorted(set(found.get(key.upper(), [])))
            if len(numbers) > 1:
                log.warning(
                    "several business partners share a search key; using the lowest", key=key, found=numbers
                )
            out.append(numbers[0] if numbers else None)
        return out

    async def ensure(self, customer: Customer, company_code: str) -> str:
        key = self.search_key(customer)
        async with self._lock(key):
            number = None if customer.id in self._stale else self.system.xref_get("Customer", customer.id)
            if number is None:
                number = await self.find(key)
                if number is None:
                    if not self.system.cfg.business_partner.create:
                        raise PermanentError(
                            "no SAP business partner for the customer (creation is off)",
                            details={"customer": customer.id, "search_key": key},
                        )
                    payload = adapter.business_partner_payload(
                        customer,
                        key,
                        self.system.partner_rules,
                        company_code=company_code,
                        reconciliation_account=self.system.rules.receivables_account,
                    )
                    created = await self.odata.create(self.service, "A_BusinessPartner", payload)
                    number = str(created["BusinessPartner"])
                    self._companies.add((number, company_code))
                    self._not_customer.discard(number)
                    log.info("business partner created", customer=customer.id, partner=number)
                self.system.xref_put("Customer", customer.id, number)
                self._stale.discard(customer.id)
            try:
                await self._ensure_company(number, company_code, key=key)
            except PartnerNotReady:
                self._stale.add(customer.id)  # found again by its search key on the next attempt
                raise
            return number

    async def _ensure_company(self, number: str, company_code: str, *, key: str | None = None) -> None:
        if (number, company_code) in self._companies:
            return
        found = await self.find(key) if key is not None else None
        if (number, company_code) in self._companies:
            return
        if found == number and number in self._not_customer:
            raise self._not_ready(number, company_code)
        if found != number:
            row = await self.odata.get_entity(
                self.service, "A_CustomerCompany", {"Customer": number, "CompanyCode": company_code}
            )
            if row is not None:
                self._companies.add((number, company_code))
                return
        payload = adapter.customer_company_payload(
            company_code, self.system.rules.receivables_account, self.system.partner_rules
        )
        try:
            await self.odata.create(self.service, "A_CustomerCompany", {"Customer": number, **payload})
        except PermanentError as exc:
            if exc.details.get("status") == 404:
                # "Customer ... does not exist": the partner is not (yet) a customer in SAP.
                raise self._not_ready(number, company_code) from exc
            raise
        self._companies.add((number, company_code))

    def forget_company(self, number: str, company_code: str) -> None:
        """SAP refused a posting for the partner in this company code: ask SAP again next time."""
        self._companies.discard((number, company_code))

    @staticmethod
    def _not_ready(number: str, company_code: str) -> PartnerNotReady:
        return PartnerNotReady(
            f"SAP business partner {number} is not a customer yet (its customer data is still being "
            "created, or the partner is gone); waiting for it",
            details={"partner": number, "company_code": company_code},
        )


class PartnerTarget:
    def __init__(self, system: SapSystem) -> None:
        self.system = system
        self.name = f"{system.name}/business_partner"

    def _company_code(self, customer: Customer) -> str:
        try:
            return self.system.rules.company_code_for(customer.currency or "")
        except adapter.PostingRuleError as exc:
            raise PermanentError(str(exc), details={"customer": customer.id}) from exc

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        if not isinstance(entity, Customer):
            raise PermanentError(
                f"business_partner.ensure takes Customer entities, not {type(entity).__name__}"
            )
        return await self.system.partners.ensure(entity, self._company_code(entity))

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        if not isinstance(entity, Customer):
            return None
        known = self.system.xref_get("Customer", entity.id)
        if known is not None:
            return known
        found = await self.system.partners.find(self.system.partners.search_key(entity))
        if found is not None:
            # A create whose response was lost: the partner exists, but its company code data may not.
            await self.system.partners._ensure_company(found, self._company_code(entity))
            self.system.xref_put("Customer", entity.id, found)
        return found


class JournalEntryTarget:
    def __init__(self, system: SapSystem, long_references: str = "reject") -> None:
        self.system = system
        self.name = f"{system.name}/journal_entry"
        self.rules = replace(system.rules, long_references=long_references)

    # --- mapping ----------------------------------------------------------------------------------------
    def _entry(self, entity: BaseModel, posting_date: date | None = None) -> JournalEntry:
        rules = self.rules
        try:
            if isinstance(entity, Invoice):
                return adapter.invoice_to_journal_entry(entity, rules, posting_date=posting_date)
            if isinstance(entity, CreditNote):
                return adapter.credit_note_to_journal_entry(entity, rules, posting_date=posting_date)
            if isinstance(entity, JournalEntry):
                return (
                    entity
                    if posting_date is None
                    else entity.model_copy(update={"posting_date": posting_date})
                )
        except adapter.PostingRuleError as exc:
            raise PermanentError(
                f"cannot map to a journal entry: {exc}", details={"entity": entity_id(entity)}
            ) from exc
        except ValueError as exc:  # the canonical JournalEntry's own invariants
            raise PermanentError(
                f"journal entry is invalid: {exc}", details={"entity": entity_id(entity)}
            ) from exc
        raise PermanentError(
            f"journal_entry.post takes Invoice, CreditNote or JournalEntry entities, not {type(entity).__name__}"
        )

    async def _debtors(self, entity: BaseModel, entry: JournalEntry) -> dict[str, str]:
        ids = {i.customer_id for i in entry.items if i.customer_id}
        debtors: dict[str, str] = {}
        for customer_id in ids:
            if isinstance(entity, Invoice) and entity.customer.id == customer_id:
                debtors[customer_id] = await self.system.partners.ensure(entity.customer, entry.company_code)
                continue
            number = self.system.xref_get("Customer", customer_id)
            if number is None:
                # Route 2 creates the partner with the customer's first posted invoice, which is usually
                # on its way: retried with the route's backoff, dead-lettered (replayable) once exhausted.
                raise TransientError(
                    "no SAP business partner known for the customer yet; waiting for one of its invoices "
                    "to be posted",
                    details={"customer": customer_id},
                )
            await self.system.partners._ensure_company(number, entry.company_code)
            debtors[customer_id] = number
        return debtors

    # --- Target -----------------------------------------------------------------------------------------
    def _happened_at(self, entity: BaseModel) -> datetime | None:
        """When the event this effect answers happened in the source: the document's creation (else its
        last change, which is later: a payload queued before the creation time was carried is looked up
        rather than trusted)."""
        return getattr(entity, "source_created_at", None) or _modstamp(entity)

    def unvouched(self, entity: BaseModel) -> bool:
        """Whether the ledger's silence about this key proves nothing: the event happened before this
        process started (or within the clocks' declared skew after), so a store restored from a backup may
        have forgotten its posting. The router then looks the posting up before it sends one. A hub that
        runs on pays this only for the backlog it starts with; a source that gives no time is trusted."""
        at = self._happened_at(entity)
        return at is not None and at < self.system.started_at + timedelta(
            seconds=self.system.cfg.lookup.clock_skew
        )

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        entry = self._entry(entity)
        debtors = await self._debtors(entity, entry)
        try:
            ref = await self._post(entry, debtors)
        except PermanentError as exc:
            if not (self.system.cfg.posting_date == "today_if_closed" and _closed_period(exc)):
                raise
            today = _today()
            if entry.posting_date >= today:
                raise
            log.info("posting period closed; posting today", reference=entry.reference_id, today=str(today))
            ref = await self._post(self._entry(entity, posting_date=today), debtors)
        self.system.xref_put(type(entity).__name__, entity_id(entity), ref)
        return ref

    async def _post(self, entry: JournalEntry, debtors: Mapping[str, str]) -> str:
        # A journal entry has no idempotency key SAP enforces: right before it goes, after the partner
        # reads that prepare it, make sure no other worker took the delivery over meanwhile.
        await fence()
        if self.system.soap is not None:
            body = adapter.journal_entry_to_soap(entry, debtors, self.system.soap_header)
            # With the entries of the other deliveries in flight: one bulk message, one confirmation each.
            confirmation: PostingConfirmation = await self.system.bulk.submit(body)
            if not confirmation.posted:
                if _partner_unknown_in(confirmation):
                    # SAP does not know the partner in this company code (any more): what the hub
                    # remembered is wrong; ask SAP again on the next attempt instead of dead-lettering.
                    for number in debtors.values():
                        self.system.partners.forget_company(number, entry.company_code)
                    raise PartnerNotReady(
                        "SAP does not know the business partner in the company code: "
                        + "; ".join(confirmation.errors)[:300],
                        details={"reference": entry.reference_id, "company_code": entry.company_code},
                    )
                raise PostingRejected(confirmation, entry.reference_id)
            return (
                f"{confirmation.accounting_document}/{confirmation.company_code}/{confirmation.fiscal_year}"
            )
        assert self.system.rfc is not None
        params = adapter.journal_entry_to_bapi(entry, debtors, self.system.soap_header.created_by)
        document, company_code, year = split_obj_key(await self.system.rfc.post(params, entry.reference_id))
        return f"{document}/{company_code}/{year}"

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        """The balanced journal entry a delivery posts and the business partner search it starts with,
        without I/O (``lead2cash test``); the partner's number is only known to SAP."""
        entry = self._entry(entity)
        out: dict[str, Any] = {"journal_entry": entry.model_dump(mode="json")}
        if isinstance(entity, Invoice):
            field = self.system.partner_rules.search_field
            out["business_partner_search"] = {field: self.system.partners.search_key(entity.customer)}
        return out

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return await self._found(type(entity).__name__, entity_id(entity), lambda: self._entry(entity))

    async def _found(
        self, xref_type: str, entity_key: str, entry: Callable[[], JournalEntry | None]
    ) -> str | None:
        """A posting known by its cross-reference, else found in SAP by the entry's reference (and then
        remembered); the entry is only built when the cross-reference does not know it."""
        known = self.system.xref_get(xref_type, entity_key)
        if known is not None:
            return known
        posting = entry()
        if posting is None:
            return None
        found = await self.find(posting.company_code, posting.reference_id)
        if found is not None:
            self.system.xref_put(xref_type, entity_key, found)
        return found

    async def find(self, company_code: str, reference: str) -> str | None:
        """``<document>/<company code>/<year>`` of an entry posted under ``reference``, if any."""
        if self.system.rfc is not None:
            key = await self.system.rfc.find(company_code, reference)
            if key is None:
                return None
            document, cc, year = split_obj_key(key)
            return f"{document}/{cc}/{year}"
        lk = self.system.cfg.lookup
        service = getattr(self.system.cfg.odata, lk.service)
        if not self.system.lookup_checked:
            await self._check_lookup(service)
            self.system.lookup_checked = True
        clauses = [eq(lk.reference_field, reference), eq(lk.company_code_field, company_code)]
        rows = await self.system.odata.query(
            service,
            lk.entity_set,
            filter=and_(*clauses),
            select=[lk.document_field, lk.company_code_field, lk.fiscal_year_field],
            limit=50,
        )
        docs = sorted(
            {
                (
                    str(r.get(lk.document_field)),
                    str(r.get(lk.company_code_field)),
                    str(r.get(lk.fiscal_year_field)),
                )
                for r in rows
                if r.get(lk.document_field)
            }
        )
        if not docs:
            return None
        if len(docs) > 1:
            log.warning("several documents carry one reference", reference=reference, documents=docs)
        document, cc, year = docs[0]
        return f"{document}/{cc}/{year}"

    async def _check_lookup(self, service: str) -> None:
        """The lookup's entity set and fields exist in the tenant's metadata, and the reference field holds
        a whole reference (an over-long filter value finds nothing, or is refused)."""
        lk = self.system.cfg.lookup
        response = await self.system.odata.request("GET", service, "$metadata", what="read $metadata")
        assert response is not None
        try:
            root = etree.fromstring(response.content, _SAFE_XML)
        except etree.XMLSyntaxError as exc:
            raise TransientError(f"SAP $metadata of {service} is not XML") from exc
        types = {t.get("Name"): t for t in root.iter("{*}EntityType")}
        sets = {s.get("Name"): (s.get("EntityType") or "").split(".")[-1] for s in root.iter("{*}EntitySet")}
        where = {"service": service, "entity_set": lk.entity_set}
        entity_type = types.get(sets.get(lk.entity_set, ""))
        if entity_type is None:
            raise PermanentError("SAP lookup: the entity set is not in the service's metadata", details=where)
        props = {p.get("Name"): p for p in entity_type.iter("{*}Property")}
        fields = (lk.reference_field, lk.document_field, lk.company_code_field, lk.fiscal_year_field)
        missing = [f for f in fields if f not in props]
        if missing:
            raise PermanentError(
                f"SAP lookup: {', '.join(missing)} not in the entity set's metadata", details=where
            )
        max_length = props[lk.reference_field].get("MaxLength")
        if max_length is not None and int(max_length) < adapter.MAX_REFERENCE:
            raise PermanentError(
                f"SAP lookup: {lk.reference_field} holds {max_length} characters, a posting's reference "
                f"{adapter.MAX_REFERENCE}; posted entries could not be found and would be posted again",
                details=where,
            )


class ReversalTarget(JournalEntryTarget):
    """``journal_entry.reverse``: a voided invoice's posting reversed, found first by the invoice's own
    cross-reference, then by its reference in SAP. Never posted: nothing is sent, except the paid credits
    it used, which Lago gave back as granted ones (``adapter.void_unposted_entry``)."""

    def __init__(self, system: SapSystem, long_references: str, after: tuple[str, str] | None) -> None:
        super().__init__(system, long_references)
        self.name = f"{system.name}/journal_entry.reverse"
        self.after = after

    def _happened_at(self, entity: BaseModel) -> datetime | None:
        return _modstamp(entity)  # the void: the invoice's last change

    def _entry(self, entity: BaseModel, posting_date: date | None = None) -> JournalEntry:
        if not isinstance(entity, Invoice):
            raise PermanentError(f"journal_entry.reverse takes Invoice entities, not {type(entity).__name__}")
        try:
            return adapter.void_reversal_entry(entity, self.rules, posting_date=posting_date)
        except adapter.PostingRuleError as exc:
            raise PermanentError(f"cannot map to a reversal: {exc}", details={"entity": entity.id}) from exc

    async def _original(self, invoice: Invoice) -> str | None:
        known = self.system.xref_get("Invoice", invoice.id)
        if known is not None:
            return known
        try:
            original = adapter.invoice_to_journal_entry(invoice, self.rules)
        except adapter.PostingRuleError:
            return None  # it could never have been posted under these rules
        return await self.find(original.company_code, original.reference_id)

    def _waiting_for_original(self, invoice: Invoice) -> bool:
        """The original posting is still queued on its route (the void overtook it): wait for it."""
        if self.after is None or self.system.store is None:
            return False
        route, template = self.after
        key = KeyTemplate(template).render(invoice.model_dump(mode="json"))
        message = self.system.store.message_by_key(route, key)
        return message is not None and message.status == "pending"

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        entry = self._entry(entity)
        assert isinstance(entity, Invoice)
        if await self._original(entity) is None:
            if self._waiting_for_original(entity):
                raise TransientError(
                    "the voided invoice's posting is still on its way; its reversal waits for it",
                    details={"invoice": entity.invoice_number},
                )
            try:
                credits = adapter.void_unposted_entry(entity, self.rules)
            except adapter.PostingRuleError as exc:
                raise PermanentError(f"cannot map the credits given back: {exc}") from exc
            if credits is None:
                log.info("voided invoice was never posted: nothing to reverse", invoice=entity.invoice_number)
                return NOT_POSTED
            # Nothing to reverse, but the paid credits it used came back as granted ones.
            ref = await self._post(credits, {})
            self.system.xref_put("InvoiceVoid", entity.id, ref)
            return ref
        debtors = await self._debtors(entity, entry)
        ref = await self._post(entry, debtors)
        self.system.xref_put("InvoiceVoid", entity.id, ref)
        return ref

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return await self._found("InvoiceVoid", entity_id(entity), lambda: self._entry(entity))

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        return {"journal_entry": self._entry(entity).model_dump(mode="json")}


NOTHING_TO_CLEAR = "nothing-to-clear"
"""A payment state's confirmation when it changes nothing on the ledger (a failure never cleared)."""


class PaymentTarget(JournalEntryTarget):
    """``payment.clear``. What an invoice's payments have cleared so far is kept as a cross-reference
    (``PaymentCleared``: ``<invoice id>|<minor units>``), written with each posting and by the lookup that
    finds one after a lost response; per-invoice ordering (the route's ordering key) keeps it exact."""

    def __init__(self, system: SapSystem, long_references: str) -> None:
        super().__init__(system, long_references)
        self.name = f"{system.name}/payment.clear"

    def _happened_at(self, entity: BaseModel) -> datetime | None:
        return _modstamp(entity)  # the payment's change of state

    @staticmethod
    def _payment(entity: BaseModel) -> Payment:
        if not isinstance(entity, Payment) or not entity.invoice_ids:
            raise PermanentError(
                f"payment.clear takes Payment entities of one invoice, not {type(entity).__name__}"
            )
        return entity

    cleared_type = "PaymentCleared"

    def _cleared_key(self, payment: Payment) -> str:
        """Whose clearing is tracked: the invoice's (its payment status is one running amount)."""
        return payment.invoice_ids[0]

    def _reference(self, payment: Payment) -> str:
        return adapter.payment_reference(payment, self.rules)

    def _cleared(self, payment: Payment) -> Money:
        key = self._cleared_key(payment)
        value = self.system.store.xref_get(self.cleared_type, key, SYSTEM) if self.system.store else None
        cents = int(value.rsplit("|", 1)[1]) if value else 0
        return Money.from_minor_units(cents, payment.amount.currency)

    def _remember(self, payment: Payment) -> None:
        if self.system.store is None:
            return
        key = self._cleared_key(payment)
        cents = adapter.payment_cleared_amount(payment).to_minor_units()
        self.system.store.xref_put(self.cleared_type, key, SYSTEM, f"{key}|{cents}")

    def _entry(self, entity: BaseModel, posting_date: date | None = None) -> JournalEntry:
        payment = self._payment(entity)
        try:
            entry = adapter.payment_to_journal_entry(
                payment, self._cleared(payment), self.rules, reference_id=self._reference(payment)
            )
        except adapter.PostingRuleError as exc:
            raise PermanentError(f"cannot map the payment: {exc}", details={"payment": payment.id}) from exc
        if entry is None:
            raise _NothingToClear
        return entry if posting_date is None else entry.model_copy(update={"posting_date": posting_date})

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        payment = self._payment(entity)
        try:
            entry = self._entry(payment)
        except _NothingToClear:
            return NOTHING_TO_CLEAR
        debtors = await self._debtors(payment, entry)
        ref = await self._post(entry, debtors)
        self._remember(payment)
        return ref

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        payment = self._payment(entity)
        company_code = self.rules.company_code_for(payment.amount.currency)
        found = await self.find(company_code, self._reference(payment))
        if found is not None:
            self._remember(payment)  # posted before a lost response: what it cleared counts
        return found

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        try:
            return {"journal_entry": self._entry(entity).model_dump(mode="json")}
        except _NothingToClear:
            return {"journal_entry": None}


class PaymentRecordTarget(PaymentTarget):
    """``payment_record.clear``: one of Lago's payment records (``GET /payments``; a manual payment of
    part or all of an invoice). What each record cleared is kept per payment (``PaymentRecordCleared``),
    so several partial payments clear their invoice in steps, each by its own amount, and a record that
    fails after it succeeded reverses what it cleared. The invoice's payment status (``payment.clear``)
    clears only what no payment record paid (``total_amount_cents - total_paid_amount_cents``): the two
    routes never clear the same money."""

    cleared_type = "PaymentRecordCleared"

    def __init__(self, system: SapSystem, long_references: str) -> None:
        super().__init__(system, long_references)
        self.name = f"{system.name}/payment_record.clear"

    def _cleared_key(self, payment: Payment) -> str:
        return payment.id

    def _reference(self, payment: Payment) -> str:
        return adapter.payment_record_reference(payment)


def _modstamp(entity: BaseModel) -> datetime | None:
    stamp = getattr(entity, "source_modstamp", None)
    if not stamp:
        return None
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class _NothingToClear(Exception):
    pass


NO_REFUND = "no-refund"
"""A credit note's refund confirmation when it refunds nothing (all of it is credit kept)."""


REFUND_NOT_POSTED = "refund-not-posted"
"""A declined refund's confirmation when its cash leg was never posted: nothing to reverse, nothing sent."""


class RefundTarget(JournalEntryTarget):
    """``credit_note.refund``: the cash leg of a credit note's refund (receivable debited, the provider's
    bank/clearing account credited), one document per credit note (``<number>-RF``), found by its own
    cross-reference (``CreditNoteRefund``), then by its reference in SAP.

    A refund the provider declined (a later state of the credit note, ``refund_declined``) reverses that
    cash leg (``<number>-RD``, cross-reference ``CreditNoteRefundDeclined``) when it was posted, and posts
    nothing when it was not (``refund-not-posted``): the amount stays owed to the customer. Each state of
    the credit note is its own delivery (the route's key carries the version), ordered per customer."""

    def __init__(self, system: SapSystem, long_references: str) -> None:
        super().__init__(system, long_references)
        self.name = f"{system.name}/credit_note.refund"

    def _note(self, entity: BaseModel) -> CreditNote:
        if not isinstance(entity, CreditNote):
            raise PermanentError(f"credit_note.refund takes CreditNote entities, not {type(entity).__name__}")
        return entity

    def _refund(self, entity: BaseModel, *, declined: bool = False) -> JournalEntry | None:
        note = self._note(entity)
        try:
            return adapter.credit_note_refund_entry(note, self.rules, declined=declined)
        except adapter.PostingRuleError as exc:
            raise PermanentError(f"cannot map the refund: {exc}", details={"entity": note.id}) from exc

    def _cash_out(self, note: CreditNote) -> JournalEntry | None:
        """The refund's cash leg as it was posted, for a declined refund's amount."""
        if note.refund_declined is None:
            return None
        return self._refund(note.model_copy(update={"refund": note.refund_declined, "refund_declined": None}))

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        note = self._note(entity)
        entry = self._refund(note)
        if entry is not None:
            # A later state of the same refund (the provider confirmed it) finds the one posting.
            if (
                note.version > 1
                and (found := await self._found("CreditNoteRefund", note.id, lambda: entry)) is not None
            ):
                return found
            ref = await self._post(entry, await self._debtors(note, entry))
            self.system.xref_put("CreditNoteRefund", note.id, ref)
            return ref
        reversal = self._refund(note, declined=True)
        cash_out = self._cash_out(note)
        if reversal is None or cash_out is None:
            return NO_REFUND
        if (found := await self._found("CreditNoteRefundDeclined", note.id, lambda: reversal)) is not None:
            return found
        if await self._found("CreditNoteRefund", note.id, lambda: cash_out) is None:
            log.info(
                "declined refund was never posted: nothing to reverse", credit_note=note.credit_note_number
            )
            return REFUND_NOT_POSTED
        ref = await self._post(reversal, await self._debtors(note, reversal))
        self.system.xref_put("CreditNoteRefundDeclined", note.id, ref)
        return ref

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        note = self._note(entity)
        entry = self._refund(note)
        if entry is not None:
            return await self._found("CreditNoteRefund", note.id, lambda: entry)
        reversal = self._refund(note, declined=True)
        return await self._found("CreditNoteRefundDeclined", note.id, lambda: reversal)

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        entry = self._refund(entity) or self._refund(entity, declined=True)
        return {"journal_entry": entry.model_dump(mode="json") if entry is not None else None}


NOTHING_TO_POST = "nothing-to-post"
"""A wallet movement's confirmation when another document books it, or nothing does (see
``adapter.voided_credits_entry``)."""


class VoidedCreditsTarget(JournalEntryTarget):
    """``wallet_credits.void``: paid credits voided in a wallet, the advance released to the voided
    credits account (``VC<transaction id tail>``); every other wallet movement posts nothing here."""

    def __init__(self, system: SapSystem, long_references: str) -> None:
        super().__init__(system, long_references)
        self.name = f"{system.name}/wallet_credits.void"

    def _voided(self, entity: BaseModel) -> JournalEntry | None:
        if not isinstance(entity, WalletTransaction):
            raise PermanentError(
                f"wallet_credits.void takes WalletTransaction entities, not {type(entity).__name__}"
            )
        try:
            return adapter.voided_credits_entry(entity, self.rules)
        except adapter.PostingRuleError as exc:
            raise PermanentError(
                f"cannot map the voided credits: {exc}", details={"entity": entity.id}
            ) from exc

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        entry = self._voided(entity)
        if entry is None:
            return NOTHING_TO_POST
        ref = await self._post(entry, {})
        self.system.xref_put("VoidedCredits", entity_id(entity), ref)
        return ref

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return await self._found("VoidedCredits", entity_id(entity), lambda: self._voided(entity))

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        entry = self._voided(entity)
        return {"journal_entry": entry.model_dump(mode="json") if entry is not None else None}


def entity_id(entity: BaseModel) -> str:
    return str(getattr(entity, "id", ""))


PARTNER_UNKNOWN_MESSAGES = ("351(F5)",)  # "Customer ... is not defined in company code ..."


def _partner_unknown_in(confirmation: PostingConfirmation) -> bool:
    return any(
        (i.severity or "") >= "3"
        and ((i.type_id or "") in PARTNER_UNKNOWN_MESSAGES or "is not defined in company code" in i.note)
        for i in confirmation.log
    )


def _closed_period(exc: DeliveryError) -> bool:
    confirmation = getattr(exc, "confirmation", None)
    if confirmation is not None:
        return any(
            (i.type_id or "") in CLOSED_PERIOD_MESSAGES or "is not open" in i.note for i in confirmation.log
        )
    return "is not open" in exc.message or "201(F5)" in str(exc.details.get("sap_messages", ""))


def build(name: str, config: SapSystemConfig, context: BindingContext) -> SapSystem:
    return SapSystem(name, config, context)


__all__ = ["JournalEntryTarget", "PartnerTarget", "SapSystem", "build"]
