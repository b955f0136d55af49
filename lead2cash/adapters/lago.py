"""Translation between Lago's records and the canonical model. Pure functions: no I/O.

Outbound (Order -> Lago): the customer payload, the subscriptions a won order needs (one per recurring line,
or one per plan), and the add-on fees of the one-off invoice for its one-time lines, all in integer minor
units computed from the canonical line amounts, so Lago bills exactly what the order says.

Inbound (Lago -> canonical): ``lago.invoice`` (fees, coupons, taxes, totals -> ``Invoice``), ``lago.payment``
(``invoice.payment_status_updated`` -> ``Payment``) and ``lago.credit_note`` (-> ``CreditNote``). A record
is a Lago webhook body (``{"webhook_type": ..., "invoice": {...}}``) or the bare object. The entity's
``version`` is the sequence number the source's state gate gave this state of the invoice (a new number for
every change of state it passes on, in Lago's order of updates), so keys of the form
``invoice:{id}:v{version}`` give one downstream effect per state change, never one per delivery; a state
seen again later (paid, failed, paid again) is a new change with a new number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from lead2cash.canonical_model import (
    MINOR_UNITS,
    Address,
    ChargeKind,
    CreditNote,
    CreditNoteLine,
    CreditNoteReason,
    CreditNoteStatus,
    Customer,
    Invoice,
    InvoiceLine,
    InvoicePaymentStatus,
    InvoiceStatus,
    Money,
    Order,
    OrderLine,
    Payment,
    PaymentStatus,
    TaxLine,
    WalletTransaction,
)
from lead2cash.errors import PermanentError

METADATA_KEY = "lead2cash_key"
"""Invoice metadata key holding the hub's idempotency key of the delivery that created the invoice."""
METADATA_ORDER = "lead2cash_order"
"""Invoice metadata key holding the canonical order id: finds an order's invoice whatever its version."""

# ------------------------------------------------------------------------------------------ invoice state
SEQUENCE_FIELD = "lead2cash_sequence"
"""Field of a record the Lago source adds: the state gate's sequence number for the state it passes on."""

REFUNDS_FIELD = "lead2cash_refunds"
"""Field of an invoice the Lago source adds when it reads refunds: ``{"refund_amount_cents": n,
"updated_at": ...}`` over the invoice's credit notes (Lago's invoice itself does not change on a refund)."""

WEBHOOK_TYPES = frozenset(
    [
        "alert.triggered",
        "billable_metric.created",
        "billable_metric.deleted",
        "billable_metric.updated",
        "credit_note.created",
        "credit_note.generated",
        "credit_note.refund_failure",
        "customer.accounting_provider_created",
        "customer.accounting_provider_error",
        "customer.checkout_url_generated",
        "customer.created",
        "customer.crm_provider_created",
        "customer.crm_provider_error",
        "customer.payment_provider_created",
        "customer.payment_provider_error",
        "customer.tax_provider_error",
        "customer.updated",
        "customer.vies_check",
        "dunning_campaign.finished",
        "event.error",
        "events.errors",
        "feature.created",
        "feature.deleted",
        "feature.updated",
        "fee.created",
        "fee.tax_provider_error",
        "integration.provider_error",
        "invoice.add_on_added",
        "invoice.created",
        "invoice.deleted",
        "invoice.drafted",
        "invoice.generated",
        "invoice.one_off_created",
        "invoice.paid_credit_added",
        "invoice.payment_dispute_lost",
        "invoice.payment_failure",
        "invoice.payment_overdue",
        "invoice.payment_status_updated",
        "invoice.resynced",
        "invoice.voided",
        "payment.requires_action",
        "payment.succeeded",
        "payment_provider.error",
        "payment_request.created",
        "payment_request.payment_failure",
        "payment_request.payment_status_updated",
        "plan.created",
        "plan.deleted",
        "plan.updated",
        "subscription.canceled",
        "subscription.incomplete",
        "subscription.started",
        "subscription.terminated",
        "subscription.termination_alert",
        "subscription.trial_ended",
        "subscription.updated",
        "subscription.usage_threshold_reached",
        "wallet.depleted_ongoing_balance",
        "wallet_transaction.created",
        "wallet_transaction.payment_failure",
        "wallet_transaction.updated",
    ]
)
"""Every ``webhook_type`` Lago's OpenAPI document declares (its webhooks section): the metric label of a
Lago event is one of these or "other", so a body cannot mint labels."""

OBJECT_KEYS = {"invoice.payment_dispute_lost": "payment_dispute_lost"}
"""Webhooks whose invoice is not under ``invoice`` (Lago names the object after the event)."""


def invoice_state(invoice: Mapping[str, Any]) -> str:
    """What an invoice shows downstream, as one comparable text: status, payment status, overdue and a
    lost dispute. Not an order: Lago moves a payment from succeeded to failed (a returned direct debit),
    from failed to pending and succeeded (a retry); only Lago's ``updated_at`` orders states."""
    refunds = invoice.get(REFUNDS_FIELD)
    refunded = refunds.get("refund_amount_cents") if isinstance(refunds, Mapping) else None
    return "/".join(
        (
            str(invoice.get("status")),
            str(invoice.get("payment_status")),
            "overdue" if invoice.get("payment_overdue") else "-",
            "dispute_lost" if invoice.get("payment_dispute_lost_at") else "-",
            *((f"refunded_{refunded}",) if refunded else ()),
        )
    )


def refund_summary(credit_notes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What an invoice's credit notes refund: the amounts of refunds issued (pending at the payment
    provider or done; a declined one is not counted, a voided note neither) and the latest update."""
    cents = sum(
        int(n.get("refund_amount_cents") or 0)
        for n in credit_notes
        if n.get("refund_status") in ("pending", "succeeded") and n.get("credit_status") != "voided"
    )
    stamps = [
        str(n["updated_at"]) for n in credit_notes if n.get("updated_at") and n.get("refund_amount_cents")
    ]
    return {"refund_amount_cents": cents, "updated_at": max(stamps, key=_sortable) if stamps else None}


def _sortable(value: str) -> datetime:
    return _datetime(value, "credit_note.updated_at") or datetime.min.replace(tzinfo=UTC)


def record_version(record: Mapping[str, Any], data: Mapping[str, Any], what: str) -> int:
    """The entity version of a record: the source's sequence number, else (a bare object, a payload
    stored before sequences) the epoch second of the object's ``updated_at``, else 1."""
    sequence = record.get(SEQUENCE_FIELD)
    if sequence is not None:
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
            raise ValueError(f"{SEQUENCE_FIELD}: expected a positive integer, got {str(sequence)[:40]!r}")
        return sequence
    stamp = _datetime(data.get("updated_at"), f"{what}.updated_at")
    return max(1, int(stamp.timestamp())) if stamp is not None else 1


def _datetime(value: Any, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected an ISO 8601 date-time, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what}: {value[:40]!r} is not an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------- outbound
def minor_units(money: Money) -> int:
    return money.to_minor_units()


def table_code(
    table: Mapping[str, Any] | None, table_name: str | None, product_code: str, currency: str, what: str
) -> str:
    """The Lago code a mapping table gives a product; values may use ``{product_code}`` and ``{currency}``
    (Lago plans carry one currency: ``PLAT-BASE: "PLAT-BASE__{currency}"``); ``_default`` applies to
    products the table does not list. No table at all means the Lago code is the product code."""
    if table is None:
        template: Any = product_code
    else:
        template = table.get(product_code, table.get("_default"))
        if template is None:
            raise PermanentError(
                f"no Lago {what} mapped for product {product_code!r}",
                details={"table": table_name or "?", "product_code": product_code},
            )
    try:
        return str(template).format(product_code=product_code, currency=currency)
    except (KeyError, IndexError, ValueError) as exc:
        raise PermanentError(
            f"mapping table entry for {product_code!r} is not a valid template",
            details={"table": table_name or "?", "error": str(exc)},
        ) from None


def customer_payload(customer: Customer, external_id: str, currency: str) -> dict[str, Any]:
    """Lago's customer body: identity, billing address, currency, tax id, e-mail."""
    body: dict[str, Any] = {
        "external_id": external_id,
        "name": customer.name,
        "currency": currency,
        "customer_type": "company",
    }
    optional = {
        "legal_name": customer.legal_name,
        "email": customer.email,
        "phone": customer.phone,
        "tax_identification_number": customer.tax_id,
        "net_payment_term": customer.net_payment_term_days,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    address = customer.billing_address
    if address is not None:
        parts = {
            "address_line1": address.line1,
            "address_line2": address.line2,
            "city": address.city,
            "state": address.region,
            "zipcode": address.postal_code,
            "country": address.country,
        }
        body.update({k: v for k, v in parts.items() if v is not None})
    if customer.language:
        body["billing_configuration"] = {"document_locale": customer.language.split("-")[0].lower()}
    return body


@dataclass(frozen=True)
class SubscriptionSpec:
    """One subscription an order needs. ``key`` is the stable external id base (the order line, or the
    order and plan); a replacement after a price change gets ``key@v<order version>``."""

    key: str
    plan_code: str
    amount_cents: int
    currency: str
    start: date
    name: str
    line_ids: tuple[str, ...]
    # A line's own service start date (not the order's date) is behind ``start``.
    dated: bool = False
    period: str | None = None  # the lines' billing period (monthly, yearly...), when they share one

    def payload(self, external_customer_id: str, external_id: str, billing_time: str) -> dict[str, Any]:
        return {
            "external_customer_id": external_customer_id,
            "plan_code": self.plan_code,
            "external_id": external_id,
            "name": self.name,
            "billing_time": billing_time,
            "subscription_at": f"{self.start.isoformat()}T00:00:00Z",
            # The order's negotiated price per period (quantity and discounts included), exactly.
            "plan_overrides": {"amount_cents": self.amount_cents, "amount_currency": self.currency},
        }

    def matches(self, subscription: Mapping[str, Any]) -> bool:
        """Does a Lago subscription already bill what this spec asks for?"""
        return (
            subscription.get("plan_code") == self.plan_code
            and subscription.get("plan_amount_cents") == self.amount_cents
            and subscription.get("plan_amount_currency", self.currency) == self.currency
        )


def subscription_base(external_id: str) -> str:
    """The spec key of a Lago subscription external id (``<key>`` or ``<key>@v<n>``)."""
    return external_id.split("@v", 1)[0]


@dataclass(frozen=True)
class FeeSpec:
    """One add-on fee of the one-off invoice. ``units * unit_amount_cents`` is exactly the line's net amount
    in minor units: the line's quantity and unit price when their product is exact and undiscounted,
    otherwise one unit at the net amount."""

    add_on_code: str
    units: Decimal
    unit_amount_cents: int
    description: str

    def payload(self) -> dict[str, Any]:
        return {
            "add_on_code": self.add_on_code,
            "units": format(self.units, "f"),
            "unit_amount_cents": self.unit_amount_cents,
            "description": self.description,
        }

    def signature(self) -> tuple[str, Decimal, int, str]:
        return (self.add_on_code, self.units.normalize(), self.unit_amount_cents, self.description)


_MARKER = re.compile(r"\(order ([^()\s]+)\)\s*$")


def order_marker(order_id: str) -> str:
    """Written into every fee description of an order's one-off invoice, so the invoice can be told apart
    even before its metadata is written (create and metadata are two calls)."""
    return f"(order {order_id})"


def fee_spec(line: OrderLine, add_on_code: str, order_id: str) -> FeeSpec:
    net = minor_units(line.net_amount)
    unit = line.unit_price.to_minor_units()
    product = line.quantity * unit
    # Discounts leave quantity * price != net, and so does a price with sub-cent precision: then one unit.
    if product == product.to_integral_value() and int(product) == net:
        units, unit_cents = line.quantity, unit
    else:
        units, unit_cents = Decimal(1), net
    text = line.description or line.product_name
    return FeeSpec(add_on_code, units, unit_cents, f"{text} {order_marker(order_id)}")


@dataclass(frozen=True)
class BillingPlan:
    """Everything Lago must hold for one order."""

    currency: str
    subscriptions: tuple[SubscriptionSpec, ...]
    fees: tuple[FeeSpec, ...]

    def fee_signatures(self) -> list[tuple[str, Decimal, int, str]]:
        return sorted(f.signature() for f in self.fees)


def billing_plan(
    order: Order,
    *,
    plan_table: Mapping[str, Any] | None = None,
    plan_table_name: str | None = None,
    addon_table: Mapping[str, Any] | None = None,
    addon_table_name: str | None = None,
    grouping: str = "per_line",
) -> BillingPlan:
    """What a won order becomes in Lago. A non-won order (lost, reopened, cancelled) needs nothing."""
    currency = order.currency
    if order.status.value != "won":
        return BillingPlan(currency, (), ())
    specs: dict[str, SubscriptionSpec] = {}
    for line in order.recurring_lines:
        plan = table_code(plan_table, plan_table_name, line.product_code, currency, "plan")
        start = line.service_start or order.order_date
        cents = minor_units(line.net_amount)
        if grouping == "per_plan":
            key = f"{order.id}:{plan}"
            prior = specs.get(key)
            if prior is not None:
                specs[key] = SubscriptionSpec(
                    key,
                    plan,
                    prior.amount_cents + cents,
                    currency,
                    min(prior.start, start),
                    prior.name,
                    (*prior.line_ids, line.id),
                    prior.dated or line.service_start is not None,
                    prior.period if prior.period == _period(line) else None,
                )
                continue
            name = f"{line.product_name} ({order.name or order.id})"
        else:
            key = f"{order.id}:{line.id}"
            name = line.description or line.product_name
        specs[key] = SubscriptionSpec(
            key, plan, cents, currency, start, name, (line.id,), line.service_start is not None, _period(line)
        )
    fees = tuple(
        fee_spec(
            line, table_code(addon_table, addon_table_name, line.product_code, currency, "add-on"), order.id
        )
        for line in order.one_time_lines
    )
    return BillingPlan(currency, tuple(specs.values()), fees)


def _period(line: OrderLine) -> str | None:
    return line.billing_period.value if line.billing_period is not None else None


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def prorated_cents(cents: int, start: date, end: date) -> int:
    """What Lago bills for the days ``start``..``end`` (both included) of one calendar month of a monthly
    plan of ``cents``: round_half_up(cents * days / days of the month); the whole month is ``cents``."""
    days_in_month = (_first_of_next_month(start) - start.replace(day=1)).days
    days = (end - start).days + 1
    if days == days_in_month:
        return cents
    return int((Decimal(cents) * days / days_in_month).quantize(Decimal(1), ROUND_HALF_UP))


@dataclass(frozen=True)
class BackdatedChange:
    """A changed line whose new terms are effective (``effective``, its service date) before the last day
    its subscription was billed for (``billed_through``, the old one's termination day): the days between
    were billed at ``old_cents`` a period, the new terms say ``new_cents``. ``difference_cents`` is what
    finance would charge (positive) or credit (negative) for those days; None where the hub does not
    compute it (periods other than monthly, anniversary billing)."""

    key: str
    currency: str
    effective: date
    billed_through: date
    old_cents: int
    new_cents: int
    difference_cents: int | None

    def describe(self) -> str:
        def money(cents: int) -> str:
            return f"{self.currency} {Money.from_minor_units(cents, self.currency).amount}"

        diff = (
            "difference not computed (not a monthly calendar plan)"
            if self.difference_cents is None
            else f"difference {money(self.difference_cents)}"
        )
        return (
            f"line {self.key} effective {self.effective}, billed through {self.billed_through} at "
            f"{money(self.old_cents)} a period, new terms {money(self.new_cents)}: {diff}"
        )


def backdated_change(
    spec: SubscriptionSpec, before: Mapping[str, Any], billed_through: date, billing_time: str
) -> BackdatedChange | None:
    """The backdated part of a changed line, or None: the line's service date moved to a day after its
    previous subscription started and no later than the last day that subscription was billed for (a
    service date left as it was, the line's first day, is no amendment date)."""
    old_start = _date(before.get("subscription_at") or before.get("started_at"), "subscription_at")
    if old_start is None or not old_start < spec.start <= billed_through:
        return None
    old_cents = int(before.get("plan_amount_cents") or 0)
    difference: int | None = None
    if spec.period == "monthly" and billing_time == "calendar":
        difference, day = 0, spec.start
        while day <= billed_through:
            piece = min(_first_of_next_month(day) - timedelta(days=1), billed_through)
            difference += prorated_cents(spec.amount_cents, day, piece) - prorated_cents(
                old_cents, day, piece
            )
            day = piece + timedelta(days=1)
    return BackdatedChange(
        spec.key, spec.currency, spec.start, billed_through, old_cents, spec.amount_cents, difference
    )


def one_off_invoice_payload(external_customer_id: str, plan: BillingPlan) -> dict[str, Any]:
    return {
        "external_customer_id": external_customer_id,
        "currency": plan.currency,
        "fees": [f.payload() for f in plan.fees],
    }


def metadata_value(invoice: Mapping[str, Any], key: str) -> str | None:
    for item in invoice.get("metadata") or []:
        if isinstance(item, Mapping) and item.get("key") == key:
            value = item.get("value")
            return str(value) if value is not None else None
    return None


def invoice_fee_signatures(invoice: Mapping[str, Any]) -> list[tuple[str, Decimal, int, str]]:
    out = []
    for fee in invoice.get("fees") or []:
        item = fee.get("item") or {}
        units = _decimal(fee.get("units", "1"), "units")
        cents = int(fee.get("amount_cents", 0))
        unit_cents = _unit_cents(fee, units, cents)
        out.append((str(item.get("code")), units.normalize(), unit_cents, str(fee.get("description") or "")))
    return sorted(out)


def _unit_cents(fee: Mapping[str, Any], units: Decimal, amount_cents: int) -> int:
    # Lago reports the unit price in major units (precise_unit_amount); back to minor units exactly.
    precise = fee.get("precise_unit_amount")
    currency = str(fee.get("amount_currency") or "")
    if precise is not None and currency in MINOR_UNITS:
        return int(_decimal(precise, "precise_unit_amount").scaleb(MINOR_UNITS[currency]).to_integral_value())
    return amount_cents if units == 1 else -1


def unmarked_order_invoice(invoice: Mapping[str, Any], order_id: str) -> bool:
    """An invoice the hub created for this order whose metadata was not written yet: one-off, no hub
    metadata, and every fee description carries the order's marker."""
    if invoice.get("invoice_type") != "one_off" or metadata_value(invoice, METADATA_ORDER) is not None:
        return False
    fees = invoice.get("fees") or []
    marker = order_marker(order_id)
    return bool(fees) and all(str(f.get("description") or "").endswith(marker) for f in fees)


def metadata_update(invoice: Mapping[str, Any], pairs: Mapping[str, str]) -> list[dict[str, Any]]:
    """The metadata list for ``PUT /invoices/{id}``: Lago replaces the list, so existing items are kept
    (with their ids) and ours are added or updated."""
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in invoice.get("metadata") or []:
        key = str(item.get("key"))
        value = pairs.get(key, item.get("value"))
        entry: dict[str, Any] = {"key": key, "value": value}
        if item.get("lago_id"):
            entry["id"] = item["lago_id"]
        items.append(entry)
        seen.add(key)
    items.extend({"key": k, "value": v} for k, v in pairs.items() if k not in seen)
    return items


# ------------------------------------------------------------------------------------------- inbound
def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        return Decimal(str(value))  # a float from a JSON parser that did not use parse_float=Decimal
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a number") from None


def _cents(obj: Mapping[str, Any], field: str, currency: str, where: str) -> Money:
    value = obj.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}.{field}: expected integer minor units, got {value!r}")
    return Money.from_minor_units(value, currency)


def _date(value: Any, what: str) -> date | None:
    if value in (None, ""):
        return None
    text = str(value)
    try:
        if "T" in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an ISO date") from None


def unwrap(record: Mapping[str, Any], object_type: str) -> Mapping[str, Any]:
    """The Lago object inside a webhook body, or the record itself when it is the bare object."""
    inner = record.get(object_type)
    if not isinstance(inner, Mapping) and object_type == "invoice":
        inner = record.get(OBJECT_KEYS.get(str(record.get("webhook_type")), object_type))
    if isinstance(inner, Mapping):
        return inner
    if "lago_id" in record:
        return record
    raise ValueError(f"{object_type}: the record holds no Lago {object_type}")


def customer_from_lago(data: Mapping[str, Any]) -> Customer:
    external_id = data.get("external_id")
    if not external_id:
        raise ValueError("customer.external_id: missing")
    address = None
    if data.get("country"):
        address = Address(
            line1=data.get("address_line1") or None,
            line2=data.get("address_line2") or None,
            city=data.get("city") or None,
            region=data.get("state") or None,
            postal_code=data.get("zipcode") or None,
            country=data["country"],
        )
    refs = {"lago": str(data["lago_id"])} if data.get("lago_id") else {}
    email = data.get("email") or None
    if email and ("@" not in email or " " in email.strip()):
        email = None  # Lago accepts free text here; an unusable address is not a reason to lose the invoice
    return Customer(
        id=str(external_id),
        refs=refs,
        name=data.get("name") or data.get("legal_name") or str(external_id),
        legal_name=data.get("legal_name") or None,
        email=email.split(",")[0].strip() if email else None,
        phone=data.get("phone") or None,
        tax_id=data.get("tax_identification_number") or None,
        currency=data.get("currency") or None,
        net_payment_term_days=data.get("net_payment_term"),
        billing_address=address,
    )


def _product_code(code: str | None, currency: str, options: Mapping[str, Any]) -> str | None:
    if not code:
        return None
    suffix = f"{options.get('plan_currency_separator', '__')}{currency}"
    if options.get("strip_plan_currency", True) and code.endswith(suffix):
        return code[: -len(suffix)]
    return code


FAMILY_TABLE = "product_family_table"
"""Adapter option: a table under ``mappings`` of product code (or Lago plan/add-on code) -> product family.
Lago's fees carry no family; the hub's own cross-reference gives it, so revenue splits by family."""


def product_family(options: Mapping[str, Any], *codes: Any) -> str | None:
    """The family the family table gives the first listed code (the product code, then Lago's item code),
    else its ``_default``; None without a table or entry (the revenue table's own ``_default`` decides)."""
    table = options.get(FAMILY_TABLE)
    if not isinstance(table, Mapping):
        return None
    for code in codes:
        if isinstance(code, str) and code in table:
            return str(table[code])
    fallback = table.get("_default")
    return str(fallback) if fallback is not None else None


INVOICE_TYPES = frozenset({"subscription", "add_on", "one_off", "credit", "progressive_billing"})
"""Lago's ``invoice_type`` values (OpenAPI InvoiceObject): any other is refused, never posted by guess."""

_KINDS = {"add_on": ChargeKind.ONE_TIME, "subscription": ChargeKind.RECURRING, "charge": ChargeKind.RECURRING}


def one_off_order(invoice: Mapping[str, Any]) -> str | None:
    """The order a one-off invoice bills: its metadata, else its fees' order marker (the fees must be in
    the invoice: a listing leaves them out)."""
    return metadata_value(invoice, METADATA_ORDER) or _order_of_markers(invoice.get("fees") or [])


def _order_of_markers(fees: list[Any]) -> str | None:
    """A one-off invoice's webhook can arrive before its metadata is written; its fee descriptions already
    carry the order marker the hub wrote at creation. One order for every marked fee, or None."""
    orders = set()
    for fee in fees:
        text = str(fee.get("description") or (fee.get("item") or {}).get("invoice_display_name") or "")
        match = _MARKER.search(text) if isinstance(fee, Mapping) else None
        if match:
            orders.add(match.group(1))
    return orders.pop() if len(orders) == 1 else None


def _order_of_subscriptions(lines: list[InvoiceLine]) -> str | None:
    """A subscription invoice names no order, but its subscriptions do: the hub creates them with external
    ids ``<order id>:<line or plan>[@v<n>]``. One order for every subscription line, or None."""
    orders = {
        line.subscription_id.split(":", 1)[0]
        for line in lines
        if line.subscription_id and ":" in line.subscription_id
    }
    return orders.pop() if len(orders) == 1 else None


def _line(fee: Mapping[str, Any], currency: str, options: Mapping[str, Any], i: int) -> InvoiceLine:
    where = f"invoice.fees[{i}]"
    item = fee.get("item") or {}
    net = _cents(fee, "amount_cents", currency, where)
    units = _decimal(fee.get("units", "1"), f"{where}.units")
    unit_price = None
    precise = fee.get("precise_unit_amount")
    if precise is not None:
        amount = _decimal(precise, f"{where}.precise_unit_amount")
        if amount == amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency])) and amount >= 0:
            unit_price = Money(amount=amount, currency=currency)
    taxes = fee.get("applied_taxes") or []
    description = (
        item.get("invoice_display_name") or item.get("name") or fee.get("description") or item.get("code")
    )
    product_code = _product_code(item.get("code"), currency, options)
    return InvoiceLine(
        id=str(fee["lago_id"]),
        refs={"lago": str(fee["lago_id"])},
        description=str(description or "fee"),
        product_code=product_code,
        product_family=product_family(options, product_code, item.get("code")),
        kind=_KINDS.get(str(item.get("type"))),
        quantity=units if units >= 0 else None,
        unit_price=unit_price,
        net_amount=net,
        tax_code=str(taxes[0]["tax_code"]) if len(taxes) == 1 else None,
        service_start=_date(fee.get("from_date"), f"{where}.from_date"),
        service_end=_date(fee.get("to_date"), f"{where}.to_date"),
        subscription_id=fee.get("external_subscription_id") or None,
    )


def _taxes(items: Sequence[Mapping[str, Any]], currency: str, base_field: str, where: str) -> list[TaxLine]:
    out = []
    for i, tax in enumerate(items):
        base = tax.get(base_field)
        out.append(
            TaxLine(
                code=str(tax.get("tax_code")),
                name=tax.get("tax_name") or None,
                rate=_decimal(tax.get("tax_rate", 0), f"{where}[{i}].tax_rate"),
                taxable_amount=Money.from_minor_units(base, currency) if isinstance(base, int) else None,
                amount=_cents(tax, "amount_cents", currency, f"{where}[{i}]"),
            )
        )
    return out


def _expect(actual: Money, data: Mapping[str, Any], field: str, what: str) -> None:
    value = data.get(field)
    if isinstance(value, int) and not isinstance(value, bool) and actual.to_minor_units() != value:
        raise ValueError(f"invoice.{field}: {value} does not equal {what} ({actual.to_minor_units()})")


_STATUS = {"finalized": InvoiceStatus.FINALIZED, "voided": InvoiceStatus.VOIDED}


def _granted_credits(data: Mapping[str, Any], prepaid: int) -> int | None:
    """The part of the prepaid credits applied that came from granted (free) credits: Lago reports it
    (``prepaid_granted_credit_amount_cents``, with ``prepaid_purchased_credit_amount_cents`` the rest) for
    traceable wallets only; None when it does not (every credit applied is then taken as paid for)."""
    granted = data.get("prepaid_granted_credit_amount_cents")
    if granted is None:
        return None
    if isinstance(granted, bool) or not isinstance(granted, int) or not 0 <= granted <= prepaid:
        raise ValueError(
            f"invoice.prepaid_granted_credit_amount_cents: {str(granted)[:30]!r} is not a whole number "
            f"of minor units between 0 and prepaid_credit_amount_cents ({prepaid})"
        )
    purchased = data.get("prepaid_purchased_credit_amount_cents")
    if isinstance(purchased, int) and not isinstance(purchased, bool) and purchased + granted != prepaid:
        raise ValueError(
            f"invoice.prepaid_purchased_credit_amount_cents: {purchased} + granted {granted} does not "
            f"equal prepaid_credit_amount_cents ({prepaid})"
        )
    return granted


_INVOICE_CENTS = (
    "fees_amount_cents",
    "coupons_amount_cents",
    "credit_notes_amount_cents",
    "sub_total_excluding_taxes_amount_cents",
    "taxes_amount_cents",
    "sub_total_including_taxes_amount_cents",
    "prepaid_credit_amount_cents",
    "total_amount_cents",
)


def _check_invoice_shape(data: Mapping[str, Any]) -> None:
    """Wrong-typed fields are refused with the field's path before any mapping (a list where an id is
    expected, a string where cents are), never turned into text or skipped."""
    if not isinstance(data.get("lago_id"), str) or not data["lago_id"]:
        raise ValueError("invoice.lago_id: expected a non-empty string")
    if data.get("number") is not None and not isinstance(data["number"], str):
        raise ValueError("invoice.number: expected a string")
    for field in _INVOICE_CENTS:
        value = data.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"invoice.{field}: expected integer minor units, got {type(value).__name__}")
    payment = data.get("payment_status")
    if payment is not None and (
        not isinstance(payment, str) or payment not in {s.value for s in InvoicePaymentStatus}
    ):
        raise ValueError(f"invoice.payment_status: unknown value {str(payment)[:40]!r}")
    overdue = data.get("payment_overdue")
    if overdue is not None and not isinstance(overdue, bool):
        raise ValueError(f"invoice.payment_overdue: expected true or false, got {type(overdue).__name__}")
    for field in ("fees", "applied_taxes"):
        items = data.get(field)
        if items is None:
            continue
        if not isinstance(items, list):
            raise ValueError(f"invoice.{field}: expected a list, got {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"invoice.{field}[{i}]: expected an object, got {type(item).__name__}")
            taxes = item.get("applied_taxes")
            if taxes is not None and (
                not isinstance(taxes, list) or not all(isinstance(t, Mapping) for t in taxes)
            ):
                raise ValueError(f"invoice.{field}[{i}].applied_taxes: expected a list of objects")
            if item.get("item") is not None and not isinstance(item["item"], Mapping):
                raise ValueError(f"invoice.{field}[{i}].item: expected an object")
    customer = data.get("customer")
    if customer is not None:
        if not isinstance(customer, Mapping):
            raise ValueError(f"invoice.customer: expected an object, got {type(customer).__name__}")
        if customer.get("external_id") is not None and not isinstance(customer["external_id"], str):
            raise ValueError("customer.external_id: expected a string")


def invoice_from_lago(record: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> Invoice:
    """A Lago invoice (with its fees) as a canonical Invoice. Lines are the fees (plus one negative line
    for coupons), taxes are the applied taxes, and the totals are checked against Lago's own to the minor
    unit. Prepaid credits and credit notes applied to the invoice settle it like payments, they are not
    revenue: the canonical total is Lago's ``sub_total_including_taxes_amount_cents`` and the amount
    left to pay (``total_amount_cents``) is what ``lago.payment`` reports."""
    options = options or {}
    data = unwrap(record, "invoice")
    _check_invoice_shape(data)
    currency = str(data.get("currency") or "")
    if currency not in MINOR_UNITS:
        raise ValueError(f"invoice.currency: {currency[:10]!r} is not an ISO 4217 currency")
    lago_id = str(data["lago_id"])
    lines = [_line(fee, currency, options, i) for i, fee in enumerate(data.get("fees") or [])]
    coupons = data.get("coupons_amount_cents") or 0
    if coupons:
        lines.append(
            InvoiceLine(
                id=f"{lago_id}:coupons",
                description="Coupons",
                net_amount=-Money.from_minor_units(int(coupons), currency),
            )
        )
    taxes = _taxes(data.get("applied_taxes") or [], currency, "fees_amount_cents", "invoice.applied_taxes")
    status = _STATUS.get(str(data.get("status")), InvoiceStatus.DRAFT)
    payment = InvoicePaymentStatus(str(data.get("payment_status") or "pending"))
    if status is InvoiceStatus.FINALIZED and payment is InvoicePaymentStatus.SUCCEEDED:
        status = InvoiceStatus.PAID
    customer = customer_from_lago(data.get("customer") or {})
    billing_type = data.get("invoice_type")
    if billing_type is not None and billing_type not in INVOICE_TYPES:
        raise ValueError(
            f"invoice.invoice_type: {str(billing_type)[:30]!r} is not a Lago invoice type "
            f"({', '.join(sorted(INVOICE_TYPES))})"
        )
    prepaid = data.get("prepaid_credit_amount_cents") or 0
    granted = _granted_credits(data, prepaid)
    issue = _date(data.get("issuing_date"), "invoice.issuing_date")
    if issue is None:
        raise ValueError("invoice.issuing_date: missing")
    due = _date(data.get("payment_due_date"), "invoice.payment_due_date")
    invoice = Invoice.build(
        id=lago_id,
        refs={"lago": lago_id},
        version=record_version(record, data, "invoice"),
        source_modstamp=data.get("updated_at"),
        source_created_at=_datetime(data.get("created_at"), "invoice.created_at"),
        invoice_number=str(data.get("number") or lago_id),
        customer=customer,
        currency=currency,
        status=status,
        payment_status=payment,
        payment_overdue=data.get("payment_overdue") is True,
        payment_dispute_lost_at=_datetime(
            data.get("payment_dispute_lost_at"), "invoice.payment_dispute_lost_at"
        ),
        refunded=_refunded(data, currency),
        issue_date=issue,
        due_date=due if due is None or due >= issue else issue,
        lines=lines,
        taxes=taxes,
        order_id=metadata_value(data, METADATA_ORDER)
        or _order_of_markers(data.get("fees") or [])
        or _order_of_subscriptions(lines),
        billing_type=billing_type,
        prepaid_credit=Money.from_minor_units(prepaid, currency) if prepaid else None,
        prepaid_granted_credit=Money.from_minor_units(granted, currency) if granted is not None else None,
    )
    _expect(invoice.subtotal, data, "sub_total_excluding_taxes_amount_cents", "the fees less coupons")
    _expect(invoice.tax_total, data, "taxes_amount_cents", "the sum of applied_taxes")
    _expect(invoice.total, data, "sub_total_including_taxes_amount_cents", "subtotal + taxes")
    due_cents = data.get("total_amount_cents")
    if isinstance(due_cents, int):
        settled = sum(
            int(data.get(f) or 0)
            for f in (
                "credit_notes_amount_cents",
                "prepaid_credit_amount_cents",
                "progressive_billing_credit_amount_cents",
            )
        )
        if invoice.total.to_minor_units() - settled != due_cents:
            raise ValueError(
                f"invoice.total_amount_cents: {due_cents} does not equal the total less credits "
                f"({invoice.total.to_minor_units() - settled})"
            )
    return invoice


def _refunded(data: Mapping[str, Any], currency: str) -> Money | None:
    refunds = data.get(REFUNDS_FIELD)
    if refunds is None:
        return None
    cents = refunds.get("refund_amount_cents") if isinstance(refunds, Mapping) else None
    if isinstance(cents, bool) or not isinstance(cents, int) or cents < 0:
        raise ValueError(f"invoice.{REFUNDS_FIELD}.refund_amount_cents: expected a non-negative integer")
    return Money.from_minor_units(cents, currency)


_PAYMENT = {
    "pending": PaymentStatus.PENDING,
    "succeeded": PaymentStatus.SUCCEEDED,
    "failed": PaymentStatus.FAILED,
}


def payment_from_lago(record: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> Payment:
    """``invoice.payment_status_updated``: the payment of the amount left to pay on the invoice."""
    data = unwrap(record, "invoice")
    currency = str(data.get("currency") or "")
    if currency not in MINOR_UNITS:
        raise ValueError(f"invoice.currency: {currency[:10]!r} is not an ISO 4217 currency")
    lago_id = str(data["lago_id"])
    status = _PAYMENT.get(str(data.get("payment_status")))
    if status is None:
        raise ValueError(
            f"invoice.payment_status: {data.get('payment_status')!r} is not a Lago payment status"
        )
    if data.get("status") != "finalized":
        # A voided invoice owes nothing (its reversal is the void), a draft nothing yet: neither is a
        # payment, whatever payment_status it still carries.
        raise ValueError(
            f"invoice.status: {str(data.get('status'))[:20]!r} is not a payment (only a finalized invoice is paid)"
        )
    day = _date(data.get("updated_at"), "invoice.updated_at") or _date(
        data.get("issuing_date"), "issuing_date"
    )
    if day is None:
        raise ValueError("invoice.updated_at: missing")
    total = _cents(data, "total_amount_cents", currency, "invoice")
    paid = data.get("total_paid_amount_cents")
    if paid is not None and (isinstance(paid, bool) or not isinstance(paid, int) or paid < 0):
        raise ValueError("invoice.total_paid_amount_cents: expected non-negative integer minor units")
    # What Lago's payment records (POST /payments: manual, partial) paid is cleared by the payment
    # route, one document per payment; the invoice's state clears only the rest.
    amount = total - Money.from_minor_units(paid or 0, currency)
    if not amount.is_positive():
        raise ValueError(
            f"invoice.total_paid_amount_cents: {paid} of {total.to_minor_units()} paid by payment records: "
            "nothing left for the invoice's payment status to clear (the payment route clears them)"
        )
    return Payment(
        id=f"{lago_id}:payment",
        refs={"lago": lago_id},
        version=record_version(record, data, "invoice"),
        source_modstamp=data.get("updated_at"),
        customer_id=_customer_id(data, "invoice"),
        invoice_ids=(lago_id,),
        amount=amount,
        status=status,
        method=_provider(data),
        payment_date=day,
        reference=str(data.get("number")) if data.get("number") else None,
    )


_RECORD_STATUS = {
    "pending": PaymentStatus.PENDING,
    "processing": PaymentStatus.PENDING,
    "succeeded": PaymentStatus.SUCCEEDED,
    "failed": PaymentStatus.FAILED,
}
MANUAL_PAYMENT = "manual"
"""The payment method of Lago's manual payments (``type: manual``): the clearing table's key for them."""


def payment_record_from_lago(record: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> Payment:
    """A Lago payment object (``GET /payments``, ``payment.succeeded``): one payment of one invoice, part
    or all of it. A manual payment's method is ``manual``; a provider's, its provider type."""
    data = unwrap(record, "payment")
    lago_id = data.get("lago_id")
    if not isinstance(lago_id, str) or not lago_id:
        raise ValueError("payment.lago_id: missing")
    currency = str(data.get("amount_currency") or "")
    if currency not in MINOR_UNITS:
        raise ValueError(f"payment.amount_currency: {currency[:10]!r} is not an ISO 4217 currency")
    if data.get("payable_type", "Invoice") != "Invoice":
        raise ValueError(
            f"payment.payable_type: {str(data.get('payable_type'))[:20]!r} is not an invoice's payment "
            "(a payment request's invoices are cleared by their payment status)"
        )
    invoices = data.get("invoice_ids")
    if not isinstance(invoices, list) or len(invoices) != 1 or not invoices[0]:
        raise ValueError("payment.invoice_ids: expected the one invoice it pays")
    status = _RECORD_STATUS.get(str(data.get("payment_status")))
    if status is None:
        raise ValueError(
            f"payment.payment_status: {str(data.get('payment_status'))[:20]!r} is not a Lago payment status"
        )
    customer = data.get("external_customer_id")
    if not isinstance(customer, str) or not customer.strip():
        raise ValueError("payment.external_customer_id: missing (a payment without its customer is refused)")
    day = _date(data.get("created_at"), "payment.created_at")
    if day is None:
        raise ValueError("payment.created_at: missing")
    kind = data.get("type")
    if kind not in ("manual", "provider"):
        raise ValueError(f"payment.type: {str(kind)[:20]!r} is neither manual nor provider")
    provider = data.get("payment_provider_type") or data.get("payment_provider_code")
    numbers = data.get("invoice_numbers")
    number = numbers[0] if isinstance(numbers, list) and len(numbers) == 1 and numbers[0] else None
    return Payment(
        id=lago_id,
        refs={"lago": lago_id},
        version=record_version(record, data, "payment"),
        source_modstamp=data.get("updated_at") or data.get("created_at"),
        customer_id=customer,
        invoice_ids=(str(invoices[0]),),
        amount=_cents(data, "amount_cents", currency, "payment"),
        status=status,
        method=MANUAL_PAYMENT if kind == "manual" else (str(provider) if provider else None),
        payment_date=day,
        reference=str(number) if number else None,
    )


def _provider(data: Mapping[str, Any]) -> str | None:
    """The customer's payment provider (stripe, gocardless, adyen...), as Lago's customer object names it."""
    customer = data.get("customer")
    config = customer.get("billing_configuration") if isinstance(customer, Mapping) else None
    provider = config.get("payment_provider") if isinstance(config, Mapping) else None
    return str(provider) if isinstance(provider, str) and provider else None


def _customer_id(data: Mapping[str, Any], what: str) -> str:
    """The customer's external id (the hub's own customer id): refused when absent, never guessed."""
    customer = data.get("customer")
    found = customer.get("external_id") if isinstance(customer, Mapping) else None
    found = found or data.get("external_customer_id")
    if not isinstance(found, str) or not found.strip():
        raise ValueError(f"{what}.customer.external_id: missing (a document without its customer is refused)")
    return found


def credit_note_from_lago(record: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> CreditNote:
    """``credit_note.created``: the credit note with its items (one per credited fee) and taxes."""
    options = options or {}
    data = unwrap(record, "credit_note")
    currency = str(data.get("currency") or "")
    if currency not in MINOR_UNITS:
        raise ValueError(f"credit_note.currency: {currency[:10]!r} is not an ISO 4217 currency")
    lines = []
    for i, item in enumerate(data.get("items") or []):
        fee = item.get("fee") or {}
        fee_item = fee.get("item") or {}
        product_code = _product_code(fee_item.get("code"), currency, options)
        lines.append(
            CreditNoteLine(
                id=str(item["lago_id"]),
                refs={"lago": str(item["lago_id"])},
                description=fee_item.get("invoice_display_name") or fee_item.get("name") or None,
                invoice_line_id=fee.get("lago_id") or None,
                product_code=product_code,
                # The family as the invoice's fee had it, so the reversal hits the invoice's accounts.
                product_family=product_family(options, product_code, fee_item.get("code")),
                amount=_cents(item, "amount_cents", currency, f"credit_note.items[{i}]"),
            )
        )
    taxes = _taxes(
        data.get("applied_taxes") or [], currency, "base_amount_cents", "credit_note.applied_taxes"
    )
    voided = data.get("credit_status") == "voided"
    # Lago's credit note names no invoice type; its items' fees do: wallet credits are fees of type
    # "credit", found on top-up invoices only.
    fee_types = {str(((i.get("fee") or {}).get("item") or {}).get("type")) for i in data.get("items") or []}
    issue = _date(data.get("issuing_date"), "credit_note.issuing_date")
    if issue is None:
        raise ValueError("credit_note.issuing_date: missing")
    reason = str(data.get("reason") or "other")
    refund = data.get("refund_amount_cents")
    if refund is not None and (isinstance(refund, bool) or not isinstance(refund, int) or refund < 0):
        raise ValueError("credit_note.refund_amount_cents: expected non-negative integer minor units")
    note = CreditNote.build(
        id=str(data["lago_id"]),
        refs={"lago": str(data["lago_id"])},
        # Each state of the credit note (its refund declined) is a version of its own.
        version=record_version(record, data, "credit_note"),
        source_modstamp=data.get("updated_at"),
        source_created_at=_datetime(data.get("created_at"), "credit_note.created_at"),
        credit_note_number=str(data.get("number") or data["lago_id"]),
        invoice_id=str(data.get("lago_invoice_id")),
        invoice_number=data.get("invoice_number") or None,
        customer_id=_customer_id(data, "credit_note"),
        currency=currency,
        status=CreditNoteStatus.VOIDED if voided else CreditNoteStatus.FINALIZED,
        reason=CreditNoteReason(reason)
        if reason in CreditNoteReason.__members__.values()
        else CreditNoteReason.OTHER,
        issue_date=issue,
        lines=lines,
        taxes=taxes,
        billing_type="credit" if fee_types == {"credit"} else None,
        # A refund the provider declined paid nothing out: no cash leg (the amount stays the customer's).
        refund=Money.from_minor_units(refund, currency)
        if refund and data.get("refund_status") != "failed"
        else None,
        refund_declined=Money.from_minor_units(refund, currency)
        if refund and data.get("refund_status") == "failed"
        else None,
        payment_method=_provider(data),
    )
    for field, value, what in (
        ("sub_total_excluding_taxes_amount_cents", note.subtotal, "the items"),
        ("taxes_amount_cents", note.tax_total, "the applied taxes"),
        ("total_amount_cents", note.total, "subtotal + taxes"),
    ):
        given = data.get(field)
        if isinstance(given, int) and value.to_minor_units() != given:
            raise ValueError(f"credit_note.{field}: {given} does not equal {what} ({value.to_minor_units()})")
    return note


FUNDINGS_FIELD = "lead2cash_fundings"
"""Field of a wallet transaction the Lago source adds for an outbound one of a traceable wallet: what
funded it (``GET /wallet_transactions/{id}/fundings``), as ``[{"transaction_status", "amount_cents"}]``."""
_WALLET_KINDS = ("purchased", "granted", "invoiced", "voided")


def wallet_transaction_from_lago(
    record: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> WalletTransaction:
    """``wallet_transaction.created|updated``: the movement in money, its customer and currency from the
    wallet the webhook carries (``wallet``), and for an outbound one the part paid credits funded."""
    data = unwrap(record, "wallet_transaction")
    lago_id = data.get("lago_id")
    if not isinstance(lago_id, str) or not lago_id:
        raise ValueError("wallet_transaction.lago_id: missing")
    wallet = data.get("wallet")
    if not isinstance(wallet, Mapping):
        raise ValueError("wallet_transaction.wallet: missing (its customer and currency are the wallet's)")
    customer = wallet.get("external_customer_id")
    if not isinstance(customer, str) or not customer.strip():
        raise ValueError("wallet_transaction.wallet.external_customer_id: missing")
    currency = str(wallet.get("currency") or "")
    if currency not in MINOR_UNITS:
        raise ValueError(f"wallet_transaction.wallet.currency: {currency[:10]!r} is not a known currency")
    kind = data.get("transaction_status")
    if kind not in _WALLET_KINDS:
        raise ValueError(
            f"wallet_transaction.transaction_status: {str(kind)[:20]!r} is not one of {', '.join(_WALLET_KINDS)}"
        )
    try:
        amount = Money.of(Decimal(str(data.get("amount"))), currency)
    except (ArithmeticError, ValueError):
        raise ValueError(
            f"wallet_transaction.amount: {str(data.get('amount'))[:30]!r} is not an amount"
        ) from None
    purchased = None
    fundings = data.get(FUNDINGS_FIELD)
    if isinstance(fundings, list):
        cents = 0
        for f in fundings:
            value = f.get("amount_cents") if isinstance(f, Mapping) else None
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"wallet_transaction.{FUNDINGS_FIELD}: amount_cents missing")
            cents += value if f.get("transaction_status") == "purchased" else 0
        purchased = Money.from_minor_units(cents, currency)
    day = _date(data.get("settled_at") or data.get("created_at"), "wallet_transaction.created_at")
    if day is None:
        raise ValueError("wallet_transaction.created_at: missing")
    return WalletTransaction(
        id=lago_id,
        refs={"lago": lago_id},
        version=record_version(record, data, "wallet_transaction"),
        customer_id=customer,
        wallet_id=str(data.get("lago_wallet_id") or wallet.get("lago_id") or "-"),
        kind=kind,
        direction="outbound" if data.get("transaction_type") == "outbound" else "inbound",
        status=data.get("status") if data.get("status") in ("pending", "settled", "failed") else "pending",
        amount=amount,
        transaction_date=day,
        purchased=purchased,
        credit_note_id=data.get("lago_credit_note_id") or None,
        voided_invoice_id=data.get("lago_voided_invoice_id") or None,
    )


INBOUND = {
    "lago.invoice": invoice_from_lago,
    "lago.payment": payment_from_lago,
    "lago.payment_record": payment_record_from_lago,
    "lago.credit_note": credit_note_from_lago,
    "lago.wallet_transaction": wallet_transaction_from_lago,
}
