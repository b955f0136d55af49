"""Lago binding: the Lago connector paired with the Lago adapter into the hub's sources and targets.

Target actions:
- ``bill_order`` (Order): customer upsert, subscriptions for recurring lines, a one-off invoice for one-time
  lines; later versions of a billed order are reconciled (subscriptions replaced or terminated) or
  dead-lettered with the reason when only a person can decide (a finalized invoice needs a credit note).
- ``upsert_customer`` (Customer).
- ``send_usage`` (UsageEvent): batches of up to 100 events to ``POST /events/batch`` (``usage.py``).

Source objects (``WebhookSource``s; with ``trigger: {type: webhook, poll_fallback: 60s}`` they are also
polled): ``invoices`` (``invoice.*`` events), ``credit_notes`` (``credit_note.*``),
``wallet_transactions`` (``wallet_transaction.created|updated``, webhooks only: Lago lists transactions
per wallet, with no listing to poll) and ``payments``
(``payment.succeeded``; Lago sends no webhook for a manual payment: a partial one comes by the poll of
``GET /payments``, and ``invoice.payment_status_updated`` has the invoice's payments read at once, so
the payment that settles it does not wait for the poll).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel

from lead2cash.adapters import lago as adapter
from lead2cash.canonical_model import Customer, Order
from lead2cash.config.errors import ConfigProblems
from lead2cash.config.lago import LagoSystemConfig
from lead2cash.connectors.lago import LagoClient, WebhookVerifier, loads
from lead2cash.errors import DeliveryError, PermanentError
from lead2cash.pacing import delivery_in_doubt, fence
from lead2cash.routes.interfaces import SourceBatch, WebhookDelivery
from lead2cash.store import Store, XrefWrite
from lead2cash.systems import BindingContext
from lead2cash.systems.lago.usage import UsageTarget

log = structlog.get_logger("lead2cash.bindings.lago")

XREF_SYSTEM = "lago"
INVOICE_EVENTS = frozenset(
    {
        "invoice.created",
        "invoice.one_off_created",
        "invoice.drafted",
        "invoice.generated",
        "invoice.payment_status_updated",
        "invoice.voided",
        "invoice.paid_credit_added",
        "invoice.payment_overdue",
        "invoice.payment_dispute_lost",
    }
)
CREDIT_NOTE_EVENTS = frozenset({"credit_note.created", "credit_note.generated", "credit_note.refund_failure"})
WALLET_TRANSACTION_EVENTS = frozenset({"wallet_transaction.created", "wallet_transaction.updated"})
# An invoice's payment status changes when its payments settle it (a manual payment sends nothing
# else): the payments source then reads that invoice's payments at once.
PAYMENT_EVENTS = frozenset({"payment.succeeded", "invoice.payment_status_updated"})
SOURCE_OBJECTS = ("invoices", "credit_notes", "wallet_transactions", "payments")
# Invoice events sent when Lago makes the invoice, before any credit note on it can exist.
BIRTH_EVENTS = frozenset({"invoice.created", "invoice.one_off_created", "invoice.drafted"})
# bill_order's policies for a billed deal that is lost or reopened, and for an amendment of days already
# billed (defaults in LagoSystemConfig).
REVERSAL_POLICIES = {
    "on_reversal_subscriptions": ("immediately", "period_end"),
    "on_reversal_invoice": ("dead_letter", "credit_note"),
    "on_backdated_amendment": ("prorate", "dead_letter"),
}
BILL_ORDER_OPTIONS = frozenset(
    {"plan_table", "addon_table", "subscriptions", "billing_time", *REVERSAL_POLICIES}
)
# What an invoice source with ``refunds: true`` also takes: a refund issued, a refund the provider declined
# (Lago sends nothing when a refund succeeds; an issued refund already shows).
REFUND_EVENTS = {
    "credit_note.created": "credit_note",
    "credit_note.refund_failure": "credit_note_payment_provider_refund_error",
}


def build(name: str, config: LagoSystemConfig, context: BindingContext) -> LagoBinding:
    return LagoBinding(name, config, context)


class LagoBinding:
    def __init__(self, name: str, config: LagoSystemConfig, context: BindingContext) -> None:
        self.name = name
        self.config = config
        self.context = context
        self.client = LagoClient(
            config.base_url,
            config.api_key.get_secret_value(),
            ca_bundle=self._path(config.ca_bundle),
            timeout=config.timeout,
            max_connections=config.max_connections,
            retries=config.retries,
            max_inline_wait=config.max_inline_wait,
            rate_limit=config.rate_limit,
        )
        self.verifier: WebhookVerifier | None = None
        hook = config.webhook
        if hook is not None:
            self.verifier = WebhookVerifier(
                hook.signature,
                hmac_key=hook.hmac_key.get_secret_value() if hook.hmac_key else None,
                client=self.client,
                public_key_url=hook.public_key_url or f"{config.base_url}/webhooks/json_public_key",
                public_key_ttl=hook.public_key_ttl,
                issuer=hook.issuer,
            )
        self._consumers: set[str] = set()
        self.known_codes: set[tuple[str, str]] = set()  # ("plan" | "add-on", code) seen in Lago
        # Customers whose holdings in Lago this process has seen (created by it, or read whole), each
        # with the orders Lago held for it then: the order target skips its reads for any other order.
        self.vouched: dict[str, frozenset[str]] = {}
        self._customers_before: int | None = None
        self._census: asyncio.Future[int] | None = None

    async def customers_before(self) -> int:
        """The highest customer ``sequential_id`` in Lago when this process first asked (read once, by
        one task the deliveries share: the first and last page of the listing, whichever order the
        engine lists in)."""
        if self._customers_before is None:
            census = self._census
            if census is None or (census.done() and census.exception() is not None):
                census = self._census = asyncio.ensure_future(self._count_customers())
            self._customers_before = await asyncio.shield(census)
        return self._customers_before

    async def _count_customers(self) -> int:
        path = "/customers"
        first = await self.client.request("GET", path, "customers.list", params={"per_page": 1})
        numbers = [int(c.get("sequential_id") or 0) for c in first.get("customers") or []]
        last = int((first.get("meta") or {}).get("total_pages") or 1)
        if last > 1:
            tail = await self.client.request(
                "GET", path, "customers.list", params={"per_page": 1, "page": last}
            )
            numbers += [int(c.get("sequential_id") or 0) for c in tail.get("customers") or []]
        log.info("lago customers counted", system=self.name, sequential_id=max(numbers, default=0))
        return max(numbers, default=0)

    async def aclose(self) -> None:
        """Close the HTTP sessions of the running loop (the hub calls this when it stops, if it can)."""
        await self.client.aclose()

    def _path(self, value: str | None) -> str | None:
        if value is None:
            return None
        from pathlib import Path

        path = Path(value)
        return str(path if path.is_absolute() else self.context.base_dir / path)

    def _table(self, options: Mapping[str, Any], key: str) -> tuple[str | None, Mapping[str, Any] | None]:
        table_name = options.get(key, getattr(self.config, key))
        if table_name is None:
            return None, None
        table = self.context.tables.get(str(table_name))
        if table is None:
            known = ", ".join(sorted(self.context.tables)) or "none"
            raise ConfigProblems([(("options", key), f"no mapping table {table_name!r} (known: {known})")])
        return str(table_name), table

    def source(self, object: str, options: Mapping[str, Any]) -> LagoEventSource:
        consumer = str(options.get("consumer", object))
        if consumer in self._consumers:
            raise ConfigProblems(
                [
                    (
                        ("options", "consumer"),
                        f"another route already reads {object!r} as {consumer!r}: "
                        "give each route its own source.options.consumer",
                    )
                ]
            )
        if object not in SOURCE_OBJECTS:
            raise ConfigProblems(
                [(("object",), f"Lago source objects are {', '.join(SOURCE_OBJECTS)}; not {object!r}")]
            )
        refunds = options.get("refunds", False)
        if not isinstance(refunds, bool) or (refunds and object != "invoices"):
            raise ConfigProblems([(("options", "refunds"), "true or false, for the invoices object only")])
        self._consumers.add(consumer)
        events = frozenset(options.get("webhook_types") or ())
        if object == "invoices":
            if refunds:
                return InvoiceSource(
                    self, consumer, events or INVOICE_EVENTS | set(REFUND_EVENTS), refunds=True
                )
            return InvoiceSource(self, consumer, events or INVOICE_EVENTS)
        if object == "wallet_transactions":
            return WalletTransactionSource(self, consumer, events or WALLET_TRANSACTION_EVENTS)
        if object == "payments":
            return PaymentSource(self, consumer, events or PAYMENT_EVENTS)
        return CreditNoteSource(self, consumer, events or CREDIT_NOTE_EVENTS)

    def target(self, action: str, options: Mapping[str, Any]) -> OrderTarget | CustomerTarget | UsageTarget:
        if action == "send_usage":
            return UsageTarget.from_options(f"{self.name}/events", self.client, options)
        if action == "bill_order":
            unknown = set(options) - BILL_ORDER_OPTIONS
            if unknown:
                known = ", ".join(sorted(BILL_ORDER_OPTIONS))
                raise ConfigProblems(
                    [(("options", u), f"unknown option; known: {known}") for u in sorted(unknown)]
                )
            plan_name, plan_table = self._table(options, "plan_table")
            addon_name, addon_table = self._table(options, "addon_table")
            grouping = options.get("subscriptions", self.config.subscriptions)
            if grouping not in ("per_line", "per_plan"):
                raise ConfigProblems([(("options", "subscriptions"), "expected per_line or per_plan")])
            billing_time = options.get("billing_time", self.config.billing_time)
            policies = {}
            for option, allowed in REVERSAL_POLICIES.items():
                value = options.get(option, getattr(self.config, option))
                if value not in allowed:
                    raise ConfigProblems([(("options", option), f"expected one of {', '.join(allowed)}")])
                policies[option] = str(value)
            return OrderTarget(
                self,
                plan_name,
                plan_table,
                addon_name,
                addon_table,
                str(grouping),
                str(billing_time),
                subscriptions_policy=policies["on_reversal_subscriptions"],
                invoice_policy=policies["on_reversal_invoice"],
                backdated_policy=policies["on_backdated_amendment"],
            )
        if action == "upsert_customer":
            return CustomerTarget(self)
        raise ConfigProblems(
            [
                (
                    ("action",),
                    f"Lago target actions are bill_order, upsert_customer, send_usage; not {action!r}",
                )
            ]
        )

    # ------------------------------------------------------------------ shared helpers
    @property
    def store(self) -> Store | None:
        return self.context.store

    def customer_external_id(self, customer: Customer) -> str:
        """Lago's external_id of a customer: the one already on the cross-reference map, else the
        Salesforce Account id, else the canonical id."""
        if self.store is not None:
            known = self.store.xref_get("Customer", customer.id, XREF_SYSTEM, stable=True)
            if known:
                return known
        return customer.refs.get("salesforce") or customer.id

    def remember(self, learned: Sequence[tuple[str, str, str]]) -> None:
        """Write (entity type, canonical id, Lago id) cross-references in one transaction."""
        if self.store is not None and learned:
            # A subscription's Lago id moves to "<key>@v<n>" when it is replaced; the rest never change.
            self.store.xref_put_many(
                [XrefWrite(t, c, XREF_SYSTEM, v) for t, c, v in learned],
                stable=lambda w: w.entity_type != "Subscription",
            )

    def check_currency(self, currency: str, what: str) -> None:
        if currency in self.config.unsupported_currencies:
            raise PermanentError(
                f"{what}: currency {currency} is not supported by this Lago (unsupported_currencies)",
                details={"currency": currency},
            )


def _entity(entity: BaseModel, cls: type[Any]) -> Any:
    if not isinstance(entity, cls):
        raise PermanentError(f"this Lago target takes {cls.__name__} entities, not {type(entity).__name__}")
    return entity


# ---------------------------------------------------------------------------------------------- targets
class CustomerTarget:
    def __init__(self, binding: LagoBinding) -> None:
        self.binding = binding
        self.name = f"{binding.name}/upsert_customer"

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        customer: Customer = _entity(entity, Customer)
        currency = customer.currency
        body = adapter.customer_payload(customer, self.binding.customer_external_id(customer), currency or "")
        if currency is None:
            del body["currency"]
        else:
            self.binding.check_currency(currency, f"customer {customer.id}")
        data = await self.binding.client.upsert_customer(body)
        self.binding.remember([("Customer", customer.id, body["external_id"])])
        return str(data.get("lago_id") or body["external_id"])

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return None  # the upsert by external_id is idempotent: resending is the lookup


class OrderTarget:
    """Reconciles Lago with an order: what exists is compared with what the order asks for, and only
    the difference is sent. Every step is keyed (customer and subscriptions by external_id, the invoice
    by its metadata or, before that is written, by the order marker in its fee descriptions), so a
    repeated delivery finds its earlier effects instead of duplicating them."""

    def __init__(
        self,
        binding: LagoBinding,
        plan_table_name: str | None,
        plan_table: Mapping[str, Any] | None,
        addon_table_name: str | None,
        addon_table: Mapping[str, Any] | None,
        grouping: str,
        billing_time: str,
        *,
        subscriptions_policy: str = "immediately",
        invoice_policy: str = "dead_letter",
        backdated_policy: str = "prorate",
    ) -> None:
        self.binding = binding
        self.backdated_policy = backdated_policy
        self.subscriptions_policy = subscriptions_policy
        self.invoice_policy = invoice_policy
        self.client = binding.client
        self.name = f"{binding.name}/bill_order"
        self.plan_table_name, self.plan_table = plan_table_name, plan_table
        self.addon_table_name, self.addon_table = addon_table_name, addon_table
        self.grouping = grouping
        self.billing_time = billing_time

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        ref = await self._reconcile(_entity(entity, Order), key, apply=True)
        assert ref is not None
        return ref

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        """The effect of ``key`` is complete when Lago already holds everything the order asks for."""
        return await self._reconcile(_entity(entity, Order), key, apply=False)

    def _plan(self, order: Order) -> tuple[adapter.BillingPlan, str, bool]:
        """What the order asks Lago for, the customer's external id there, and whether it is won."""
        self.binding.check_currency(order.currency, f"order {order.id}")
        plan = adapter.billing_plan(
            order,
            plan_table=self.plan_table,
            plan_table_name=self.plan_table_name,
            addon_table=self.addon_table,
            addon_table_name=self.addon_table_name,
            grouping=self.grouping,
        )
        # A won deal whose line items were all removed bills nothing more: it ends as a lost deal does.
        bills = order.status.value == "won" and bool(order.lines)
        return plan, self.binding.customer_external_id(order.customer), bills

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        """What a first delivery of ``key`` sends to Lago, without I/O (``lead2cash test``): the customer
        upsert, one subscription per recurring line and the one-off invoice with its metadata."""
        order: Order = _entity(entity, Order)
        plan, external_id, won = self._plan(order)
        return {
            "customer": adapter.customer_payload(order.customer, external_id, order.currency)
            if won
            else None,
            "subscriptions": [s.payload(external_id, s.key, self.billing_time) for s in plan.subscriptions],
            "one_off_invoice": adapter.one_off_invoice_payload(external_id, plan) if plan.fees else None,
            "invoice_metadata": (
                {adapter.METADATA_KEY: key, adapter.METADATA_ORDER: order.id} if plan.fees else None
            ),
        }

    async def _reconcile(self, order: Order, key: str, *, apply: bool) -> str | None:
        plan, external_id, won = self._plan(order)
        emptied = order.status.value == "won" and not order.lines
        if not won and apply:
            seen = self.binding.vouched.get(external_id)
            if seen is not None and order.id not in seen and self._first_delivery(order):
                if emptied:
                    raise self._nothing_to_bill(order)
                return self._ref(external_id, {}, None)  # never billed, and Lago held nothing of it
        if not won and not self._customer_known(order):
            if emptied:
                raise self._nothing_to_bill(order)
            # Lost, open or deleted, and no deal of this customer was ever billed here: nothing to end,
            # and no call (the billing route reads every opportunity, won or not).
            return self._ref(external_id, {}, None)
        customer_body = adapter.customer_payload(order.customer, external_id, order.currency)
        learned: list[tuple[str, str, str]] = []  # cross-references, written together at the end

        # Independent calls go out together: a deal costs three round trips, not one per call.
        one_offs: list[dict[str, Any]] = []  # the customer's one-off invoices, as the reads listed them

        def reads() -> tuple[Awaitable[Any], Awaitable[Any]]:
            return self._find_invoice(order, external_id, one_offs), self.client.list_subscriptions(
                external_id, ("active", "pending", "terminated")
            )

        vouched = False  # the ledger vouches that Lago holds nothing of this order: no reads
        if won and apply:
            learned.append(("Customer", order.customer.id, external_id))
            first = self._first_delivery(order)
            seen = self.binding.vouched.get(external_id)
            if first and (seen is None or order.id not in seen):
                if seen is None:
                    await self.binding.customers_before()  # counted before this process creates any
                # The upsert's answer tells whether this process created the customer; a customer it
                # has seen whole needs no upsert answer. The catalogue check goes along.
                created, _ = await _together(
                    self.client.upsert_customer(customer_body), self._check_catalog(order, plan)
                )
                if seen is not None or await self._created_here(created):
                    self._vouch(external_id, frozenset() if seen is None else seen)
                    vouched = True
                    invoice, listed = None, []
                else:
                    invoice, listed = await _together(*reads())
            else:
                # The reads need not wait for the upsert: it touches neither invoices nor subscriptions,
                # and Lago lists none (200, empty) for a customer it does not have yet. The catalogue
                # check goes with them: it only has to come before the first subscription or invoice.
                _, invoice, listed, _ = await _together(
                    self.client.upsert_customer(customer_body), *reads(), self._check_catalog(order, plan)
                )
            if not vouched:
                self._vouch_read(external_id, listed, one_offs)
        elif won and not await self._customer_matches(customer_body):
            return None
        else:
            invoice, listed = await _together(*reads())
        if invoice is not None and won:
            self._check_invoice(order, plan, invoice)

        prefix = f"{order.id}:"
        ours = [s for s in listed if _belongs(str(s.get("external_id", "")), prefix)]
        current = {
            adapter.subscription_base(s["external_id"]): s
            for s in ours
            if s.get("status") in ("active", "pending")
        }
        ended: dict[str, date] = {}  # spec key -> the last day its terminated subscriptions were billed for
        previous: dict[str, Mapping[str, Any]] = {}  # spec key -> its latest subscription (terms before)
        for s in ours:
            day = _day(s.get("terminated_at")) if s.get("status") == "terminated" else None
            if day is not None:
                base = adapter.subscription_base(s["external_id"])
                ended[base] = max(day, ended.get(base, day))
                if base not in current and (base not in previous or day >= ended[base]):
                    previous[base] = s
        previous.update(current)
        wanted = {spec.key: spec for spec in plan.subscriptions}
        revived: list[Mapping[str, Any]] = []  # won again before its period_end reversal took effect
        if won:
            stale = [s for k, s in current.items() if k not in wanted or not wanted[k].matches(s)]
            revived = [s for k, s in current.items() if k in wanted and s not in stale and s.get("ending_at")]
        else:
            stale = [s for s in current.values() if not self._ending(s)]
        missing = [spec for k, spec in wanted.items() if k not in current or not spec.matches(current[k])]
        reversal = None if won or invoice is None else await self._credit_notes_of(invoice)
        invoice_done = not plan.fees or (
            invoice is not None and adapter.metadata_value(invoice, adapter.METADATA_ORDER) == order.id
        )
        if not won:
            invoice_done = reversal is None or bool(reversal)
        if not apply:
            if stale or missing or revived or not invoice_done or (emptied and not ours and invoice is None):
                return None
            return self._ref(external_id, wanted, invoice)

        if not won:
            if emptied and not ours and invoice is None:
                # Won with no line items, and nothing of it was ever billed: a deal to look at, not silence.
                raise self._nothing_to_bill(order)
            await self._end(order, stale)
            if reversal is not None and not reversal:
                assert invoice is not None
                await self._reverse_invoice(order, invoice)
            return self._ref(external_id, wanted, invoice)

        # A changed price or plan replaces the subscription. Lago bills a terminated subscription up to
        # and including its termination day, so the replacement starts the next day: no day is billed
        # twice and no period already billed is billed again.
        terminated = await _together(
            *(
                self.client.terminate_subscription(s["external_id"], str(s.get("status") or "active"))
                for s in stale
            )
        )
        for sub, done in zip(stale, terminated, strict=True):
            log.info("lago subscription terminated", order=order.id, external_id=sub["external_id"])
            day = _day((done or {}).get("terminated_at")) if sub.get("status") == "active" else None
            if day is not None:
                base = adapter.subscription_base(sub["external_id"])
                ended[base] = max(day, ended.get(base, day))
        billed = self._billed_before(list(dict.fromkeys([*wanted, *current, *ended])))
        # Billed before (Lago holds a subscription or the one-off invoice of the order): a line it did not
        # have is an amendment. Lago's holdings, not the store's memory, say so.
        amended = bool(ours) or invoice is not None  # found by its metadata or its fees' marker
        since = order.status_since.date() if order.status_since is not None else None
        # Subscriptions under new ids and a one-off invoice are not idempotent in Lago (found by the reads
        # above): right before they go, make sure no other worker took the delivery over meanwhile.
        await fence()
        # Written ahead of the writes: any later delivery of this order, whatever becomes of this one (a
        # dead letter after the invoice went, another worker's next version), reconciles by reads.
        self.binding.remember([(ORDER_MARK, order.id, order.id)])
        creates: list[Awaitable[Any]] = [
            self.client.request(
                "PUT",
                f"/subscriptions/{_quote(str(s['external_id']))}",
                "subscriptions.update",
                body={"subscription": {"ending_at": None}},
            )
            for s in revived
        ]
        made = [str(s["external_id"]) for s in revived]  # what each call of ``creates`` is about
        backdated: list[adapter.BackdatedChange] = []
        for spec in missing:
            # A subscription under this key existed before (now terminated): its replacement gets a new
            # external_id, so Lago's history keeps both. It starts the day after the last day billed, and
            # a deal won again not before the day it was won again (its last stage change).
            replaced = spec.key in current or spec.key in billed or spec.key in ended
            sub_id = f"{spec.key}@v{order.version}" if replaced else spec.key
            last = ended.get(spec.key)
            start = max(spec.start, last + timedelta(days=1)) if last is not None else spec.start
            if replaced and since is not None:
                start = max(start, since)
            before = previous.get(spec.key)
            if replaced and spec.dated and last is not None and before is not None:
                change = adapter.backdated_change(spec, before, last, self.billing_time)
                if change is not None:
                    backdated.append(change)
            body = replace(spec, start=start).payload(external_id, sub_id, self.billing_time)
            if amended and not replaced and not spec.dated:
                # A line added to a deal already billed is billed from the day it reaches Lago: no
                # subscription_at, Lago starts it now. Dated at the order's date instead, Lago would bill
                # its current period from the period's start, days before the line existed.
                del body["subscription_at"]
            creates.append(self.client.create_subscription(body))
            made.append(sub_id)
            learned.append(("Subscription", spec.key, sub_id))
        learned += [
            ("Subscription", k, str(s["external_id"]))
            for k, s in current.items()
            if k in wanted and s not in stale
        ]
        # Subscriptions first, the one-off invoice only once they all stand: a subscription Lago refuses
        # at its call (after the catalogue check passed) must not leave an issued invoice behind that
        # makes the deal look fully billed. What was made before a refusal is named in the dead letter.
        ended_now = [str(s["external_id"]) for s in stale]
        issued = "none needed" if not plan.fees else "issued before" if invoice is not None else "not issued"
        await self._partly(order, _gather(creates), made, [], ended_now, issued)
        if plan.fees and invoice is None:
            payload = adapter.one_off_invoice_payload(external_id, plan)
            step = self.client.create_one_off_invoice(payload)
            invoice = await self._partly(order, step, [], made, ended_now, "refused")
        if plan.fees:
            assert invoice is not None
            # A first delivery the ledger vouches for leaves the invoice marked by its fees' descriptions
            # only (one call less); a reconciling one writes the metadata (the lookup's fast way).
            if not vouched and adapter.metadata_value(invoice, adapter.METADATA_ORDER) != order.id:
                pairs = {adapter.METADATA_KEY: key, adapter.METADATA_ORDER: order.id}
                invoice = await self.client.update_invoice(
                    str(invoice["lago_id"]), {"metadata": adapter.metadata_update(invoice, pairs)}
                )
            learned.append(("Order", order.id, str(invoice["lago_id"])))
        self.binding.remember(learned)
        if backdated:
            self._backdated(order, backdated)
        return self._ref(external_id, wanted, invoice)

    def _first_delivery(self, order: Order) -> bool:
        """No attempt of this delivery may have reached Lago (the ledger shows none in doubt) and this
        store billed no version of the order before: Lago holds nothing of it unless another history
        made it (a store restored from a backup, or lost), which ``_created_here`` and the reads rule out
        per customer. Without a store nothing is known."""
        store = self.binding.store
        if store is None or delivery_in_doubt.get():
            return False
        return store.xref_get(ORDER_MARK, order.id, XREF_SYSTEM) is None

    async def _created_here(self, customer: Mapping[str, Any]) -> bool:
        """Did Lago create this customer after this process first asked (its ``sequential_id`` is above
        every customer's then)? Then nothing of an earlier history (a backup's lost future, an older
        store) can be billed to it."""
        number = customer.get("sequential_id")
        if not isinstance(number, int) or isinstance(number, bool):
            return False
        return number > await self.binding.customers_before()

    def _vouch(self, external_id: str, orders: frozenset[str]) -> None:
        vouched = self.binding.vouched
        if len(vouched) >= VOUCHED_MAX and external_id not in vouched:
            vouched.clear()  # forgetting costs reads, never safety
        vouched[external_id] = orders

    def _vouch_read(
        self,
        external_id: str,
        listed: Sequence[Mapping[str, Any]],
        invoices: Sequence[Mapping[str, Any]],
    ) -> None:
        """After a reconciling read: the orders Lago holds subscriptions and one-off invoices of."""
        orders = {str(s.get("external_id", "")).split(":", 1)[0] for s in listed}
        for item in invoices:
            owner = adapter.one_off_order(item)
            if owner is not None:
                orders.add(owner)
            elif "fees" not in item:
                # Not read whole (another currency's): its order is unknown, so read again next time.
                self.binding.vouched.pop(external_id, None)
                return
            # else read whole and marked by no order: not the hub's, it can pass for none of its orders
        self._vouch(external_id, frozenset(orders))

    def _backdated(self, order: Order, changes: list[adapter.BackdatedChange]) -> None:
        """A changed line whose new terms are effective before the last day already billed: the new terms
        bill from the day after the change reached Lago (done above) and the days already billed stay as
        billed. Never silent: a warning (``prorate``) or, after the change is made, a dead letter naming
        the difference for finance (``dead_letter``); replayed, it passes (Lago holds what the order asks)."""
        details: dict[str, Any] = {"order": order.id, "policy": self.backdated_policy}
        for i, c in enumerate(changes):
            details[f"line{i}"] = c.describe()
        if self.backdated_policy == "dead_letter":
            raise PermanentError(
                f"order {order.id}: backdated amendment needs review: "
                + "; ".join(c.describe() for c in changes)
                + ". The new terms bill from the day after the change reached Lago; a credit note or an "
                "additional charge for the difference is finance's (on_backdated_amendment: dead_letter)",
                details=details,
            )
        log.warning("backdated amendment prorated from the change date", **details)

    async def _partly(
        self,
        order: Order,
        step: Awaitable[Any],
        calls: list[str],
        before: list[str],
        ended: list[str],
        invoice: str,
    ) -> Any:
        """Run one step of a delivery; a permanent refusal is re-raised with the order's partial state in
        Lago: the subscriptions terminated (``ended``), made or resumed (``before``, and those of ``calls``
        that succeeded), and where its one-off invoice stands (``invoice``). Replay (once the cause is
        fixed) completes the order."""
        try:
            return await step
        except _Partial as partial:
            exc, ok = partial.error, [c for c, good in zip(calls, partial.succeeded, strict=True) if good]
        except PermanentError as error:
            exc, ok = error, []
        if not isinstance(exc, PermanentError):
            raise exc
        made = [*before, *ok]
        state = (
            f"order {order.id} partly billed in Lago: subscriptions made {', '.join(made) or 'none'}, "
            f"terminated {', '.join(ended) or 'none'}; its one-off invoice: {invoice}"
        )
        raise PermanentError(
            f"{exc.message}; {state}",
            details={
                **exc.details,
                "made": ",".join(made) or "none",
                "terminated": ",".join(ended) or "none",
                "one_off_invoice": invoice,
            },
        ) from exc

    @staticmethod
    def _nothing_to_bill(order: Order) -> PermanentError:
        return PermanentError(
            f"order {order.id} is won but has no line items, and nothing of it was billed: "
            "add its products in the deal (or reopen it)",
            details={"order": order.id},
        )

    def _customer_known(self, order: Order) -> bool:
        """Has this hub billed a deal of this customer (the cross-reference map knows its Lago id)?
        Without a store nothing is known, so Lago is asked."""
        store = self.binding.store
        return store is None or store.xref_get("Customer", order.customer.id, XREF_SYSTEM) is not None

    def _ending(self, sub: Mapping[str, Any]) -> bool:
        """Is this subscription of a lost or reopened deal already on its way out, as the policy says?"""
        return (
            self.subscriptions_policy == "period_end"
            and sub.get("status") == "active"
            and bool(sub.get("ending_at"))
        )

    async def _end(self, order: Order, subs: Sequence[Mapping[str, Any]]) -> None:
        """End a lost or reopened deal's subscriptions: at once (Lago bills the days used, the day of
        termination included) or at the end of the current billing period (``ending_at``); one not
        started yet is cancelled either way."""

        async def end(sub: Mapping[str, Any]) -> Any:
            external = str(sub["external_id"])
            period_end = sub.get("current_billing_period_ending_at")
            if self.subscriptions_policy == "period_end" and sub.get("status") == "active" and period_end:
                try:
                    return await self.client.request(
                        "PUT",
                        f"/subscriptions/{_quote(external)}",
                        "subscriptions.update",
                        body={"subscription": {"ending_at": period_end}},
                    )
                except DeliveryError as exc:
                    # Lago refuses an ending_at that is not after its today: on the period's last day,
                    # ending the subscription now bills the same days (the day of termination included).
                    if exc.details.get("status") != 422 or "ending_at" not in (
                        exc.details.get("error_details") or {}
                    ):
                        raise
            return await self.client.terminate_subscription(external, str(sub.get("status") or "active"))

        await _together(*(end(s) for s in subs))
        for sub in subs:
            log.info(
                "lago subscription of a reversed deal ended",
                order=order.id,
                external_id=sub["external_id"],
                policy=self.subscriptions_policy,
            )

    async def _credit_notes_of(self, invoice: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The credit notes issued on a reversed deal's one-off invoice; None when it needs none (voided)."""
        if invoice.get("status") != "finalized":
            return None
        customer = (invoice.get("customer") or {}).get("external_id")
        params = {"external_customer_id": customer} if customer else {}
        lago_id = str(invoice["lago_id"])
        return [n async for n in self.client.credit_notes(params) if n.get("lago_invoice_id") == lago_id]

    async def _reverse_invoice(self, order: Order, invoice: Mapping[str, Any]) -> None:
        details = {
            "order": order.id,
            "invoice": str(invoice.get("number") or invoice.get("lago_id")),
            "lago_id": str(invoice.get("lago_id")),
            "invoice_status": str(invoice.get("status")),
        }
        if self.invoice_policy == "dead_letter":
            raise PermanentError(
                f"order {order.id} is {_reversed_as(order)} but its one-off invoice "
                f"{details['invoice']} was already issued in Lago: a credit note is needed "
                "(on_reversal_invoice: dead_letter); its subscriptions were ended",
                details=details,
            )
        # A credit note has no idempotency key in Lago: the listing above is what keeps it single.
        items = [
            {"fee_id": str(f["lago_id"]), "amount_cents": int(f["amount_cents"])}
            for f in invoice.get("fees") or []
            if int(f.get("amount_cents") or 0) > 0
        ]
        await fence()  # no idempotency key in Lago: only the holder of the delivery issues it
        await self.client.request(
            "POST",
            "/credit_notes",
            "credit_notes.create",
            body={
                "credit_note": {
                    "invoice_id": str(invoice["lago_id"]),
                    "reason": "order_cancellation",
                    "description": f"deal {order.id} {_reversed_as(order)}",
                    "items": items,
                }
            },
            idempotent=False,
        )
        log.info("lago credit note issued for a reversed deal", **details)

    async def _check_catalog(self, order: Order, plan: adapter.BillingPlan) -> None:
        """Every plan and add-on the order needs exists in Lago, checked before any subscription or invoice
        is made: an order is billed whole or not at all (a one-off invoice issued for an order whose
        subscription then fails looks fully billed downstream). Codes found once are remembered."""
        from lead2cash.connectors.lago import LagoNotFound

        known = self.binding.known_codes
        wanted = [("plan", s.plan_code) for s in plan.subscriptions] + [
            ("add-on", f.add_on_code) for f in plan.fees
        ]
        unknown = [w for w in dict.fromkeys(wanted) if w not in known]

        async def exists(kind: str, code: str) -> bool:
            path = f"/plans/{_quote(code)}" if kind == "plan" else f"/add_ons/{_quote(code)}"
            try:
                await self.client.request("GET", path, "plans.get" if kind == "plan" else "add_ons.get")
            except LagoNotFound:
                return False
            return True

        found = await _together(*(exists(kind, code) for kind, code in unknown))
        known.update(w for w, ok in zip(unknown, found, strict=True) if ok)
        missing = [(kind, code) for (kind, code), ok in zip(unknown, found, strict=True) if not ok]
        if missing:
            # Named as Lago's own 404 would name them (code=plan_not_found; plan_code=...).
            details: dict[str, Any] = {"order": order.id}
            for kind, field, reason in (
                ("plan", "plan_code", "plan_not_found"),
                ("add-on", "add_on_code", "add_on_not_found"),
            ):
                codes = [code for k, code in missing if k == kind]
                if codes:
                    details["code"] = f"{details['code']},{reason}" if "code" in details else reason
                    details[field] = ", ".join(codes)
            absent = ", ".join(f"{kind} {code}" for kind, code in missing)
            raise PermanentError(
                f"order {order.id}: Lago has no {absent} (check the mapping tables); nothing of the order was billed",
                details=details,
            )

    def _billed_before(self, spec_keys: list[str]) -> set[str]:
        store = self.binding.store
        if store is None or not spec_keys:
            return set()
        return set(store.xref_get_many("Subscription", XREF_SYSTEM, spec_keys))

    async def _customer_matches(self, body: Mapping[str, Any]) -> bool:
        from lead2cash.connectors.lago import LagoNotFound

        try:
            data = await self.client.request(
                "GET", f"/customers/{_quote(str(body['external_id']))}", "customers.get"
            )
        except LagoNotFound:
            return False
        current = data.get("customer") or {}
        return all(
            current.get(k) == v
            for k, v in body.items()
            if k not in ("billing_configuration", "customer_type")
        )

    async def _find_invoice(
        self, order: Order, external_id: str, seen: list[dict[str, Any]] | None = None
    ) -> dict[str, Any] | None:
        """This order's one-off invoice: by its metadata, or (created but metadata not yet written) the
        one whose fee descriptions carry the order marker. Two unmarked candidates is an anomaly a person
        must look at, never a guess."""
        # One listing of the customer's one-off invoices serves both searches (a customer has a few).
        query = {"external_customer_id": external_id, "invoice_type": "one_off"}
        listed = [i async for i in self.client.invoices(query)]

        marked = [i for i in listed if adapter.metadata_value(i, adapter.METADATA_ORDER) == order.id]
        if marked:
            marked.sort(key=lambda i: (str(i.get("created_at")), str(i.get("lago_id"))))
            if seen is not None:
                seen.extend(listed)
            return await self._with_fees(marked[0])
        candidates = []
        for item in listed:
            if adapter.metadata_value(item, adapter.METADATA_ORDER) is not None:
                if seen is not None:
                    seen.append(item)
                continue
            if item.get("currency") not in (None, order.currency):
                if seen is not None:
                    seen.append(item)  # its order unknown: the customer is not vouched for
                continue
            full = await self._with_fees(item)
            if seen is not None:
                seen.append(full)
            if adapter.unmarked_order_invoice(full, order.id):
                candidates.append(full)
        if len(candidates) > 1:
            raise PermanentError(
                f"order {order.id}: several Lago invoices carry its marker but no metadata; resolve by hand",
                details={"invoices": ",".join(sorted(str(c["lago_id"]) for c in candidates))},
            )
        return candidates[0] if candidates else None

    async def _with_fees(self, invoice: dict[str, Any]) -> dict[str, Any]:
        if "fees" in invoice:
            return invoice
        return await self.client.get_invoice(str(invoice["lago_id"]))

    def _check_invoice(self, order: Order, plan: adapter.BillingPlan, invoice: Mapping[str, Any]) -> None:
        details = {
            "order": order.id,
            "invoice": str(invoice.get("number") or invoice.get("lago_id")),
            "lago_id": str(invoice.get("lago_id")),
            "invoice_status": str(invoice.get("status")),
        }
        if adapter.invoice_fee_signatures(invoice) != plan.fee_signatures():
            raise PermanentError(
                f"order {order.id} changed its one-time lines after its one-off invoice was issued in Lago: "
                "a finalized invoice cannot be edited, a credit note and a new invoice are needed "
                "(not done automatically); subscriptions were left unchanged",
                details=details,
            )

    @staticmethod
    def _ref(external_id: str, wanted: Mapping[str, Any], invoice: Mapping[str, Any] | None) -> str:
        inv = str(invoice["lago_id"]) if invoice is not None else "-"
        return f"customer={external_id};subscriptions={len(wanted)};invoice={inv}"


POLL_READS_IN_FLIGHT = 8
ORDER_MARK = "lago.order"  # cross-reference: an order this store began to bill in Lago (its id, both sides)
VOUCHED_MAX = 200_000


def _reversed_as(order: Order) -> str:
    """How a deal that bills no more is described: its status, or won with every line item removed."""
    if order.status.value == "won" and not order.lines:
        return "won with every line item removed"
    return order.status.value


class _Partial(Exception):
    """Calls made together of which some failed: the first failure and which calls succeeded."""

    def __init__(self, error: BaseException, succeeded: list[bool]) -> None:
        super().__init__(str(error))
        self.error, self.succeeded = error, succeeded


async def _gather(calls: list[Awaitable[Any]]) -> list[Any]:
    """As :func:`_together`, but a failure says which calls succeeded (:class:`_Partial`)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise _Partial(failures[0], [not isinstance(r, BaseException) for r in results])
    return list(results)


async def _together(*calls: Awaitable[Any]) -> list[Any]:
    """Run independent calls at once and wait for all of them (none is left running); the first failure,
    in call order, is raised. A write that failed or whose answer was lost leaves the key ambiguous, and
    the router's lookup reconciles before anything is resent."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)


def _belongs(external_id: str, prefix: str) -> bool:
    # "<order id>:<line id or plan>[@v<n>]"; ids from Salesforce never contain ':', so the order is exact.
    return external_id.startswith(prefix) and ":" not in external_id[len(prefix) :]


def _day(value: Any) -> date | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# ---------------------------------------------------------------------------------------------- sources
class LagoEventSource:
    """Webhooks verified on the raw body; poll fallback from a checkpoint. A per-consumer state gate
    (kept in the store's cross-reference map, so it survives restarts) remembers, per object, the
    ``updated_at`` and the state this consumer last passed on, with a sequence number.

    States are not ordered (a payment succeeds, fails when the debit is returned, succeeds on a retry):
    Lago's ``updated_at`` is. An event stamped before what was passed on is dropped; a later one with a
    new state is passed on with the next sequence number (the entity's version); a read of the object
    (the poll's, or one made for a webhook) is Lago's current state and wins a tie. ``updated_at`` has
    whole seconds, so two changes within one second tie: a webhook whose state ties with a different
    one is resolved by reading the object."""

    object_type = ""

    def __init__(self, binding: LagoBinding, consumer: str, events: frozenset[str]) -> None:
        self.binding = binding
        self.client = binding.client
        self.consumer = consumer
        self.events = events
        self.name = f"{binding.name}/{consumer}"
        self._gate_type = f"lago.gate:{binding.name}:{consumer}"[:100]
        self._warned = False
        # The rest of the last listing, for the next read of the same poll: Lago has no "updated since"
        # filter, so each listing reads the whole window and must not be repeated per batch.
        self._backlog: tuple[str | None, list[Mapping[str, Any]]] = (None, [])

    @staticmethod
    def parse_checkpoint(value: str) -> str:
        """An operator's checkpoint: the latest ``updated_at`` read (an ISO 8601 date-time)."""
        try:
            date.fromisoformat(value[:10])
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"not a Lago checkpoint: {value!r}; expected an ISO 8601 date-time such as 2026-12-01T00:00:00Z"
            ) from None
        return value

    # -- the state gate
    def state(self, obj: Mapping[str, Any]) -> str:
        """What this object shows downstream; a change of it is what the gate passes on."""
        return "-"

    async def current(self, lago_id: str) -> dict[str, Any]:
        """The object as Lago holds it now."""
        raise NotImplementedError

    def event_type(self, obj: Mapping[str, Any]) -> str:
        """The webhook type a read object's state corresponds to, so routes filter both alike."""
        raise NotImplementedError

    def _passed(self, lago_ids: list[str]) -> dict[str, _Passed]:
        store = self.binding.store
        if store is None:
            return {}
        found = store.xref_get_many(self._gate_type, XREF_SYSTEM, lago_ids)
        return {k: _Passed.parse(v) for k, v in found.items()}

    def stamp(self, obj: Mapping[str, Any]) -> str:
        """When Lago last changed what ``state`` covers (sortable text; "" when unknown)."""
        return _stamp(obj.get("updated_at"))

    def _position(self, obj: Mapping[str, Any]) -> tuple[str, str]:
        return self.stamp(obj), _short(self.state(obj))

    async def webhook_object(
        self, webhook_type: str, payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, bool]:
        """The object a webhook is about, and whether it was just read from Lago (its current state)."""
        obj = payload.get(adapter.OBJECT_KEYS.get(webhook_type, self.object_type))
        return (obj if isinstance(obj, dict) else None), False

    async def _candidates(
        self, checkpoint: str | None, limit: int, listing: Callable[[], AsyncIterator[Mapping[str, Any]]]
    ) -> tuple[list[Mapping[str, Any]], str | None, bool]:
        """The next ``limit`` unpassed objects, the checkpoint after them and whether more remain."""
        held_at, held = self._backlog
        if held and held_at == checkpoint:
            candidates = held
        else:
            candidates = await self._unpassed(listing())
        taken, rest = candidates[:limit], candidates[limit:]
        after = _latest(checkpoint, taken)
        self._backlog = (after, rest)
        return taken, after, bool(rest)

    async def _unpassed(self, listing: AsyncIterator[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Listed objects updated after what this consumer passed on (or in the same second with another
        state), oldest update first; checked a few pages at a time, so only those are held.

        No updated_at watermark: an object whose webhook never arrived may carry an update time before
        the last one read (parallel writers commit out of order, backdated billing runs), and a
        watermark would skip it for ever. The state gate is what keeps a re-read from passing twice."""
        fresh: list[Mapping[str, Any]] = []
        chunk: list[Mapping[str, Any]] = []

        def keep_fresh() -> None:
            passed = self._passed([str(i["lago_id"]) for i in chunk])
            for item in chunk:
                known = passed.get(str(item["lago_id"]))
                stamp, state = self._position(item)
                if (
                    known is None
                    or stamp > known.stamp
                    or (stamp in ("", known.stamp) and state != known.state)
                ):
                    fresh.append(item)
            chunk.clear()

        async for item in listing:
            chunk.append(item)
            if len(chunk) >= 500:
                keep_fresh()
        keep_fresh()
        fresh.sort(key=lambda i: (str(i.get("updated_at")), str(i["lago_id"])))
        return fresh

    def _admit(
        self, objects: list[Mapping[str, Any]], *, read: bool, again: bool = False
    ) -> tuple[list[tuple[Mapping[str, Any], int]], list[XrefWrite], list[str]]:
        """The objects this consumer passes on with their sequence numbers, the gate writes that go into
        the same inbox transaction, and the ids whose order only a read of Lago can tell (a webhook that
        ties with another state). ``read``: the objects were just read from Lago (its current state).
        The caller must not await between this and the inbox write: the check and the write are then
        atomic on the hub's event loop, and a crash in between loses neither."""
        passed = self._passed([str(o["lago_id"]) for o in objects])
        admitted: list[tuple[Mapping[str, Any], int]] = []
        writes: dict[str, XrefWrite] = {}
        unsure: list[str] = []
        for obj in objects:
            lago_id = str(obj["lago_id"])
            stamp, state = self._position(obj)
            known = passed.get(lago_id)
            if known is None:
                now = _Passed(stamp, 1, state)
            elif stamp and stamp < known.stamp:
                log.info(
                    "older Lago state ignored: a later one was passed on",
                    source=self.name, lago_id=lago_id, updated_at=stamp, passed_updated_at=known.stamp,
                    state=state, passed_state=known.state,
                )  # fmt: skip
                continue
            elif state != known.state:
                if not read and stamp in ("", known.stamp):
                    unsure.append(lago_id)
                    continue
                now = _Passed(max(stamp, known.stamp), known.sequence + 1, state)
            else:
                # The state this consumer passed on: a duplicate, or a change it does not show (its
                # time still moves the gate on, so an event between the two stays older).
                now = _Passed(max(stamp, known.stamp), known.sequence, state)
                if now != known:
                    writes[lago_id] = XrefWrite(self._gate_type, lago_id, XREF_SYSTEM, now.value(lago_id))
                passed[lago_id] = now
                if not read or again:
                    # A webhook of the same state still reaches routes that filter by event type; the
                    # same sequence number gives it the same version (keys by version dedupe it).
                    admitted.append((obj, now.sequence))
                continue
            passed[lago_id] = now
            writes[lago_id] = XrefWrite(self._gate_type, lago_id, XREF_SYSTEM, now.value(lago_id))
            admitted.append((obj, now.sequence))
        return admitted, list(writes.values()) if self.binding.store is not None else [], unsure

    def _record(
        self, obj: Mapping[str, Any], sequence: int, payload: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if payload is None:
            payload = {"webhook_type": self.event_type(obj), "object_type": self.object_type}
        record = {
            k: v for k, v in payload.items() if k != adapter.OBJECT_KEYS.get(str(payload.get("webhook_type")))
        }
        record[self.object_type] = obj
        record[adapter.SEQUENCE_FIELD] = sequence
        return record

    # -- replay
    async def reread(self, record: Mapping[str, Any]) -> SourceBatch:
        """The object an event or poll record carried, as Lago holds it now (GET by its lago_id)."""
        from lead2cash.connectors.lago import LagoNotFound

        obj = record.get(self.object_type)
        lago_id = obj.get("lago_id") if isinstance(obj, Mapping) else None
        if not isinstance(lago_id, str) or not lago_id:
            raise PermanentError(f"cannot re-read the record: it carries no {self.object_type}.lago_id")
        try:
            current = await self.current(lago_id)
        except LagoNotFound:
            return SourceBatch([], None)
        # Replay asks for this object whatever this consumer passed on; the gate only moves forward.
        admitted, writes, _ = self._admit([current], read=True, again=True)
        return SourceBatch([self._record(o, n, None) for o, n in admitted], None, xrefs=writes)

    # -- webhooks
    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookDelivery | None:
        verifier = self.binding.verifier
        if verifier is None:
            if not self._warned:
                log.warning("Lago webhook refused: no webhook signature configured", system=self.binding.name)
                self._warned = True
            return None
        if not await verifier.verify(headers, body):
            return None
        unique = headers.get("x-lago-unique-key") or headers.get("X-Lago-Unique-Key")
        try:
            payload = loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any event is
            log.warning("signed Lago webhook is not JSON; acknowledged and ignored", unique_key=unique)
            return WebhookDelivery(unique, [], event_type="not_json")
        kind = payload.get("webhook_type") if isinstance(payload, dict) else None
        event_type = str(kind) if kind in adapter.WEBHOOK_TYPES else "other"
        if kind not in self.events:
            return WebhookDelivery(unique, [], event_type=event_type)
        return await self.webhook_delivery(unique, str(kind), payload, event_type)

    async def webhook_delivery(
        self, unique: str | None, kind: str, payload: Mapping[str, Any], event_type: str
    ) -> WebhookDelivery:
        """The records a verified webhook of a taken type gives, with the gate's writes."""
        obj, read = await self.webhook_object(kind, payload)
        if obj is None or not obj.get("lago_id"):
            return WebhookDelivery(unique, [], event_type=event_type)
        admitted, writes, unsure = self._admit([obj], read=read)
        records: list[Mapping[str, Any]]
        if unsure:
            # Another state in the same second: which came last only Lago can tell now.
            current = await self.current(str(obj["lago_id"]))
            admitted, writes, _ = self._admit([current], read=True)
            read = True
        records = [self._record(o, n, None if read else payload) for o, n in admitted]
        return WebhookDelivery(unique, records, writes, event_type=event_type)


class InvoiceSource(LagoEventSource):
    """With ``refunds``, each invoice passed on carries what its credit notes refund
    (``adapter.REFUNDS_FIELD``): a refund changes the credit note, not the invoice, so the source reads
    the invoice's credit notes with each event and takes credit note events for their invoice."""

    object_type = "invoice"

    def __init__(
        self, binding: LagoBinding, consumer: str, events: frozenset[str], *, refunds: bool = False
    ) -> None:
        super().__init__(binding, consumer, events)
        self.refunds = refunds
        self._notes: dict[str, list[Mapping[str, Any]]] = {}

    def state(self, obj: Mapping[str, Any]) -> str:
        return adapter.invoice_state(obj)

    def stamp(self, obj: Mapping[str, Any]) -> str:
        refunds = obj.get(adapter.REFUNDS_FIELD)
        refunded_at = _stamp(refunds.get("updated_at")) if isinstance(refunds, Mapping) else ""
        return max(_stamp(obj.get("updated_at")), refunded_at)

    async def current(self, lago_id: str) -> dict[str, Any]:
        invoice = await self.client.get_invoice(lago_id)
        return await self._with_refunds(invoice) if self.refunds else invoice

    async def _with_refunds(
        self, invoice: Mapping[str, Any], notes: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        if notes is None:
            number = invoice.get("number")
            notes = [n async for n in self.client.credit_notes({"invoice_number": number})] if number else []
        mine = [n for n in notes if n.get("lago_invoice_id") in (None, invoice.get("lago_id"))]
        return {**invoice, adapter.REFUNDS_FIELD: adapter.refund_summary(mine)}

    async def webhook_object(
        self, webhook_type: str, payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, bool]:
        if not self.refunds:
            return await super().webhook_object(webhook_type, payload)
        if webhook_type in REFUND_EVENTS:
            note = payload.get(REFUND_EVENTS[webhook_type])
            if not isinstance(note, dict):
                return None, False
            if webhook_type == "credit_note.created":
                if not note.get("refund_amount_cents"):
                    return None, False  # a credit, not a refund: the deal shows nothing of it
            elif note.get("lago_credit_note_id"):
                note = await self.client.get_credit_note(str(note["lago_credit_note_id"]))
            else:
                note = {}
            if not note.get("lago_invoice_id"):
                log.warning(
                    "Lago refund event names no invoice; acknowledged and ignored", webhook_type=webhook_type
                )
                return None, False
            return await self.current(str(note["lago_invoice_id"])), True
        invoice, _ = await super().webhook_object(webhook_type, payload)
        if invoice is None or not invoice.get("lago_id"):
            return None, False
        if webhook_type in BIRTH_EVENTS:
            # An invoice just drafted or issued has no credit note yet (Lago issues them on finalized
            # invoices only, later, each with a credit_note.* event of its own): no listing to make.
            return await self._with_refunds(invoice, []), False
        enriched = await self._with_refunds(invoice)
        if enriched[adapter.REFUNDS_FIELD]["updated_at"] is None:
            return enriched, False
        # The invoice has refunds: its body (perhaps old) and the notes (read now) would mix two times.
        return await self.current(str(invoice["lago_id"])), True

    def event_type(self, invoice: Mapping[str, Any]) -> str:
        status, payment = invoice.get("status"), invoice.get("payment_status")
        if status == "voided":
            return "invoice.voided"
        if status != "finalized":
            return "invoice.drafted"  # draft, and Lago's transient pending/failed (tax computation) states
        if invoice.get("payment_dispute_lost_at"):
            return "invoice.payment_dispute_lost"
        if payment in ("succeeded", "failed"):
            return "invoice.payment_status_updated"
        if invoice.get("payment_overdue"):
            return "invoice.payment_overdue"
        return "invoice.one_off_created" if invoice.get("invoice_type") == "one_off" else "invoice.created"

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        """Poll fallback: invoices issued since the checkpoint's date minus the lookback whose state this
        consumer has not passed on yet (re-read with GET, so the record is Lago's current state)."""
        params: dict[str, Any] = {}
        if checkpoint:
            since = date.fromisoformat(checkpoint[:10]) - timedelta(seconds=self.binding.config.poll_lookback)
            params["issuing_date_from"] = since.isoformat()
        notes: dict[str, list[Mapping[str, Any]]] = self._notes
        held_at, held = self._backlog
        if self.refunds and not (held and held_at == checkpoint):  # a new listing (see _candidates)
            # One listing of the window's credit notes per poll gives every listed invoice its refunds.
            notes = defaultdict(list)
            async for note in self.client.credit_notes(params):
                notes[str(note.get("lago_invoice_id"))].append(note)
            self._notes = notes

        async def listing() -> AsyncIterator[Mapping[str, Any]]:
            async for item in self.client.invoices(params):
                yield (
                    await self._with_refunds(item, notes.get(str(item["lago_id"]), []))
                    if self.refunds
                    else item
                )

        taken, after, more = await self._candidates(checkpoint, limit, listing)
        # Lago's listing leaves out fees: each candidate is read whole, a few at a time.
        gate = asyncio.Semaphore(POLL_READS_IN_FLIGHT)

        async def read_whole(lago_id: str) -> dict[str, Any]:
            async with gate:
                invoice = await self.client.get_invoice(lago_id)
            return await self._with_refunds(invoice, notes.get(lago_id, [])) if self.refunds else invoice

        current = await _together(*(read_whole(str(item["lago_id"])) for item in taken))
        # After the last await: the gate is checked against what webhooks passed meanwhile.
        admitted, writes, _ = self._admit(current, read=True)
        records = [self._record(i, n, None) for i, n in admitted]
        return SourceBatch(records, after, more=more, xrefs=writes)


class CreditNoteSource(LagoEventSource):
    object_type = "credit_note"

    def state(self, obj: Mapping[str, Any]) -> str:
        return f"{obj.get('credit_status')}/{obj.get('refund_status')}"

    async def current(self, lago_id: str) -> dict[str, Any]:
        return await self.client.get_credit_note(lago_id)

    async def webhook_object(
        self, webhook_type: str, payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, bool]:
        if webhook_type == "credit_note.refund_failure":
            # The provider's error names the credit note only: read it (its refund_status is failed).
            error = payload.get(REFUND_EVENTS[webhook_type])
            lago_id = error.get("lago_credit_note_id") if isinstance(error, Mapping) else None
            if not isinstance(lago_id, str) or not lago_id:
                log.warning("Lago refund failure names no credit note; acknowledged and ignored")
                return None, False
            return await self.current(lago_id), True
        return await super().webhook_object(webhook_type, payload)

    def event_type(self, obj: Mapping[str, Any]) -> str:
        return "credit_note.created"

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        taken, after, more = await self._candidates(checkpoint, limit, self.client.credit_notes)
        admitted, writes, _ = self._admit(taken, read=True)
        records = [self._record(item, n, None) for item, n in admitted]
        return SourceBatch(records, after, more=more, xrefs=writes)


class WalletTransactionSource(LagoEventSource):
    """Wallet transactions, from their webhooks (Lago lists them per wallet only: the poll reads
    nothing). An outbound one is passed on with what funded it (``adapter.FUNDINGS_FIELD``, read from
    Lago's fundings of traceable wallets), so paid credits voided are told from granted ones."""

    object_type = "wallet_transaction"

    def state(self, obj: Mapping[str, Any]) -> str:
        return str(obj.get("status"))

    def stamp(self, obj: Mapping[str, Any]) -> str:
        return _stamp(obj.get("settled_at") or obj.get("failed_at") or obj.get("created_at"))

    async def current(self, lago_id: str) -> dict[str, Any]:
        tx = await self.client.get_wallet_transaction(lago_id)
        if "wallet" not in tx and tx.get("lago_wallet_id"):
            # A read answers the transaction alone; its customer and currency are the wallet's (the
            # webhook carries the wallet).
            tx["wallet"] = await self.client.get_wallet(str(tx["lago_wallet_id"]))
        return await self._with_fundings(tx)

    async def _with_fundings(self, tx: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(tx)
        if out.get("transaction_type") == "outbound" and out.get("transaction_status") == "voided":
            try:
                fundings = [f async for f in self.client.wallet_transaction_fundings(str(out["lago_id"]))]
            except PermanentError:
                fundings = []  # not a traceable wallet: Lago does not tell, all taken as paid credits
            if fundings:
                out[adapter.FUNDINGS_FIELD] = [
                    {
                        "transaction_status": (f.get("wallet_transaction") or {}).get("transaction_status"),
                        "amount_cents": f.get("amount_cents"),
                    }
                    for f in fundings
                ]
        return out

    async def webhook_object(
        self, webhook_type: str, payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, bool]:
        tx, _ = await super().webhook_object(webhook_type, payload)
        if tx is None or not tx.get("lago_id"):
            return None, False
        return await self._with_fundings(tx), False

    def event_type(self, obj: Mapping[str, Any]) -> str:
        return "wallet_transaction.created"

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        return SourceBatch([], checkpoint)


class PaymentSource(LagoEventSource):
    """Lago's payments (``GET /payments``): each payment of an invoice, part or all of it. A payment has
    no ``updated_at``: its ``created_at`` orders it, and a change of its status (a provider's payment
    that fails) is a new state the gate passes on when read. Lago lists payments without a date filter,
    so each poll reads the whole listing; the gate passes on only what changed."""

    object_type = "payment"

    def state(self, obj: Mapping[str, Any]) -> str:
        return str(obj.get("payment_status"))

    def stamp(self, obj: Mapping[str, Any]) -> str:
        return _stamp(obj.get("updated_at") or obj.get("created_at"))

    async def current(self, lago_id: str) -> dict[str, Any]:
        return await self.client.get_payment(lago_id)

    def event_type(self, obj: Mapping[str, Any]) -> str:
        return "payment.succeeded" if obj.get("payment_status") == "succeeded" else "payment.status"

    async def webhook_delivery(
        self, unique: str | None, kind: str, payload: Mapping[str, Any], event_type: str
    ) -> WebhookDelivery:
        if kind != "invoice.payment_status_updated":
            return await super().webhook_delivery(unique, kind, payload, event_type)
        invoice = payload.get("invoice")
        lago_id = invoice.get("lago_id") if isinstance(invoice, Mapping) else None
        if not isinstance(lago_id, str) or not lago_id:
            return WebhookDelivery(unique, [], event_type=event_type)
        # The invoice's payments as Lago holds them now; the gate passes on those not passed yet.
        payments = [p async for p in self.client.payments({"invoice_id": lago_id})]
        admitted, writes, _ = self._admit(payments, read=True)
        records = [self._record(p, n, None) for p, n in admitted]
        return WebhookDelivery(unique, records, writes, event_type=event_type)

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        taken, after, more = await self._candidates(checkpoint, limit, self.client.payments)
        admitted, writes, _ = self._admit(taken, read=True)
        records = [self._record(item, n, None) for item, n in admitted]
        return SourceBatch(records, after, more=more, xrefs=writes)


@dataclass(frozen=True)
class _Passed:
    """What a consumer last passed on for one object: Lago's update time, a sequence, the state."""

    stamp: str
    sequence: int
    state: str

    def value(self, lago_id: str) -> str:
        # The lago id keeps the value unique per gate (the map's system ids are).
        return f"{lago_id}|{self.stamp}|{self.sequence}|{self.state}"

    @classmethod
    def parse(cls, value: str) -> _Passed:
        parts = value.rsplit("|", 3)
        if len(parts) == 4:
            return cls(parts[1], int(parts[2]), parts[3])
        # "<lago id>:<rank>", written when the gate ranked states: no time known, and the rank was the
        # last version passed on, so the next state continues above it.
        return cls("", int(value.rsplit(":", 1)[1]), "")


def _stamp(value: Any) -> str:
    """Lago's ``updated_at`` as sortable UTC text, or "" when it is missing or unreadable (then only a
    read of the object orders it)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short(state: str) -> str:
    # The gate value has 200 characters and "|" separates its parts: anything unusual is digested.
    if len(state) <= 60 and all(c.isalnum() or c in "_/.-" for c in state):
        return state
    return "sha1:" + hashlib.sha1(state.encode(), usedforsecurity=False).hexdigest()


def _latest(checkpoint: str | None, taken: list[Mapping[str, Any]]) -> str | None:
    # The checkpoint only narrows the issuing-date window, so it never moves backwards.
    stamps = [str(i.get("updated_at")) for i in taken if i.get("updated_at")]
    return max([checkpoint or "", *stamps]) or None
