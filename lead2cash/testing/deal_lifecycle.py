"""A deal's whole life, many deals at once: the driver and oracle of the deal-lifecycle property test
(``tests/e2e/test_deal_lifecycle_property.py``) and of ``bench/deal_lifecycle.py``.

Each :class:`DealPlan` is one sequence: a deal's first lines, then operations at ticks of a billing
calendar (won, lost, reopened, won again, deleted, recurring lines added, removed, repriced, their
quantity changed, every line item removed at once, the one-time line repriced; payments succeeded,
failed after success, refunded). Every deal has its own account, so deals are independent and one hub
run advances all of them: at each tick the Lago clock moves to the tick's day (billing the periods that
ended), every deal's operation of that tick is made in Salesforce (or Lago), and the hub is run until
idle (``run --until-idle``), once for all deals. Nothing waits for a deal to settle on its own.

The oracle (:class:`DealModel`) says what finance expects billed, per line, as spans of days at a price
per calendar month, under the documented rules (docs/billing-engines.md, item 5): a deal first won on
day t bills its recurring lines from t (its close date, set on winning); a change reaching Lago on day t
takes effect so that every day is billed once at the price in force: a removed line, a lost, reopened
or deleted deal, or a won deal whose line items were all removed, is billed up to and including t, a
repriced line (or quantity) at the old amount up to and including t and the new one from t + 1, a line
added to a won deal from t, a deal won again from t. Lago prorates a span of d days of a month of n days
as round_half_up(cents * d / n). A deal whose one-off invoice was issued and that is reversed afterwards
(lost, reopened, deleted, or every line item removed) is a "credit note is needed" dead letter (the
default policy); a won deal whose one-time line is repriced after its invoice was issued is a "changed
its one-time lines" dead letter, and nothing of that version is applied. The Opportunity shows one of
its deal's invoices as Lago holds it now.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lead2cash.demo.environment import LeadToCash

ROUTE = "won-opportunity-to-billing"
API = "/services/data/v62.0"
RECURRING = ("PLAT-BASE", "SEAT-ADD")  # monthly plans of the sandbox catalogue
ONE_TIME = "ONB-STD"
PRICES = (49900, 10000, 2750, 59900, 12345)  # cents per month
OPS = ("won", "lost", "reopen", "delete", "add", "remove", "reprice", "quantity", "pay", "clear", "onetime")
ONE_TIME_CENTS = 230000
PAYMENT_STATUS = {"pending": "Pending", "succeeded": "Paid", "failed": "Payment Failed"}


@dataclass(frozen=True)
class Op:
    tick: int
    kind: str
    arg: int  # picks a line, a price, a quantity or a payment branch


@dataclass(frozen=True)
class DealPlan:
    lines: tuple[tuple[str, int, int], ...]  # (product code, cents per unit, quantity)
    one_time: bool
    ops: tuple[Op, ...]


def first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def calendar_ticks(d0: date) -> tuple[list[date], date]:
    """The days operations happen on (month ends and starts, consecutive days), and the day after the last
    period billed (the first of a month)."""
    m1 = first_of_next_month(d0)
    m2 = first_of_next_month(m1)
    m3 = first_of_next_month(m2)
    one = timedelta(days=1)
    ticks = [d0, d0 + one, d0 + 9 * one, m1 - one, m1, m1 + one, m1 + 6 * one, m1 + 7 * one, m2 - one, m2,
             m2 + 10 * one]  # fmt: skip
    return ticks, m3


def prorated(cents: int, start: date, end: date) -> int:
    days_in_month = calendar.monthrange(start.year, start.month)[1]
    days = (end - start).days + 1
    if days == days_in_month:
        return cents
    return int((Decimal(cents) * days / days_in_month).quantize(Decimal(1), ROUND_HALF_UP))


def random_plan(rng: random.Random, ticks: int) -> DealPlan:
    """The bench's sequences (the property test draws the same shape with hypothesis)."""
    lines = tuple(
        (rng.choice(RECURRING), rng.choice(PRICES), rng.randint(1, 3)) for _ in range(rng.randint(1, 2))
    )
    ops = tuple(
        Op(rng.randrange(ticks), rng.choice(OPS), rng.randrange(10)) for _ in range(rng.randint(1, 7))
    )
    return DealPlan(lines, rng.random() < 0.3, ops)


@dataclass
class Line:
    code: str
    cents: int
    quantity: int
    sf_id: str = ""
    open_since: date | None = None  # the first day of the span billed now (None: not billed)
    spans: list[tuple[date, date | None, int]] = field(default_factory=list)

    @property
    def amount(self) -> int:
        return self.cents * self.quantity


@dataclass
class DealModel:
    """What finance expects of one deal, updated as its operations are made."""

    plan: DealPlan
    opp: str = ""
    account: str = ""
    status: str = "open"
    won_ever: bool = False
    invoice: bool = False  # its one-off invoice was issued
    credited: bool = False  # a credit note (a refund) exists for it: a reversal needs no other
    dead_letter: bool = False  # a "credit note is needed" dead letter is expected
    lines: list[Line] = field(default_factory=list)
    removed: list[Line] = field(default_factory=list)
    one_time_id: str = ""  # the one-time line's Salesforce id ("" when none, or removed)
    cleared: bool = False  # every line item was removed while the deal was won
    # The one-time line was repriced after its invoice was issued: every later version that bills is a
    # "changed its one-time lines" dead letter (a credit note and a new invoice are finance's), so the
    # driver makes no more line changes nor wins it again (reversals still end its subscriptions).
    frozen: bool = False
    reasons: set[str] = field(default_factory=set)  # other dead letter reasons expected

    def _start(self, line: Line, day: date) -> None:
        line.open_since = day

    def _stop(self, line: Line, day: date) -> None:
        if line.open_since is not None:
            line.spans.append((line.open_since, day, line.amount))
            line.open_since = None

    def apply(self, op: Op, day: date) -> dict[str, Any] | None:
        """The operation's effect on the model, and the change to make (None: not applicable now)."""
        if self.status == "deleted":
            return None
        live = self.lines
        if op.kind == "won":
            if self.status == "won" or self.frozen:
                return None
            self.status = "won"
            if not self.won_ever and self.plan.one_time:
                self.invoice = True
            self.won_ever = True
            for line in live:
                self._start(line, day)
            return {"stage": "Closed Won", "close": day}
        if op.kind in ("lost", "reopen", "delete"):
            if (op.kind == "lost" and self.status == "lost") or (
                op.kind == "reopen" and self.status == "open"
            ):
                return None
            if self.status == "won":
                for line in live:
                    self._stop(line, day)
            self.status = {"lost": "lost", "reopen": "open", "delete": "deleted"}[op.kind]
            if self.invoice and not self.credited:
                self.dead_letter = True
            if op.kind == "delete":
                return {"delete": True}
            return {"stage": "Closed Lost" if op.kind == "lost" else "Negotiation/Review"}
        if op.kind == "pay":
            return {"pay": op.arg} if self.won_ever else None
        if op.kind == "clear":
            # Every line item removed from a won deal: it ends as a lost deal does (billed up to and
            # including the day), its issued one-off invoice a "credit note is needed" dead letter.
            if self.status != "won" or not (live or self.one_time_id):
                return None
            ids = [line.sf_id for line in live] + ([self.one_time_id] if self.one_time_id else [])
            for line in live:
                self._stop(line, day)
            self.removed.extend(live)
            self.lines, self.one_time_id, self.cleared = [], "", True
            if self.invoice and not self.credited:
                self.dead_letter = True
            return {"clear": ids}
        if self.frozen or (op.kind == "onetime" and not self.one_time_id):
            return None
        # Line changes are versions of the deal too: one not won, with an issued invoice, is a reversal.
        if self.status != "won" and self.invoice and not self.credited:
            self.dead_letter = True
        if op.kind == "onetime":
            # The one-time line repriced: before the deal is won it is invoiced at the new price; after its
            # invoice was issued a won deal's version is refused whole (nothing else changed).
            if self.invoice:
                self.frozen = True
                if self.status == "won":
                    self.reasons.add("changed its one-time lines")
            cents = ONE_TIME_CENTS + 100 * (1 + op.arg)
            return {"onetime": self.one_time_id, "UnitPrice": str(Decimal(cents) / 100)}
        if op.kind == "add":
            if self.cleared and self.invoice:
                # Lines again on a deal whose one-time line went after its invoice: a new invoice and a
                # credit note are finance's call (a dead letter of its own); the oracle stops here.
                return None
            line = Line(RECURRING[op.arg % 2], PRICES[op.arg % len(PRICES)], 1 + op.arg % 3)
            self.lines.append(line)
            if self.status == "won":
                self._start(line, day)
            return {"add": line}
        if not live or (op.kind == "remove" and len(live) + int(self.plan.one_time) < 2):
            return None
        line = live[op.arg % len(live)]
        if op.kind == "remove":
            self._stop(line, day)
            self.lines.remove(line)
            self.removed.append(line)
            return {"remove": line}
        if op.kind == "reprice":
            cents = PRICES[op.arg % len(PRICES)]
            if cents == line.cents:
                cents = line.cents + 100
            change: dict[str, Any] = {"line": line, "UnitPrice": str(Decimal(cents) / 100)}
            new_cents, new_quantity = cents, line.quantity
        else:
            quantity = 1 + op.arg % 3
            if quantity == line.quantity:
                quantity += 1
            change = {"line": line, "Quantity": quantity}
            new_cents, new_quantity = line.cents, quantity
        if self.status == "won":
            self._stop(line, day)
            line.cents, line.quantity = new_cents, new_quantity
            self._start(line, day + timedelta(days=1))
        else:
            line.cents, line.quantity = new_cents, new_quantity
        return change

    def expected_fees(self, end: date) -> dict[str, list[tuple[date, date, int]]]:
        """Per Salesforce line id, every fee Lago must have invoiced by ``end`` (exclusive)."""
        out: dict[str, list[tuple[date, date, int]]] = {}
        for line in (*self.lines, *self.removed):
            spans = list(line.spans)
            if line.open_since is not None:
                spans.append((line.open_since, None, line.amount))
            fees = []
            for start, stop, cents in spans:
                last = min(stop or end - timedelta(days=1), end - timedelta(days=1))
                day = start
                while day <= last:
                    month_end = first_of_next_month(day) - timedelta(days=1)
                    piece = min(month_end, last)
                    fees.append((day, piece, prorated(cents, day, piece)))
                    day = piece + timedelta(days=1)
            if fees:
                out[line.sf_id] = sorted(fees)
        return out


class Salesforce:
    """Salesforce as salespeople change it, over the REST API (price book entries read once)."""

    def __init__(self, env: LeadToCash) -> None:
        self.env = env
        self.entries: dict[str, dict[str, Any]] = {}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.env.request(
            "salesforce", method, f"{API}{path}", json=body,
            headers={"Authorization": f"Bearer {self.env._token()}"},
        )  # fmt: skip
        if r.status_code >= 400:
            raise AssertionError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def entry(self, code: str) -> dict[str, Any]:
        if code not in self.entries:
            where = f"CurrencyIsoCode = 'EUR' AND ProductCode = '{code}'"  # a code of this module
            [self.entries[code]] = self.env.soql(f"SELECT Id, Pricebook2Id FROM PricebookEntry WHERE {where}")  # noqa: S608
        return self.entries[code]

    def line(self, opp: str, code: str, cents: int, quantity: int) -> str:
        body = {"OpportunityId": opp, "PricebookEntryId": self.entry(code)["Id"], "Quantity": quantity,
                "UnitPrice": str(Decimal(cents) / 100)}  # fmt: skip
        return str(self.call("POST", "/sobjects/OpportunityLineItem", body)["id"])

    def deal(self, model: DealModel, n: int, close: date) -> None:
        model.account = str(
            self.call("POST", "/sobjects/Account", {
                "Name": f"Lifecycle {n} GmbH", "BillingCity": "Berlin", "BillingCountry": "Germany",
                "BillingPostalCode": "10115", "CurrencyIsoCode": "EUR"})["id"]
        )  # fmt: skip
        model.opp = str(
            self.call("POST", "/sobjects/Opportunity", {
                "Name": f"Lifecycle {n}", "AccountId": model.account, "StageName": "Prospecting",
                "CloseDate": close.isoformat(), "CurrencyIsoCode": "EUR",
                "Pricebook2Id": self.entry(RECURRING[0])["Pricebook2Id"]})["id"]
        )  # fmt: skip
        model.lines = [Line(code, cents, quantity) for code, cents, quantity in model.plan.lines]
        for line in model.lines:
            line.sf_id = self.line(model.opp, line.code, line.cents, line.quantity)
        if model.plan.one_time:
            model.one_time_id = self.line(model.opp, ONE_TIME, ONE_TIME_CENTS, 1)

    def make(self, model: DealModel, change: dict[str, Any]) -> None:
        if "stage" in change:
            values: dict[str, Any] = {"StageName": change["stage"]}
            if "close" in change:
                values["CloseDate"] = change["close"].isoformat()
            self.call("PATCH", f"/sobjects/Opportunity/{model.opp}", values)
        elif "delete" in change:
            self.call("DELETE", f"/sobjects/Opportunity/{model.opp}")
        elif "add" in change:
            line = change["add"]
            line.sf_id = self.line(model.opp, line.code, line.cents, line.quantity)
        elif "onetime" in change:
            line_id = change["onetime"]
            self.call("PATCH", f"/sobjects/OpportunityLineItem/{line_id}", {"UnitPrice": change["UnitPrice"]})
        elif "clear" in change:
            for line_id in change["clear"]:
                self.call("DELETE", f"/sobjects/OpportunityLineItem/{line_id}")
        elif "remove" in change:
            self.call("DELETE", f"/sobjects/OpportunityLineItem/{change['remove'].sf_id}")
        else:
            line = change.pop("line")
            self.call("PATCH", f"/sobjects/OpportunityLineItem/{line.sf_id}", change)


class Lago:
    def __init__(self, env: LeadToCash) -> None:
        self.env = env
        self.headers = {"Authorization": f"Bearer {env.lago.api_key}"}

    def advance(self, day: date) -> None:
        r = self.env.http["lago"].post(
            "/__sandbox/lago/clock", json={"to": f"{day.isoformat()}T09:00:00Z"}, timeout=600
        )
        r.raise_for_status()

    def invoices(self, customer: str) -> list[dict[str, Any]]:
        r = self.env.request(
            "lago", "GET", "/api/v1/invoices", headers=self.headers,
            params={"external_customer_id": customer, "per_page": 100},
        )  # fmt: skip
        listed = [i for i in r.json()["invoices"] if i["status"] == "finalized"]
        return [self.invoice(i["lago_id"]) if "fees" not in i else i for i in listed]

    def invoice(self, lago_id: str) -> dict[str, Any]:
        return dict(
            self.env.request("lago", "GET", f"/api/v1/invoices/{lago_id}", headers=self.headers).json()[
                "invoice"
            ]
        )

    def credit_notes(self, invoice: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.env.request(
            "lago", "GET", "/api/v1/credit_notes", headers=self.headers,
            params={"invoice_number": invoice["number"], "per_page": 100},
        )  # fmt: skip
        return list(r.json()["credit_notes"])

    def pay(self, customer: str, branch: int) -> bool:
        """A payment event on the customer's latest invoice: a pending or failed one is paid; a paid one
        fails (a returned direct debit) or is refunded in full by a credit note."""
        invoices = self.invoices(customer)
        if not invoices:
            return False
        invoice = max(invoices, key=lambda i: (i["issuing_date"], i["number"]))
        status = invoice["payment_status"]
        if status != "succeeded":
            self._status(invoice, "succeeded")
        elif branch % 2 or self.credit_notes(invoice):
            self._status(invoice, "failed")
        else:
            fee = invoice["fees"][0]
            taxes = sum(int(t.get("amount_cents", 0)) for t in fee.get("applied_taxes") or [])
            body = {"credit_note": {"invoice_id": invoice["lago_id"], "reason": "product_unsatisfactory",
                                    "credit_amount_cents": 0, "refund_amount_cents": int(fee["amount_cents"]) + taxes,
                                    "items": [{"fee_id": fee["lago_id"], "amount_cents": int(fee["amount_cents"])}]}}  # fmt: skip
            r = self.env.http["lago"].post("/api/v1/credit_notes", json=body, headers=self.headers)
            r.raise_for_status()
            return bool(invoice["invoice_type"] == "one_off")
        return False

    def _status(self, invoice: dict[str, Any], status: str) -> None:
        r = self.env.http["lago"].put(
            f"/api/v1/invoices/{invoice['lago_id']}", json={"invoice": {"payment_status": status}},
            headers=self.headers,
        )  # fmt: skip
        r.raise_for_status()


@dataclass
class Outcome:
    deals: int
    ticks: int
    hub_runs: int
    seconds_in_hub: float
    problems: list[str]
    fees_checked: int
    dead_letters: int


def shown_status(lago: Lago, invoice: dict[str, Any]) -> str:
    """What the Opportunity must show for an invoice, worked out from Lago's documents on their own."""
    if invoice["status"] == "voided":
        return "Voided"
    if invoice.get("payment_dispute_lost_at"):
        return "Dispute Lost"
    notes = lago.credit_notes(invoice)
    if any(int(n.get("refund_amount_cents") or 0) > 0 and n.get("refund_status") != "failed"
           and n.get("credit_status") != "voided" for n in notes):  # fmt: skip
        return "Refunded"
    if invoice.get("payment_overdue") and invoice["payment_status"] == "pending":
        return "Overdue"
    return PAYMENT_STATUS[invoice["payment_status"]]


async def run(
    env: LeadToCash,
    plans: list[DealPlan],
    d0: date,
    *,
    lag_seconds: float = 2.1,
    on_tick: Callable[[int, date], None] | None = None,
) -> Outcome:
    """Every plan's deal through the billing calendar, one hub run per tick for all deals; then the
    oracle's checks. ``lag_seconds``: past the Salesforce source's safety lag on the org's clock."""
    loop = asyncio.get_running_loop()
    sf, lago = Salesforce(env), Lago(env)
    ticks, end = calendar_ticks(d0)
    models = [DealModel(plan) for plan in plans]
    lago.advance(d0)
    for n, model in enumerate(models):
        await loop.run_in_executor(None, sf.deal, model, n, d0)
    hub_seconds, runs = 0.0, 0

    async def hub_run() -> None:
        nonlocal hub_seconds, runs
        await asyncio.sleep(lag_seconds)
        started = loop.time()
        if not await env.hub.run_until_idle(timeout=900):
            raise AssertionError("the hub did not become idle within 900 s")
        hub_seconds += loop.time() - started
        runs += 1

    await hub_run()
    for i, day in enumerate(ticks):
        if i:
            await loop.run_in_executor(None, lago.advance, day)
        for model in models:
            for op in (o for o in model.plan.ops if o.tick == i):
                change = model.apply(op, day)
                if change is None:
                    continue
                if "pay" in change:
                    # A refund of the one-off invoice is a credit note: a later reversal needs no other.
                    if await loop.run_in_executor(None, lago.pay, model.account, change["pay"]):
                        model.credited = True
                else:
                    await loop.run_in_executor(None, sf.make, model, change)
                break  # one operation per deal and tick: the day each reaches Lago is known
        await hub_run()
        if on_tick is not None:
            on_tick(i, day)
    await loop.run_in_executor(None, lago.advance, end)
    await hub_run()
    problems, checked = await loop.run_in_executor(None, check, env, lago, models, end)
    dead = len(env.hub.store.dlq_list(ROUTE, limit=1_000_000))
    return Outcome(len(models), len(ticks), runs, hub_seconds, problems, checked, dead)


def check(env: LeadToCash, lago: Lago, models: list[DealModel], end: date) -> tuple[list[str], int]:
    problems: list[str] = []
    checked = 0
    fees: dict[str, dict[str, list[tuple[date, date, int]]]] = {}
    invoices_of: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        invoices_of[model.opp] = invoices = lago.invoices(model.account)
        per_line = fees.setdefault(model.opp, {})
        for invoice in invoices:
            for fee in invoice.get("fees") or []:
                external = str(fee.get("external_subscription_id") or "")
                if external.startswith(f"{model.opp}:"):
                    line = external.split(":", 1)[1].split("@v", 1)[0]
                    per_line.setdefault(line, []).append(
                        (date.fromisoformat(fee["from_date"][:10]), date.fromisoformat(fee["to_date"][:10]),
                         int(fee["amount_cents"]))
                    )  # fmt: skip
    dead: dict[str, list[str]] = {}
    for letter in env.hub.store.dlq_list(
        ROUTE, limit=1_000_000
    ):  # every one (the store lists 100 by default)
        # A mapping dead letter has no key yet: its Opportunity is the stored record's Id.
        key = letter.idempotency_key
        opp = key.split(":")[1] if key else str(json.loads(letter.original_payload or "{}").get("Id"))
        dead.setdefault(opp, []).append(letter.error_message or "")
    for model in models:
        want = model.expected_fees(end)
        got = {k: sorted(v) for k, v in fees[model.opp].items()}
        checked += sum(len(v) for v in want.values())
        if got != want:
            problems.append(f"deal {model.opp} {model.plan}: billed {got}, expected {want}")
        letters = dead.get(model.opp, [])
        expected = model.reasons | ({"credit note is needed"} if model.dead_letter else set())
        if (
            any(not any(r in m for r in expected) for m in letters)
            or any(not any(r in m for m in letters) for r in expected)
            or bool(letters) != bool(expected)
        ):
            problems.append(
                f"deal {model.opp} {model.plan}: dead letters {letters}, expected {sorted(expected)}"
            )
        if model.status == "deleted":
            continue
        fields = "Billing_Invoice_Number__c, Billing_Invoiced_Amount__c, Billing_Payment_Status__c"
        [shown] = env.soql(f"SELECT {fields} FROM Opportunity WHERE Id = '{model.opp}'")  # noqa: S608
        by_number = {str(i["number"]): i for i in invoices_of[model.opp]}
        number = shown["Billing_Invoice_Number__c"]
        if not by_number:
            if number:
                problems.append(f"deal {model.opp}: shows invoice {number} but has none")
            continue
        shown_invoice = by_number.get(number)
        if shown_invoice is None:
            problems.append(
                f"deal {model.opp}: shows {number!r}, not one of its invoices {sorted(by_number)}"
            )
            continue
        total = Decimal(int(shown_invoice["sub_total_including_taxes_amount_cents"])) / 100
        status = shown_status(lago, shown_invoice)
        if (
            Decimal(str(shown["Billing_Invoiced_Amount__c"])) != total
            or shown["Billing_Payment_Status__c"] != status
        ):
            problems.append(f"deal {model.opp}: shows {shown}, Lago holds {number} {total} {status}")
    return problems, checked
