"""Lago binding: the Lago connector paired with the Lago adapter into the hub's sources and targets.

Target actions:
- ``bill_order`` (Order): customer upsert, subscriptions for recurring lines, a one-off invoice for one-time
  lines; later versions of a billed order are reconciled (subscriptions replaced or terminated) or
  dead-lettered with the reason when only a person can decide (a finalized invoice needs a credit note).
- ``upsert_customer`` (Customer).

Source objects (``WebhookSource``s; with ``trigger: {type: webhook, poll_fallback: 60s}`` they are also
polled): ``invoices`` (``invoice.*`` events) and ``credit_notes`` (``credit_note.*``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel

from lead2cash.adapters import lago as adapter
from lead2cash.bindings import BindingContext
from lead2cash.canonical_model import Customer, Order
from lead2cash.config.errors import ConfigProblems
from lead2cash.config.lago import LagoSystemConfig
from lead2cash.connectors.lago import LagoClient, WebhookVerifier, loads
from lead2cash.errors import PermanentError
from lead2cash.routes.interfaces import SourceBatch, WebhookDelivery
from lead2cash.store import Store, XrefWrite

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
    }
)
CREDIT_NOTE_EVENTS = frozenset({"credit_note.created", "credit_note.generated", "credit_note.refund_failure"})


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
        if object not in ("invoices", "credit_notes"):
            raise ConfigProblems(
                [(("object",), f"Lago source objects are invoices, credit_notes; not {object!r}")]
            )
        self._consumers.add(consumer)
        events = frozenset(options.get("webhook_types") or ())
        if object == "invoices":
            return InvoiceSource(self, consumer, events or INVOICE_EVENTS)
        return CreditNoteSource(self, consumer, events or CREDIT_NOTE_EVENTS)

    def target(self, action: str, options: Mapping[str, Any]) -> OrderTarget | CustomerTarget:
        if action == "bill_order":
            plan_name, plan_table = self._table(options, "plan_table")
            addon_name, addon_table = self._table(options, "addon_table")
            grouping = options.get("subscriptions", self.config.subscriptions)
            if grouping not in ("per_line", "per_plan"):
                raise ConfigProblems([(("options", "subscriptions"), "expected per_line or per_plan")])
            billing_time = options.get("billing_time", self.config.billing_time)
            return OrderTarget(
                self, plan_name, plan_table, addon_name, addon_table, str(grouping), str(billing_time)
            )
        if action == "upsert_customer":
            return CustomerTarget(self)
        raise ConfigProblems(
            [(("action",), f"Lago target actions are bill_order, upsert_customer; not {action!r}")]
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
    ) -> None:
        self.binding = binding
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
        return plan, self.binding.customer_external_id(order.customer), order.status.value == "won"

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
        customer_body = adapter.customer_payload(order.customer, external_id, order.currency)
        learned: list[tuple[str, str, str]] = []  # cross-references, written together at the end

        # Independent calls go out together: a deal costs three round trips, not one per call.
        def reads() -> tuple[Awaitable[Any], Awaitable[Any]]:
            return self._find_invoice(order, external_id), self.client.list_subscriptions(external_id)

        if won and apply:
            learned.append(("Customer", order.customer.id, external_id))
            # The reads need not wait for the upsert: it touches neither invoices nor subscriptions, and
            # Lago lists none (200, empty) for a customer it does not have yet.
            _, invoice, listed = await _together(self.client.upsert_customer(customer_body), *reads())
        elif won and not await self._customer_matches(customer_body):
            return None
        else:
            invoice, listed = await _together(*reads())
        if invoice is not None:
            self._check_invoice(order, plan, invoice, won)

        prefix = f"{order.id}:"
        current = {
            adapter.subscription_base(s["external_id"]): s
            for s in listed
            if _belongs(str(s.get("external_id", "")), prefix)
        }
        wanted = {spec.key: spec for spec in plan.subscriptions}
        stale = [s for k, s in current.items() if k not in wanted or not wanted[k].matches(s)]
        missing = [spec for k, spec in wanted.items() if k not in current or not spec.matches(current[k])]
        invoice_done = not plan.fees or (
            invoice is not None and adapter.metadata_value(invoice, adapter.METADATA_ORDER) == order.id
        )
        if not apply:
            if stale or missing or not invoice_done:
                return None
            return self._ref(external_id, wanted, invoice)

        # A changed price or plan replaces the subscription: Lago bills the old one up to today.
        await _together(
            *(
                self.client.terminate_subscription(s["external_id"], str(s.get("status") or "active"))
                for s in stale
            )
        )
        for sub in stale:
            log.info("lago subscription terminated", order=order.id, external_id=sub["external_id"])
        billed = self._billed_before([spec.key for spec in missing if spec.key not in current])
        creates = []
        for spec in missing:
            # A subscription under this key existed before (now terminated): its replacement gets a new
            # external_id, so Lago's history keeps both.
            replaced = spec.key in current or spec.key in billed
            sub_id = f"{spec.key}@v{order.version}" if replaced else spec.key
            creates.append(
                self.client.create_subscription(spec.payload(external_id, sub_id, self.billing_time))
            )
            learned.append(("Subscription", spec.key, sub_id))
        learned += [
            ("Subscription", k, str(s["external_id"]))
            for k, s in current.items()
            if k in wanted and s not in stale
        ]
        new_invoice = (
            self.client.create_one_off_invoice(adapter.one_off_invoice_payload(external_id, plan))
            if plan.fees and invoice is None
            else None
        )
        done = await _together(*creates, *([new_invoice] if new_invoice is not None else []))
        if new_invoice is not None:
            invoice = done[-1]
        if plan.fees:
            assert invoice is not None
            if adapter.metadata_value(invoice, adapter.METADATA_ORDER) != order.id:
                pairs = {adapter.METADATA_KEY: key, adapter.METADATA_ORDER: order.id}
                invoice = await self.client.update_invoice(
                    str(invoice["lago_id"]), {"metadata": adapter.metadata_update(invoice, pairs)}
                )
            learned.append(("Order", order.id, str(invoice["lago_id"])))
        self.binding.remember(learned)
        return self._ref(external_id, wanted, invoice)

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

    async def _find_invoice(self, order: Order, external_id: str) -> dict[str, Any] | None:
        """This order's one-off invoice: by its metadata, or (created but metadata not yet written) the
        one whose fee descriptions carry the order marker. Two unmarked candidates is an anomaly a person
        must look at, never a guess."""
        # One listing of the customer's one-off invoices serves both searches (a customer has a few).
        query = {"external_customer_id": external_id, "invoice_type": "one_off"}
        listed = [i async for i in self.client.invoices(query)]
        marked = [i for i in listed if adapter.metadata_value(i, adapter.METADATA_ORDER) == order.id]
        if marked:
            marked.sort(key=lambda i: (str(i.get("created_at")), str(i.get("lago_id"))))
            return await self._with_fees(marked[0])
        candidates = []
        for item in listed:
            if adapter.metadata_value(item, adapter.METADATA_ORDER) is not None:
                continue
            if item.get("currency") not in (None, order.currency):
                continue
            full = await self._with_fees(item)
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

    def _check_invoice(
        self, order: Order, plan: adapter.BillingPlan, invoice: Mapping[str, Any], won: bool
    ) -> None:
        details = {
            "order": order.id,
            "invoice": str(invoice.get("number") or invoice.get("lago_id")),
            "lago_id": str(invoice.get("lago_id")),
            "invoice_status": str(invoice.get("status")),
        }
        if not won:
            raise PermanentError(
                f"order {order.id} is {order.status.value} but its one-off invoice was already issued in Lago: "
                "a credit note is needed (not issued automatically); subscriptions were left unchanged",
                details=details,
            )
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


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# ---------------------------------------------------------------------------------------------- sources
class LagoEventSource:
    """Webhooks verified on the raw body; poll fallback from a checkpoint. A per-consumer state gate
    (kept in the store's cross-reference map, so it survives restarts) drops events older than what this
    consumer already passed on, so a late ``invoice.drafted`` never follows ``invoice.created``."""

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
    def _seen_ranks(self, lago_ids: list[str]) -> dict[str, int]:
        store = self.binding.store
        if store is None:
            return {}
        found = store.xref_get_many(self._gate_type, XREF_SYSTEM, lago_ids)
        return {k: int(v.rsplit(":", 1)[1]) for k, v in found.items()}

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
        """Listed objects whose state is newer than what this consumer passed on, oldest update first;
        checked a few pages at a time, so only those are held, never the whole listing.

        No updated_at watermark: an object whose webhook never arrived may carry an update time before
        the last one read (parallel writers commit out of order, backdated billing runs), and a
        watermark would skip it for ever. The state gate is what keeps a re-read from passing twice."""
        fresh: list[Mapping[str, Any]] = []
        chunk: list[Mapping[str, Any]] = []

        def keep_fresh() -> None:
            seen = self._seen_ranks([str(i["lago_id"]) for i in chunk])
            fresh.extend(i for i in chunk if self.rank(i) > seen.get(str(i["lago_id"]), 0))
            chunk.clear()

        async for item in listing:
            chunk.append(item)
            if len(chunk) >= 500:
                keep_fresh()
        keep_fresh()
        fresh.sort(key=lambda i: (str(i.get("updated_at")), str(i["lago_id"])))
        return fresh

    def _admit(
        self, objects: list[Mapping[str, Any]], *, strictly_newer: bool
    ) -> tuple[list[Mapping[str, Any]], list[XrefWrite]]:
        """The objects whose state this consumer may pass on, and the gate writes that go into the same
        inbox transaction. The caller must not await between this and that write: the check and the write
        are then atomic on the hub's event loop, and a crash in between loses neither."""
        seen = self._seen_ranks([str(o["lago_id"]) for o in objects])
        admitted: list[Mapping[str, Any]] = []
        writes: list[XrefWrite] = []
        for obj in objects:
            lago_id, rank = str(obj["lago_id"]), self.rank(obj)
            known = seen.get(lago_id, 0)
            if rank < known or (strictly_newer and rank == known):
                continue
            admitted.append(obj)
            if rank > known:
                seen[lago_id] = rank
                writes.append(XrefWrite(self._gate_type, lago_id, XREF_SYSTEM, f"{lago_id}:{rank}"))
        return admitted, writes if self.binding.store is not None else []

    def rank(self, obj: Mapping[str, Any]) -> int:
        return 1

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
            return WebhookDelivery(unique, [])
        if not isinstance(payload, dict) or payload.get("webhook_type") not in self.events:
            return WebhookDelivery(unique, [])
        obj = payload.get(self.object_type)
        if not isinstance(obj, dict) or not obj.get("lago_id"):
            return WebhookDelivery(unique, [])
        admitted, writes = self._admit([obj], strictly_newer=False)
        if not admitted:
            log.debug(
                "stale Lago event ignored", webhook_type=payload["webhook_type"], lago_id=obj["lago_id"]
            )
            return WebhookDelivery(unique, [])
        return WebhookDelivery(unique, [payload], writes)


class InvoiceSource(LagoEventSource):
    object_type = "invoice"

    def rank(self, obj: Mapping[str, Any]) -> int:
        return adapter.invoice_rank(obj)

    @staticmethod
    def event_type(invoice: Mapping[str, Any]) -> str:
        """The webhook type a polled invoice's state corresponds to, so routes filter both alike."""
        rank = adapter.invoice_rank(invoice)
        if rank == adapter.RANK_VOIDED:
            return "invoice.voided"
        if rank in (adapter.RANK_PAID, adapter.RANK_PAYMENT_FAILED):
            return "invoice.payment_status_updated"
        if rank == adapter.RANK_DRAFT:
            return "invoice.drafted"
        return "invoice.one_off_created" if invoice.get("invoice_type") == "one_off" else "invoice.created"

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        """Poll fallback: invoices issued since the checkpoint's date minus the lookback whose state this
        consumer has not passed on yet (re-read with GET, so the record is Lago's current state)."""
        params: dict[str, Any] = {}
        if checkpoint:
            since = date.fromisoformat(checkpoint[:10]) - timedelta(seconds=self.binding.config.poll_lookback)
            params["issuing_date_from"] = since.isoformat()
        taken, after, more = await self._candidates(checkpoint, limit, lambda: self.client.invoices(params))
        # Lago's listing leaves out fees: each candidate is read whole, a few at a time.
        gate = asyncio.Semaphore(POLL_READS_IN_FLIGHT)

        async def read_whole(lago_id: str) -> dict[str, Any]:
            async with gate:
                return await self.client.get_invoice(lago_id)

        current = await _together(*(read_whole(str(item["lago_id"])) for item in taken))
        # After the last await: the gate is checked against what webhooks passed meanwhile.
        admitted, writes = self._admit(current, strictly_newer=True)
        records = [
            {"webhook_type": self.event_type(i), "object_type": "invoice", "invoice": i} for i in admitted
        ]
        return SourceBatch(records, after, more=more, xrefs=writes)


class CreditNoteSource(LagoEventSource):
    object_type = "credit_note"

    def rank(self, obj: Mapping[str, Any]) -> int:
        return 2 if obj.get("credit_status") == "voided" else 1

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        taken, after, more = await self._candidates(checkpoint, limit, self.client.credit_notes)
        admitted, writes = self._admit(taken, strictly_newer=True)
        records = [
            {"webhook_type": "credit_note.created", "object_type": "credit_note", "credit_note": item}
            for item in admitted
        ]
        return SourceBatch(records, after, more=more, xrefs=writes)


def _latest(checkpoint: str | None, taken: list[Mapping[str, Any]]) -> str | None:
    # The checkpoint only narrows the issuing-date window, so it never moves backwards.
    stamps = [str(i.get("updated_at")) for i in taken if i.get("updated_at")]
    return max([checkpoint or "", *stamps]) or None
