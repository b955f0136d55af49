"""``lead2cash reconcile three-way``: Salesforce's closed-won deals, the billing engine's invoices and the
ledger's postings, compared per currency and per deal and invoice, to the minor unit.

Each system is read through the hub's own connectors, configured by the same files ``lead2cash run``
takes: Salesforce by SOQL, Lago's invoices and credit notes by its API, SAP's journal entry items on the
receivable and revenue accounts by API_OPLACCTGDOCITEMCUBE_SRV (aggregated per document and account, as
the cube does). The hub's store says where each record is on its way: a deal or invoice the systems
disagree on is classified by the route that carries it (dead letter, pending delivery, not read yet), so
every difference comes with its likely cause and the fix (the dead letter to replay, by id, and the
command; the mapping to add; the credit note to issue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from lead2cash.adapters.sap import PostingRuleError, check_reference
from lead2cash.canonical_model import MINOR_UNITS
from lead2cash.config.schema import HubConfig, RouteConfig
from lead2cash.reconcile.lago import with_fees
from lead2cash.store import DeadLetter, Message, Store

CHECK = "three_way"
T = TypeVar("T")

# Causes, as the JSON and the metrics name them; the fix text is per difference.
DEAD_LETTER = "dead_letter"  # the route that carries it gave up: replay the dead letter
MISSING_MAPPING = "missing_mapping"  # a dead letter whose reason is a code or table entry not found
PENDING = "pending_delivery"  # in the hub's inbox, not delivered yet
NOT_READ = "not_read"  # the route has not read it from its source yet
DEAL_NOT_WON = "deal_not_won"  # billed, but the deal is lost, reopened or deleted since
NO_DEAL = "no_deal"  # an invoice no deal of the CRM accounts for
POSTED_TWICE = "posted_twice"
POSTED_AMOUNT = "posted_amount_differs"
WRONG_CUSTOMER = "posted_to_other_customer"
REVENUE_ACCOUNT = "revenue_account_differs"
LEDGER_ONLY = "ledger_only"  # a posting on the receivable that matches no billing document
NOT_REVERSED = "void_not_reversed"
WRITEBACK = "writeback_differs"
DELIVERED_NOT_FOUND = "delivered_not_in_ledger"
CREDIT_NOT_POSTED = "credit_note_not_posted"
ADVANCE = "advance_differs"  # the customer advance in the ledger is not the wallets' paid credits

_MARKER = re.compile(r"\(order ([^()\s]+)\)\s*$")
# Cash legs: a payment state's clearing, a credit note's refund and its reversal once declined.
_PAYMENT = re.compile(r"-P\d+$|-RF$|-RD$")
# A payment record's clearing (payment_record.clear): P<digits of the Lago payment id>-<version>.
_PAYMENT_RECORD = re.compile(r"P[0-9A-F]{6,14}-\d+")
_MAPPING_HINTS = (
    "not_found",
    "no table",
    "no account",
    "no plan",
    "no add-on",
    "no tax code",
    "under mappings",
    "unknown plan",
    "not in table",
)


# ---------------------------------------------------------------------------------------------- report
@dataclass
class Difference:
    """One deal, invoice or document the systems disagree on, with its likely cause and the fix."""

    cause: str
    currency: str | None
    detail: str
    fix: str
    deal: str | None = None
    invoice: str | None = None
    document: str | None = None
    customer: str | None = None
    won: Decimal | None = None
    invoiced: Decimal | None = None
    posted: Decimal | None = None
    dead_letter: int | None = None
    route: str | None = None

    def text(self) -> str:
        return f"{self.detail} [{self.cause}]"

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


@dataclass
class ThreeWayReport:
    """Amounts per currency in each system and every difference found (none: clean)."""

    won: dict[str, Decimal] = field(default_factory=dict)
    invoiced: dict[str, Decimal] = field(default_factory=dict)
    posted: dict[str, Decimal] = field(default_factory=dict)  # receivable of the billing documents' postings
    # Revenue per currency and G/L account: the billing engine's fees by the ledger's revenue table, and
    # what the ledger booked on those documents.
    revenue_billed: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    revenue_posted: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    customers: int = 0  # (customer, currency) pairs whose postings were checked
    deals: int = 0
    invoices: int = 0
    credit_notes: int = 0
    journal_entries: int = 0
    awaiting_invoice: int = 0  # won deals billed whose first invoice is not due yet
    # Won deals whose subscriptions Lago billed on an invoice of another deal of the customer (one invoice
    # per customer and day): billed, but the invoice's write-back is on the other deal.
    billed_with_another_deal: int = 0
    differences: list[Difference] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0
    systems: dict[str, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.differences

    # The demo checker's names (``LeadToCash.agreement()``): the same report.
    @property
    def agree(self) -> bool:
        return self.clean

    @property
    def problems(self) -> list[str]:
        return [d.text() for d in self.differences]

    def by_cause(self) -> Counter[tuple[str, str]]:
        return Counter((d.currency or "-", d.cause) for d in self.differences)

    def currencies(self) -> list[str]:
        return sorted(set(self.won) | set(self.invoiced) | set(self.posted))

    def as_json(self) -> dict[str, Any]:
        diffs = Counter(d.currency or "-" for d in self.differences)
        return {
            "check": CHECK,
            "clean": self.clean,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "systems": self.systems,
            "currencies": {
                ccy: {
                    "won": _s(self.won.get(ccy)),
                    "invoiced": _s(self.invoiced.get(ccy)),
                    "posted_receivable": _s(self.posted.get(ccy)),
                    "invoiced_equals_posted": self.invoiced.get(ccy, Decimal(0))
                    == self.posted.get(ccy, Decimal(0)),
                    "differences": diffs.get(ccy, 0),
                }
                for ccy in self.currencies()
            },
            "revenue": {
                ccy: {
                    account: {
                        "billed": _s(self.revenue_billed.get(ccy, {}).get(account)),
                        "posted": _s(self.revenue_posted.get(ccy, {}).get(account)),
                    }
                    for account in sorted(
                        set(self.revenue_billed.get(ccy, {})) | set(self.revenue_posted.get(ccy, {}))
                    )
                }
                for ccy in sorted(set(self.revenue_billed) | set(self.revenue_posted))
            },
            "counts": {
                "deals_won": self.deals,
                "awaiting_first_invoice": self.awaiting_invoice,
                "billed_with_another_deal": self.billed_with_another_deal,
                "invoices": self.invoices,
                "credit_notes": self.credit_notes,
                "journal_entries": self.journal_entries,
                "customers": self.customers,
                "differences": len(self.differences),
            },
            "differences_by_cause": dict(Counter(d.cause for d in self.differences)),
            "differences": [d.as_json() for d in self.differences],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _amount(cents: Any, currency: str) -> Decimal:
    return Decimal(int(cents or 0)).scaleb(-MINOR_UNITS.get(currency, 2))


def _cents(amount: Any, currency: str) -> int:
    """Minor units of an amount in major units (a wallet transaction's ``amount``)."""
    return int(Decimal(str(amount or 0)).scaleb(MINOR_UNITS.get(currency, 2)))


def _quantized(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2)))


def order_of(invoice: Mapping[str, Any]) -> str | None:
    """The deal a Lago invoice bills, read from Lago's own fields: the metadata the hub writes, the order
    marker in one-off fee descriptions, or the subscriptions' external ids (``<order>:<line>``), from the
    invoice's ``subscriptions`` or its fees' ``external_subscription_id``."""
    for item in invoice.get("metadata") or []:
        if item.get("key") == "lead2cash_order":
            return str(item["value"])
    for fee in invoice.get("fees") or []:
        match = _MARKER.search(str(fee.get("description") or ""))
        if match:
            return match.group(1)
    for sub in invoice.get("subscriptions") or []:
        external = str(sub.get("external_id") or "")
        if ":" in external:
            return external.split(":", 1)[0]
    # Read from the fee listing, an invoice has no ``subscriptions``: its fees name theirs.
    for fee in invoice.get("fees") or []:
        external = str(fee.get("external_subscription_id") or "")
        if ":" in external:
            return external.split(":", 1)[0]
    return None


def deals_of(invoice: Mapping[str, Any]) -> list[str]:
    """Every deal an invoice bills, ``order_of``'s first. Lago bills a customer's subscriptions that fall
    due on the same day on one invoice (Subscriptions::OrganizationBillingService), so a subscription
    invoice may bill the subscriptions (``<order>:<line>``) of several deals."""
    first = order_of(invoice)
    deals = [first] if first else []
    subs = [str(s.get("external_id") or "") for s in invoice.get("subscriptions") or []]
    subs += [str(f.get("external_subscription_id") or "") for f in invoice.get("fees") or []]
    for external in subs:
        deal = external.split(":", 1)[0] if ":" in external else None
        if deal and deal not in deals:
            deals.append(deal)
    return deals


def _fees_listed(invoice: Mapping[str, Any]) -> bool:
    """The fees the fee listing brought are all of the invoice's (Lago's ``fees_amount_cents`` is their
    sum), or the invoice is not finalized: only finalized invoices' fees are compared."""
    if invoice.get("status") != "finalized":
        return True
    fees = invoice.get("fees") or []
    total = invoice.get("fees_amount_cents")
    return bool(fees) and total is not None and sum(int(f["amount_cents"]) for f in fees) == int(total)


# ---------------------------------------------------------------------------------------------- the check
@dataclass
class _Track:
    """Where one route holds a record: its open dead letter, its latest message."""

    dead: dict[str, DeadLetter] = field(default_factory=dict)
    latest: dict[str, Message] = field(default_factory=dict)


@dataclass
class _Posting:
    document: str  # <document>/<company code>/<fiscal year>
    currency: str
    receivable: Decimal = Decimal(0)
    customers: set[str] = field(default_factory=set)
    revenue: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    advance: Decimal = Decimal(0)  # the customer advance (a liability): credit-positive
    assignments: set[str] = field(default_factory=set)  # of the advance items


class ThreeWay:
    """One reconciliation over ``systems`` (the hub's bindings, by name) and the hub's ``store``.
    ``config_files`` are named in the fixes (``lead2cash dlq replay -c ...``)."""

    def __init__(
        self,
        config: HubConfig,
        store: Store,
        systems: Mapping[str, Any],
        *,
        config_files: Sequence[Path | str] = (),
    ) -> None:
        self.config = config
        self.store = store
        self.systems = systems
        self.config_files = [str(f) for f in config_files]
        settings = config.reconcile.three_way
        self.crm = self._system(settings.crm, "salesforce")
        self.billing = self._system(settings.billing, "lago")
        self.ledger = self._system(settings.ledger, "sap")
        routes = [r for r in config.routes if r.enabled]
        self.billing_route = self._route(routes, self.billing, ("bill_order",))
        self.ledger_route = self._route(routes, self.ledger, ("journal_entry.post",))
        self.reversal_route = self._route(routes, self.ledger, ("journal_entry.reverse",))
        self.writeback_routes = [
            r.name for r in routes if r.target.system == self.crm and r.target.action == "writeback"
        ]
        ledger_cfg = config.systems[self.ledger]
        self.receivables = str(ledger_cfg.receivables_account)
        self.long_references = "reject"
        for r in routes:
            if r.name == self.ledger_route:
                self.long_references = str(r.target.options.get("long_references", "reject"))
        table = ledger_cfg.revenue_accounts
        self.revenue_table: Mapping[str, Any] = (
            config.mappings.get(table, {}) if isinstance(table, str) else dict(table)
        )
        self.families: Mapping[str, Any] = {}
        for r in routes:
            family_table = r.mapping.options.get("product_family_table")
            if r.name == self.ledger_route and isinstance(family_table, str):
                self.families = config.mappings.get(family_table, {})
        self.revenue_accounts = {str(a) for a in _accounts(self.revenue_table.values())}
        advance = getattr(ledger_cfg, "advance_account", None)
        self.advance_account = str(advance) if advance else None

    def _system(self, name: str | None, type_: str) -> str:
        if name is not None:
            if name not in self.config.systems:
                raise ValueError(f"reconcile.three_way: no system {name!r} in the config")
            return name
        found = [n for n, s in self.config.systems.items() if s.type == type_]
        if len(found) != 1:
            raise ValueError(
                f"reconcile.three_way needs one system of type {type_} (found {len(found)}): name it in "
                f"reconcile.three_way"
            )
        return found[0]

    @staticmethod
    def _route(routes: Iterable[RouteConfig], system: str, actions: tuple[str, ...]) -> str | None:
        return next(
            (r.name for r in routes if r.target.system == system and r.target.action in actions), None
        )

    def _files(self) -> list[str]:
        """The config files as the operator typed them: relative to the working directory when under it."""
        out = []
        for f in self.config_files:
            path = Path(f)
            with contextlib.suppress(ValueError):
                path = path.resolve().relative_to(Path.cwd())
            out.append(shlex.quote(str(path)))
        return out

    def _cmd(self, *args: str) -> str:
        files = " ".join(f"-c {f}" for f in self._files()) or "-c <config files>"
        return f"lead2cash {args[0]} {args[1]} {files} {' '.join(args[2:])}".strip()

    def _run_cmd(self) -> str:
        files = " ".join(self._files()) or "<config files>"
        return f"lead2cash run --until-idle {files}"

    # ------------------------------------------------------------------ reading the systems
    async def _deals(self, where: str) -> list[dict[str, Any]]:
        from lead2cash.connectors.salesforce.reader import fetch_all

        binding = self.systems[self.crm]
        cfg = self.config.systems[self.crm]
        fields = ["Id", "Amount", "StageName", "IsWon", "AccountId"]
        if cfg.multi_currency:
            fields.append("CurrencyIsoCode")
        fields += [f for f in self._writeback_fields().values() if f]
        # Field names are validated by the config; ids by the caller (15/18 alphanumerics).
        soql = f"SELECT {', '.join(dict.fromkeys(fields))} FROM Opportunity WHERE {where}"  # noqa: S608
        client = binding.client
        budget = client.budget(f"{self.crm}/reconcile")
        await client.start(budget)
        rows: list[dict[str, Any]] = await client.call(
            budget, lambda sf: fetch_all(sf, soql, False), "reconcile: read deals"
        )
        for row in rows:
            if not cfg.multi_currency:
                row.setdefault("CurrencyIsoCode", cfg.default_currency)
        return rows

    def _writeback_fields(self) -> dict[str, str | None]:
        fields = self.config.systems[self.crm].writeback_fields.model_dump()
        return {k: fields.get(k) for k in ("invoice_number", "invoiced_amount", "accounting_document")}

    async def _invoices(self) -> list[dict[str, Any]]:
        """Every invoice of the billing engine, with its ``fees``: the invoice listing and the fee listing
        (every type: subscription, charge, add-on, wallet credit), joined. A finalized invoice whose listed
        fees do not add up to its ``fees_amount_cents`` is read whole; the others' fees are not compared."""
        client = self.systems[self.billing].client
        listed = {str(i["lago_id"]): dict(i) async for i in client.invoices({})}
        return await with_fees(client, listed, {}, complete=_fees_listed, concurrency=8)

    async def _credit_notes(self) -> list[dict[str, Any]]:
        client = self.systems[self.billing].client
        return [n async for n in client.credit_notes()]

    async def _postings(self) -> dict[str, list[_Posting]]:
        """Per DocumentReferenceID: the documents posted under it, their receivable (customer line items
        of the reconciliation account), customers and revenue accounts, from the cube's aggregation."""
        sap = self.systems[self.ledger]
        cfg = self.config.systems[self.ledger]
        service = cfg.odata.operational_acctg_doc_item
        from lead2cash.connectors.sap.odata import eq

        # Only the accounts compared: a real tenant's cube holds every journal entry item of the company.
        accounts = sorted({self.receivables, *self.revenue_accounts, *filter(None, [self.advance_account])})
        rows = await sap.odata.query(
            service,
            cfg.lookup.entity_set,
            filter=" or ".join(eq("GLAccount", a) for a in accounts),
            select=[
                "DocumentReferenceID",
                "AccountingDocument",
                "CompanyCode",
                "FiscalYear",
                "GLAccount",
                "Customer",
                "AssignmentReference",
                "AmountInTransactionCurrency",
                "TransactionCurrency",
            ],
        )
        docs: dict[str, _Posting] = {}
        refs: dict[str, list[_Posting]] = defaultdict(list)
        for row in rows:
            document = f"{row['AccountingDocument']}/{row['CompanyCode']}/{row['FiscalYear']}"
            posting = docs.get(document)
            if posting is None:
                posting = docs[document] = _Posting(document, str(row["TransactionCurrency"]))
                refs[str(row.get("DocumentReferenceID") or "")].append(posting)
            amount = Decimal(str(row["AmountInTransactionCurrency"]))
            account = str(row.get("GLAccount") or "")
            if account == self.receivables:
                posting.receivable += amount
                if row.get("Customer"):
                    posting.customers.add(str(row["Customer"]))
            elif account in self.revenue_accounts:
                posting.revenue[account] -= amount  # revenue is a credit
            elif account == self.advance_account:
                posting.advance -= amount  # a liability: a credit
                if row.get("AssignmentReference"):
                    posting.assignments.add(str(row["AssignmentReference"]))
        return refs

    async def _in_store(self, fn: Callable[[], T]) -> T:
        """Store reads off the event loop where the store is remote (PostgreSQL), as the hub's are."""
        return await asyncio.to_thread(fn) if self.store.offload else fn()

    def _tracks(self, route: str | None, ids: Any) -> _Track:
        track = _Track()
        if route is None:
            return track
        for d in self.store.dlq_list(route, "open", limit=1_000_000):
            for key in ids(d.canonical_payload, d.original_payload, d.idempotency_key):
                track.dead.setdefault(key, d)
        for m in self.store.messages_for(route):
            for key in ids(m.payload, m.source_payload, m.idempotency_key):
                if key not in track.latest or track.latest[key].id < m.id:
                    track.latest[key] = m
        return track

    # ------------------------------------------------------------------ the comparison
    async def run(self) -> ThreeWayReport:
        t0 = time.monotonic()
        report = ThreeWayReport(systems={"crm": self.crm, "billing": self.billing, "ledger": self.ledger})
        opps, invoices, notes, refs = await asyncio.gather(
            self._deals("IsWon = true"), self._invoices(), self._credit_notes(), self._postings()
        )
        billing, ledger, *writeback = await self._in_store(
            lambda: [
                self._tracks(self.billing_route, _order_ids),
                self._tracks(self.ledger_route, _invoice_ids),
                *(self._tracks(r, _invoice_ids) for r in self.writeback_routes),
            ]
        )

        report.deals = len(opps)
        won: dict[str, Decimal] = defaultdict(Decimal)
        for o in opps:
            won[o["CurrencyIsoCode"]] += Decimal(str(o["Amount"] or 0))
        report.won = {c: _quantized(v, c) for c, v in won.items()}
        report.journal_entries = len({p.document for ps in refs.values() for p in ps})

        finalized = [i for i in invoices if i.get("status") == "finalized"]
        voided = [i for i in invoices if i.get("status") == "voided"]
        report.invoices = len(finalized)
        credited: dict[str, Decimal] = defaultdict(Decimal)  # by invoice lago_id
        issued_notes = [n for n in notes if n.get("status", "finalized") == "finalized"]
        report.credit_notes = len(issued_notes)
        for n in issued_notes:
            credited[str(n.get("lago_invoice_id"))] += _amount(n.get("total_amount_cents"), n["currency"])

        invoiced: dict[str, Decimal] = defaultdict(Decimal)
        posted: dict[str, Decimal] = defaultdict(Decimal)
        matched_refs: set[str] = set()
        orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
        also_billed: set[str] = set()  # deals on an invoice attributed to another deal
        for inv in finalized:
            ccy = inv["currency"]
            total = _amount(inv["total_amount_cents"], ccy)
            invoiced[ccy] += total
            deals = deals_of(inv)
            orders[deals[0] if deals else ""].append(inv)
            also_billed.update(deals[1:])
            ref = self._reference(inv["number"])
            matched_refs.add(ref)
            postings = refs.get(ref, [])
            for p in postings:
                posted[p.currency] += p.receivable
            self._check_posting(report, inv, total, postings, ledger)
        for n in issued_notes:
            ccy = n["currency"]
            invoiced[ccy] -= _amount(n.get("total_amount_cents"), ccy)
            ref = self._reference(str(n.get("number") or ""))
            matched_refs.add(ref)
            for p in refs.get(ref, []):
                posted[p.currency] += p.receivable
            if not refs.get(ref):
                amount = _amount(n.get("total_amount_cents"), ccy)
                report.differences.append(
                    Difference(
                        CREDIT_NOT_POSTED,
                        ccy,
                        f"credit note {n.get('number')} ({amount} {ccy}) is issued in billing but not posted in "
                        "the ledger",
                        "post credit notes with a route (config/accounting.yaml: credit notes to the ledger), "
                        f"or replay its dead letter (`{self._cmd('dlq', 'list')}`)",
                        invoice=str(n.get("number")),
                        invoiced=-amount,
                    )
                )
        for inv in voided:
            ref = self._reference(inv["number"])
            reversal = self._reference(f"{inv['number']}-RV")
            matched_refs |= {ref, reversal}
            net = sum((p.receivable for p in refs.get(ref, []) + refs.get(reversal, [])), Decimal(0))
            for p in refs.get(ref, []) + refs.get(reversal, []):
                posted[p.currency] += p.receivable
            if net:
                report.differences.append(
                    Difference(
                        NOT_REVERSED,
                        inv["currency"],
                        f"invoice {inv['number']} is voided in billing but its posting is not reversed "
                        f"(receivable {net})",
                        f"the reversal route ({self.reversal_route or 'none configured'}) posts "
                        f"{reversal}; replay its dead letter if it has one (`{self._cmd('dlq', 'list')}`)",
                        invoice=inv["number"],
                        posted=net,
                        route=self.reversal_route,
                    )
                )
        self._ledger_only(report, refs, matched_refs)
        report.invoiced = {c: v for c, v in invoiced.items()}
        report.posted = {c: v for c, v in posted.items()}
        self._revenue(report, finalized, refs)
        self._customers(report, finalized, refs)
        await self._advances(report, invoices, refs)

        won_ids = {o["Id"] for o in opps}
        for o in opps:
            billed = orders.get(o["Id"])
            if billed:
                self._check_writeback(report, o, billed, refs, writeback)
                continue
            if o["Id"] in also_billed:
                report.billed_with_another_deal += 1
                continue
            self._check_unbilled(report, o, billing)
        await self._check_not_won(report, orders, won_ids, credited, billing)
        report.seconds = time.monotonic() - t0
        return report

    def _reference(self, number: str) -> str:
        try:
            return check_reference(number, self.long_references)
        except PostingRuleError:
            return number

    def _route_state(
        self, track: _Track, key: str, route: str | None, what: str, currency: str | None, **ids: Any
    ) -> Difference | None:
        """Why ``key`` has not got through ``route``: its open dead letter, its pending message, or none
        read yet. None when the route delivered it."""
        dead = track.dead.get(key)
        if dead is not None:
            reason = dead.error_message.splitlines()[0][:300] if dead.error_message else dead.error_class
            mapping = any(h in reason.lower() for h in _MAPPING_HINTS)
            replay = self._cmd("dlq", "replay", str(dead.id))
            fix = (
                f"add the missing code or table entry the dead letter names, then `{replay}`"
                if mapping
                else f"fix the cause the dead letter names, then `{replay}`"
            )
            return Difference(
                MISSING_MAPPING if mapping else DEAD_LETTER,
                currency,
                f"{what}: dead letter {dead.id} on route {dead.route} ({dead.stage}): {reason}",
                fix,
                dead_letter=dead.id,
                route=dead.route,
                **ids,
            )
        message = track.latest.get(key)
        if message is not None and message.status == "pending":
            last = f"; last error: {message.last_error.splitlines()[0][:200]}" if message.last_error else ""
            return Difference(
                PENDING,
                currency,
                f"{what}: pending on route {route} (message {message.id}, {message.attempts} attempt(s){last})",
                f"none needed if the hub is running: it delivers it; otherwise `{self._run_cmd()}`",
                route=route,
                **ids,
            )
        if message is None:
            return Difference(
                NOT_READ,
                currency,
                f"{what}: route {route} has not read it yet",
                f"wait for the route's next poll (or its webhook), or `{self._run_cmd()}`",
                route=route,
                **ids,
            )
        return None

    def _check_posting(
        self,
        report: ThreeWayReport,
        inv: Mapping[str, Any],
        total: Decimal,
        postings: list[_Posting],
        ledger: _Track,
    ) -> None:
        number, ccy = str(inv["number"]), str(inv["currency"])
        deal = order_of(inv)
        if not postings:
            if self.ledger_route is None:
                report.differences.append(
                    Difference(
                        DELIVERED_NOT_FOUND,
                        ccy,
                        f"invoice {number} is finalized in billing but not posted in the ledger",
                        "no route posts invoices to the ledger in this config",
                        invoice=number,
                        deal=deal,
                        invoiced=total,
                    )
                )
                return
            found = self._route_state(
                ledger,
                number,
                self.ledger_route,
                f"invoice {number} is finalized in billing but not posted in the ledger",
                ccy,
                invoice=number,
                deal=deal,
                invoiced=total,
            )
            if found is None:
                message = ledger.latest[number]
                found = Difference(
                    DELIVERED_NOT_FOUND,
                    ccy,
                    f"invoice {number} was delivered to the ledger as {message.target_ref} but no document "
                    f"carries its reference {self._reference(number)}",
                    f"check document {message.target_ref} in SAP (reversed or archived?)",
                    invoice=number,
                    deal=deal,
                    invoiced=total,
                    document=message.target_ref,
                    route=self.ledger_route,
                )
            report.differences.append(found)
            return
        if len(postings) > 1:
            documents = ", ".join(p.document for p in postings)
            report.differences.append(
                Difference(
                    POSTED_TWICE,
                    ccy,
                    f"invoice {number} posted {len(postings)} times in the ledger ({documents})",
                    f"reverse all but the first of {documents} in SAP",
                    invoice=number,
                    deal=deal,
                    invoiced=total,
                    posted=sum((p.receivable for p in postings), Decimal(0)),
                    document=postings[-1].document,
                )
            )
            return
        got = postings[0].receivable
        if got != total or postings[0].currency != ccy:
            report.differences.append(
                Difference(
                    POSTED_AMOUNT,
                    ccy,
                    f"invoice {number}: billing says {total} {ccy}, the ledger's receivable "
                    f"{got} {postings[0].currency} (document {postings[0].document})",
                    f"reverse document {postings[0].document} in SAP and post the invoice again "
                    f"(`{self._cmd('dlq', 'list')}`, then replay)",
                    invoice=number,
                    deal=deal,
                    invoiced=total,
                    posted=got,
                    document=postings[0].document,
                )
            )

    def _ledger_only(
        self, report: ThreeWayReport, refs: Mapping[str, list[_Posting]], matched: set[str]
    ) -> None:
        # A cash document's reference is its document's number plus a suffix, cut to its tail: the
        # document's own reference may keep more of the number (a 16-character number is kept whole).
        tails = {"-".join(m.split("-")[i:]) for m in matched for i in range(len(m.split("-")))}
        for ref, postings in sorted(refs.items()):
            if ref in matched:
                continue
            for p in postings:
                if not p.receivable:
                    continue  # no receivable: not a billing document's posting
                base = _PAYMENT.sub("", ref)
                if (base != ref and base in tails) or _PAYMENT_RECORD.fullmatch(ref):
                    continue  # a payment's clearing or a credit note's refund: cash, not billing
                report.differences.append(
                    Difference(
                        LEDGER_ONLY,
                        p.currency,
                        f"document {p.document} (reference {ref or '-'}) books {p.receivable} {p.currency} on "
                        "the receivable but matches no invoice or credit note in billing",
                        f"check document {p.document} in SAP: posted by hand or for another system?",
                        document=p.document,
                        posted=p.receivable,
                    )
                )

    def _revenue(
        self, report: ThreeWayReport, invoices: list[dict[str, Any]], refs: Mapping[str, list[_Posting]]
    ) -> None:
        """Revenue per invoice and account: each fee by its product's family and the ledger's revenue
        table, against what the invoice's document booked. A fee on another account than the table says
        now is a mapping the posting did not have (or changed since)."""
        table, families = self.revenue_table, self.families
        billed: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        booked: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for inv in invoices:
            postings = refs.get(self._reference(inv["number"]), [])
            if len(postings) != 1 or inv.get("invoice_type") == "credit":
                continue  # not posted (reported above), or a wallet top-up: an advance, never revenue
            ccy = inv["currency"]
            want: dict[str, Decimal] = defaultdict(Decimal)
            for fee in inv.get("fees") or []:
                code = str((fee.get("item") or {}).get("code") or "")
                product = code.removesuffix(f"__{ccy}")
                family = str(families.get(product) or "")
                account = table.get(product) or table.get(family) or table.get("_default")
                cents = _amount(fee.get("amount_cents"), ccy)
                if isinstance(account, Mapping):
                    continue  # a split by weight: checked as a whole below
                want[str(account)] += cents
            coupons = int(inv.get("coupons_amount_cents") or 0)
            if coupons:
                want[str(table.get("_default"))] -= _amount(coupons, ccy)
            got = {a: v for a, v in postings[0].revenue.items() if v}
            want = {a: v for a, v in want.items() if v}
            for account, value in want.items():
                billed[ccy][account] += value
            for account, value in got.items():
                booked[ccy][account] += value
            if want != got and sum(want.values(), Decimal(0)) == sum(got.values(), Decimal(0)):
                report.differences.append(
                    Difference(
                        REVENUE_ACCOUNT,
                        ccy,
                        f"invoice {inv['number']}: revenue by the mapping {_accounts_text(want)}, booked "
                        f"{_accounts_text(got)} (document {postings[0].document})",
                        "a product or family missing from (or changed in) the revenue accounts table: add it "
                        "to mappings, then repost the document in SAP (reverse and post)",
                        invoice=inv["number"],
                        deal=order_of(inv),
                        document=postings[0].document,
                    )
                )
        report.revenue_billed = {c: dict(a) for c, a in billed.items()}
        report.revenue_posted = {c: dict(a) for c, a in booked.items()}

    def _customers(
        self, report: ThreeWayReport, invoices: list[dict[str, Any]], refs: Mapping[str, list[_Posting]]
    ) -> None:
        """Each posted invoice's receivable is on its customer's business partner (the hub's
        cross-reference of the billing customer)."""
        seen: set[tuple[str, str]] = set()
        customers = {str((i.get("customer") or {}).get("external_id")) for i in invoices}
        partners = self.store.xref_get_many("Customer", self.ledger, sorted(customers))
        for inv in invoices:
            postings = refs.get(self._reference(inv["number"]), [])
            if len(postings) != 1:
                continue
            customer = str((inv.get("customer") or {}).get("external_id"))
            seen.add((customer, inv["currency"]))
            partner = partners.get(customer)
            posted_to = postings[0].customers
            if partner is not None and posted_to and posted_to != {partner}:
                report.differences.append(
                    Difference(
                        WRONG_CUSTOMER,
                        inv["currency"],
                        f"invoice {inv['number']} of customer {customer} (partner {partner}) is on the "
                        f"receivable of {', '.join(sorted(posted_to))} (document {postings[0].document})",
                        f"reverse document {postings[0].document} in SAP and post it on partner {partner}",
                        invoice=inv["number"],
                        customer=customer,
                        document=postings[0].document,
                    )
                )
        report.customers = len(seen)

    async def _advances(
        self, report: ThreeWayReport, invoices: list[dict[str, Any]], refs: Mapping[str, list[_Posting]]
    ) -> None:
        """Per customer and currency, the ledger's customer advance equals the billing engine's wallets:
        their paid credits left (``remaining_amount_cents`` of the settled ``purchased`` transactions of
        traceable wallets, else the balance) plus the top-ups invoiced and not paid yet (the ledger books
        the advance with the top-up invoice, Lago credits the wallet when it is paid). The ledger's side:
        the advance items of every document, by the customer on its receivable."""
        if self.advance_account is None:
            return
        client = self.systems[self.billing].client
        customers = sorted({str((i.get("customer") or {}).get("external_id")) for i in invoices} - {"None"})
        partners = self.store.xref_get_many("Customer", self.ledger, customers)
        customer_of = {p: c for c, p in partners.items()}
        booked: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        documents: dict[tuple[str, str], list[str]] = defaultdict(list)
        seen: set[str] = set()
        for postings in refs.values():
            for p in postings:
                if not p.advance or p.document in seen:
                    continue
                seen.add(p.document)
                who = customer_of.get(next(iter(p.customers))) if len(p.customers) == 1 else None
                if who is None and not p.customers and len(p.assignments) == 1:
                    # Paid credits voided: no receivable line; the customer is the advance's assignment.
                    who = next(iter(p.assignments & set(customers)), None)
                key = (who or "?", p.currency)
                booked[key] += p.advance
                documents[key].append(p.document)
        gate = asyncio.Semaphore(8)

        async def wallets_of(customer: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
            async with gate:
                wallets = [w async for w in client.wallets(customer)]
                return [
                    (w, [t async for t in client.wallet_transactions(str(w["lago_id"]))]) for w in wallets
                ]

        held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        notes: dict[tuple[str, str], list[str]] = defaultdict(list)
        for customer, wallets in zip(
            customers, await asyncio.gather(*map(wallets_of, customers)), strict=True
        ):
            for wallet, transactions in wallets:
                ccy = str(wallet["currency"])
                key = (customer, ccy)
                traceable = any(t.get("remaining_amount_cents") is not None for t in transactions)
                purchased = [t for t in transactions if t.get("transaction_status") == "purchased"]
                pending = sum(_cents(t.get("amount"), ccy) for t in purchased if t.get("status") == "pending")
                if traceable:
                    paid = sum(int(t.get("remaining_amount_cents") or 0) for t in purchased
                               if t.get("status") == "settled")  # fmt: skip
                else:
                    paid = int(wallet.get("balance_cents") or 0)
                    if any(t.get("transaction_status") == "granted" for t in transactions):
                        notes[key].append(
                            f"wallet {wallet['lago_id']} is not traceable and holds granted credits: their "
                            "use is booked to the advance (Lago tells the granted part for traceable wallets)"
                        )
                held[key] += _amount(paid + pending, ccy)
                voided = [t for t in transactions if t.get("transaction_status") == "voided"
                          and not t.get("lago_credit_note_id")]  # fmt: skip
                if voided:
                    notes[key].append(
                        f"voided credits of wallet {wallet['lago_id']} "
                        f"({', '.join(str(t['lago_id']) for t in voided[:3])}) not posted (a route with "
                        "action wallet_credits.void, its dead letters)"
                    )
        for key in sorted(set(booked) | set(held)):
            customer, ccy = key
            got, want = booked.get(key, Decimal(0)), held.get(key, Decimal(0))
            if got == want:
                continue
            causes = notes.get(key) or [
                "a top-up invoice, a consuming invoice or a credit note of a top-up not posted yet "
                "(see the invoice differences), or a document posted on another customer"
            ]
            report.differences.append(
                Difference(
                    ADVANCE,
                    ccy,
                    f"customer {customer}: the ledger's advance ({self.advance_account}) holds {got} {ccy}, "
                    f"the wallets' paid credits {want} (documents {', '.join(documents.get(key, [])[:5]) or '-'})"
                    f"; likely: {'; '.join(causes)}",
                    "post what is missing (replay the dead letters above, or wait for the pending "
                    "deliveries); a difference that stays is a manual adjustment of the advance in SAP",
                    customer=customer,
                    invoiced=want,
                    posted=got,
                )
            )

    def _check_unbilled(self, report: ThreeWayReport, opp: Mapping[str, Any], billing: _Track) -> None:
        """A won deal with no invoice: billed and waiting for its first period, or stuck on the way."""
        deal, ccy = str(opp["Id"]), opp.get("CurrencyIsoCode")
        amount = Decimal(str(opp.get("Amount") or 0))
        message = billing.latest.get(deal)
        delivered = deal not in billing.dead and message is not None and message.status == "delivered"
        if delivered and json.loads(message.payload).get("status", "won") == "won":  # type: ignore[union-attr]
            report.awaiting_invoice += 1  # recurring lines only: nothing is due before the period ends
            return
        if self.billing_route is None:
            return
        found = self._route_state(
            billing,
            deal,
            self.billing_route,
            f"deal {deal} is won but not billed",
            ccy,
            deal=deal,
            won=amount,
        )
        if found is None:  # delivered while not won: the won version is read next
            found = Difference(
                NOT_READ,
                ccy,
                f"deal {deal} is won but its won version is not billed yet",
                f"wait for route {self.billing_route}'s next poll",
                deal=deal,
                won=amount,
                route=self.billing_route,
            )
        report.differences.append(found)

    def _check_writeback(
        self,
        report: ThreeWayReport,
        opp: Mapping[str, Any],
        billed: list[dict[str, Any]],
        refs: Mapping[str, list[_Posting]],
        writeback: list[_Track],
    ) -> None:
        """The deal shows one of its invoices, that invoice's amount and its ledger document."""
        fields = self._writeback_fields()
        if not self.writeback_routes or not fields["invoice_number"]:
            return
        deal = str(opp["Id"])
        number = opp.get(fields["invoice_number"])
        by_number = {str(i["number"]): i for i in billed}
        inv = by_number.get(str(number)) if number else None
        problem = None
        if inv is None:
            problem = f"deal {deal} shows {number or 'no invoice'}, not one of its finalized invoices"
            inv = billed[-1]
        else:
            # What was invoiced (the write-back's amount): prepaid credits applied settle it, as a payment.
            gross = inv.get("sub_total_including_taxes_amount_cents", inv["total_amount_cents"])
            total = _amount(gross, inv["currency"])
            amount_field = fields["invoiced_amount"]
            if amount_field and Decimal(str(opp.get(amount_field) or 0)) != total:
                problem = f"deal {deal} shows amount {opp.get(amount_field)}, invoice {number} is {total}"
            document_field = fields["accounting_document"]
            postings = refs.get(self._reference(str(number)), [])
            if document_field and len(postings) == 1 and problem is None:
                shown = str(opp.get(document_field) or "")
                if not shown.startswith(postings[0].document.split("/")[0]):
                    problem = (
                        f"deal {deal} shows ledger document {shown or '-'}, invoice {number} is posted as "
                        f"{postings[0].document}"
                    )
        if problem is None:
            return
        number = str(inv["number"])
        states = [
            self._route_state(track, number, route, problem, inv["currency"], deal=deal, invoice=number)
            for route, track in zip(self.writeback_routes, writeback, strict=True)
        ]
        # A dead letter or a pending write-back first; else the first route (the status) not read yet.
        found = next((f for f in states if f is not None and f.cause != NOT_READ), None) or states[0]
        if found is not None:
            report.differences.append(found)
            return
        report.differences.append(
            Difference(
                WRITEBACK,
                inv["currency"],
                problem,
                f"the write-back routes ({', '.join(self.writeback_routes)}) have not brought the deal up to "
                f"date: `{self._cmd('dlq', 'list')}`, or `{self._run_cmd()}`",
                deal=deal,
                invoice=number,
            )
        )

    async def _check_not_won(
        self,
        report: ThreeWayReport,
        orders: Mapping[str, list[dict[str, Any]]],
        won: set[str],
        credited: Mapping[str, Decimal],
        billing: _Track,
    ) -> None:
        """Invoices whose deal is not won (lost, reopened, deleted) or that no deal accounts for, unless a
        credit note covers them."""
        outstanding = {
            deal: [
                i
                for i in invoices
                # A lost deal's subscriptions end (their last period is billed, as delivered): what needs a
                # credit note is what was billed for the deal up front, its one-off invoice.
                if (i.get("invoice_type") or "one_off") == "one_off" or not deal
                # A wallet top-up (credit invoice) is a prepayment of the customer, billed for no deal.
                if i.get("invoice_type") != "credit"
                if credited.get(str(i.get("lago_id")), Decimal(0))
                < _amount(i["total_amount_cents"], i["currency"])
            ]
            for deal, invoices in orders.items()
            if deal not in won
        }
        outstanding = {d: i for d, i in outstanding.items() if i}
        if not outstanding:
            return
        asked = sorted(d for d in outstanding if d and re.fullmatch(r"[A-Za-z0-9]{15,18}", d))
        stages: dict[str, str] = {}
        for start in range(0, len(asked), 200):
            chunk = asked[start : start + 200]
            ids = ", ".join(f"'{d}'" for d in chunk)
            for row in await self._deals(f"Id IN ({ids})"):
                stages[str(row["Id"])] = str(row.get("StageName") or "")
        for deal, invoices in sorted(outstanding.items()):
            for inv in invoices:
                total = _amount(inv["total_amount_cents"], inv["currency"])
                if not deal:
                    report.differences.append(
                        Difference(
                            NO_DEAL,
                            inv["currency"],
                            f"invoice {inv['number']} ({total} {inv['currency']}) names no deal",
                            "an invoice the hub did not bill: check it in the billing engine",
                            invoice=inv["number"],
                            invoiced=total,
                        )
                    )
                    continue
                stage = stages.get(deal)
                state = f"is {stage}" if stage else "no longer exists"
                dead = billing.dead.get(deal)
                fix = f"issue a credit note on invoice {inv['number']} in the billing engine"
                if dead is not None:
                    fix += (
                        f" (or set on_reversal_invoice: credit_note on route {dead.route} and "
                        f"`{self._cmd('dlq', 'replay', str(dead.id))}`); then `{self._cmd('dlq', 'discard', str(dead.id))}`"
                    )
                else:
                    fix += ", or win the deal again in Salesforce if it was closed by mistake"
                report.differences.append(
                    Difference(
                        DEAL_NOT_WON,
                        inv["currency"],
                        f"invoice {inv['number']} ({total} {inv['currency']}) bills deal {deal}, which {state}",
                        fix,
                        deal=deal,
                        invoice=inv["number"],
                        invoiced=total,
                        dead_letter=dead.id if dead is not None else None,
                        route=dead.route if dead is not None else None,
                    )
                )


def _accounts(values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, Mapping):
            yield from (str(a) for a in value)
        elif value is not None:
            yield str(value)


def _accounts_text(amounts: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{a}: {v}" for a, v in sorted(amounts.items())) or "none"


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _order_ids(canonical: str | None, original: str | None, key: str | None) -> set[str]:
    """The deal a billing route's message or dead letter is about (canonical Order id, or the source
    record's Id)."""
    out: set[str] = set()
    for text in (canonical, original):
        data = _loads(text)
        if isinstance(data, dict):
            for name in ("id", "Id"):
                if isinstance(data.get(name), str):
                    out.add(data[name])
                    break
            details = data.get("details")
            if isinstance(details, dict) and isinstance(details.get("order"), str):
                out.add(details["order"])
    if key and key.startswith("order:"):
        out.add(key.split(":")[1])
    return out


def _invoice_ids(canonical: str | None, original: str | None, key: str | None) -> set[str]:
    """The invoice number a ledger or write-back route's message or dead letter is about."""
    out: set[str] = set()
    for text in (canonical, original):
        data = _loads(text)
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("invoice_number"), str):
            out.add(data["invoice_number"])
        for holder in (data, data.get("invoice"), data.get("object")):
            if isinstance(holder, dict) and isinstance(holder.get("number"), str):
                out.add(holder["number"])
    if key and key.startswith("invoice:"):
        out.add(key.removeprefix("invoice:"))
    return out


# ---------------------------------------------------------------------------------------------- entry points
async def reconcile(
    config: HubConfig,
    store: Store,
    systems: Mapping[str, Any],
    config_files: Sequence[Path | str] = (),
) -> ThreeWayReport:
    return await ThreeWay(config, store, systems, config_files=config_files).run()


def publish(
    metrics: Any, report: ThreeWayReport, previous: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """The report as the hub's metrics. A (currency, cause) counted last time and not now goes to 0, so a
    fixed difference shows as fixed; returns every label pair set, for the next run."""
    counts: dict[tuple[str, str], int] = dict.fromkeys(previous, 0)
    counts.update(report.by_cause())
    for (currency, cause), n in counts.items():
        metrics.reconcile_differences.labels(CHECK, currency, cause).set(n)
    metrics.reconcile_clean.labels(CHECK).set(1 if report.clean else 0)
    metrics.reconcile_last_run.labels(CHECK).set(time.time())
    return list(counts)


def open_systems(config: HubConfig, store: Store, base_dir: Path, names: Iterable[str]) -> dict[str, Any]:
    """Bindings of their own for ``names`` (own HTTP clients and pools), built as the hub builds them:
    for a reconciliation that runs beside a hub in another thread. Close them with :func:`close_systems`."""
    from lead2cash.systems import BindingContext, builder

    context = BindingContext(store, config.mappings, base_dir)
    return {n: builder(config.systems[n].type)(n, config.systems[n], context) for n in names}


async def close_systems(systems: Mapping[str, Any]) -> None:
    for system in systems.values():
        for name in ("aclose",):
            closer = getattr(system, name, None)
            if closer is not None:
                await closer()
        odata = getattr(system, "odata", None)
        if odata is not None:
            await odata.aclose()
        closer = getattr(system, "close", None)
        if closer is not None:
            closer()


def reconcile_sync(
    config: HubConfig, store: Store, base_dir: Path, config_files: Sequence[Path | str] = ()
) -> ThreeWayReport:
    """One reconciliation on systems of its own, in an event loop of its own (a thread beside a hub)."""

    async def main() -> ThreeWayReport:
        check = ThreeWay(config, store, {}, config_files=config_files)
        systems = open_systems(config, store, base_dir, (check.crm, check.billing, check.ledger))
        check.systems = systems
        try:
            return await check.run()
        finally:
            await close_systems(systems)

    return asyncio.run(main())
