"""In-memory state of the Lago simulator: records, indexes, billing and the serializers of Lago's JSON.

Everything runs on the server's event loop, so no locks: each request mutates the state in one go.
"""

from __future__ import annotations

import calendar
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from lead2cash.sandbox.faults import EffectCounter
from lead2cash.sandbox.lago.currencies import LAGO_CURRENCIES
from lead2cash.sandbox.lago.money import decimal_str, round_half_up, tax_amount, to_major
from lead2cash.sandbox.lago.usage import Charge, Usage, UsageError

Emit = Callable[[str, str, dict[str, Any]], None]

INTERVAL_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "yearly": 12}
INVOICE_STATUSES = ("draft", "finalized", "voided", "failed", "pending")
PAYMENT_STATUSES = ("pending", "succeeded", "failed")
CREDIT_NOTE_REASONS = (
    "duplicated_charge",
    "product_unsatisfactory",
    "order_change",
    "order_cancellation",
    "fraudulent_charge",
    "other",
)


class LagoError(Exception):
    """An API error with Lago's body: 404 ``code``, 422 ``error_details``, 405 ``code``, 400 message."""

    def __init__(
        self, status: int, code: str = "", details: dict[str, list[str]] | None = None, msg: str = ""
    ):
        super().__init__(code or msg)
        self.status = status
        self.code = code
        self.details = details
        self.msg = msg

    def body(self) -> dict[str, Any]:
        if self.status == 404:
            return {"status": 404, "error": "Not Found", "code": self.code}
        if self.status == 422:
            return {
                "status": 422,
                "error": "Unprocessable Entity",
                "code": self.code or "validation_errors",
                "error_details": self.details or {},
            }
        if self.status == 405:
            return {"status": 405, "error": "Method Not Allowed", "code": self.code}
        if self.status == 403:
            return {"status": 403, "error": "Forbidden", "code": self.code}
        return {"status": self.status, "error": self.msg or "BadRequest"}


def not_found(resource: str) -> LagoError:
    return LagoError(404, f"{resource}_not_found")


def invalid(**details: str) -> LagoError:
    return LagoError(422, "validation_errors", {k: [v] for k, v in details.items()})


def ts(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def parse_datetime(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise invalid(**{name: "invalid_date"})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(**{name: "invalid_date"}) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _blank(value: Any) -> bool:
    """Ruby's ``blank?`` for a JSON value: null, false, an empty or whitespace string, an empty list/object."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or value is False or value == [] or value == {}


def _date_as_written(value: Any) -> date | None:
    """The date of an ISO 8601 time in its own offset (Ruby's ``DateTime.iso8601(value).to_date``); a stored
    time's UTC date; None when it is not one."""
    if isinstance(value, datetime):
        return value.date()
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def check_subscription_dates(subscription_at: Any, ending_at: Any, today: date) -> None:
    """Lago's Subscriptions::ValidateService (on create and on update): ``subscription_at`` is an ISO 8601
    time, and an ``ending_at`` given is one whose date is after today's and after the start's; otherwise 422
    ``validation_errors`` with ``invalid_date`` on each field refused."""
    errors: dict[str, str] = {}
    start = _date_as_written(subscription_at)
    if start is None:
        errors["subscription_at"] = "invalid_date"
    if not _blank(ending_at):
        end = _date_as_written(ending_at)
        if end is None or start is None or not (end > today and end > start):
            errors["ending_at"] = "invalid_date"
    if errors:
        raise invalid(**errors)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def add_months(day: date, months: int, anchor_day: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


class Clock:
    """The simulator's time: a fixed start plus what the admin advanced it by."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.offset = timedelta()

    def now(self) -> datetime:
        return self.start + self.offset

    def today(self) -> date:
        return self.now().date()


@dataclass
class Tax:
    lago_id: str
    code: str
    name: str
    rate: Decimal
    created_at: datetime

    def json(self) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "code": self.code,
            "description": None,
            "rate": float(self.rate),
            "applied_to_organization": False,
            "created_at": ts(self.created_at),
        }


@dataclass
class Plan:
    lago_id: str
    code: str
    name: str
    interval: str
    amount_cents: int
    currency: str
    created_at: datetime
    description: str = ""
    pay_in_advance: bool = False
    taxes: list[Tax] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)  # usage charges (usage.py)

    def json(self) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "invoice_display_name": self.name,
            "created_at": ts(self.created_at),
            "code": self.code,
            "interval": self.interval,
            "description": self.description,
            "amount_cents": self.amount_cents,
            "amount_currency": self.currency,
            "trial_period": 0.0,
            "pay_in_advance": self.pay_in_advance,
            "bill_charges_monthly": None,
            "charges": [c.json() for c in self.charges],
            "taxes": [t.json() for t in self.taxes],
        }


@dataclass
class AddOn:
    lago_id: str
    code: str
    name: str
    amount_cents: int
    currency: str
    created_at: datetime
    description: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "invoice_display_name": self.name,
            "code": self.code,
            "amount_cents": self.amount_cents,
            "amount_currency": self.currency,
            "description": self.description,
            "created_at": ts(self.created_at),
            "taxes": [],
        }


CUSTOMER_FIELDS = (
    "address_line1",
    "address_line2",
    "city",
    "country",
    "email",
    "legal_name",
    "legal_number",
    "logo_url",
    "name",
    "firstname",
    "lastname",
    "phone",
    "state",
    "tax_identification_number",
    "timezone",
    "url",
    "zipcode",
    "net_payment_term",
    "customer_type",
)


@dataclass
class Customer:
    lago_id: str
    external_id: str
    sequential_id: int
    slug: str
    created_at: datetime
    updated_at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    currency: str | None = None
    account_type: str = "customer"
    tax_codes: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    invoice_seq: int = 0

    def base_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "lago_id": self.lago_id,
            "sequential_id": self.sequential_id,
            "slug": self.slug,
            "external_id": self.external_id,
            "billing_entity_code": "lead2cash",
            "applicable_timezone": self.fields.get("timezone") or "UTC",
            "currency": self.currency,
            "account_type": self.account_type,
            "created_at": ts(self.created_at),
            "updated_at": ts(self.updated_at),
            "finalize_zero_amount_invoice": "inherit",
            "skip_invoice_custom_sections": False,
            "billing_configuration": {"invoice_grace_period": 0, "document_locale": "en"},
            "shipping_address": {
                "address_line1": None,
                "address_line2": None,
                "city": None,
                "country": None,
                "state": None,
                "zipcode": None,
            },
            "metadata": list(self.metadata),
        }
        for name in CUSTOMER_FIELDS:
            data[name] = self.fields.get(name)
        return data


@dataclass
class Subscription:
    lago_id: str
    external_id: str
    customer: Customer
    plan: Plan
    name: str | None
    billing_time: str
    subscription_at: datetime
    created_at: datetime
    status: str = "pending"
    started_at: datetime | None = None
    terminated_at: datetime | None = None
    ending_at: datetime | None = None
    previous_plan_code: str | None = None
    amount_cents: int = 0
    # Start of the first period not billed yet, and the anniversary anchor.
    period_start: date | None = None
    anchor: date | None = None
    periods_billed: int = 0
    on_termination_invoice: str = "generate"
    on_termination_credit_note: str = "skip"  # the spec's enum has no null

    def boundary(self) -> date:
        """Exclusive end of the current billing period."""
        assert self.period_start is not None and self.anchor is not None
        interval = self.plan.interval
        if interval == "weekly":
            if self.billing_time == "anniversary":
                return self.anchor + timedelta(weeks=self.periods_billed + 1)
            return self.period_start + timedelta(days=7 - self.period_start.weekday())
        months = INTERVAL_MONTHS[interval]
        if self.billing_time == "anniversary":
            return add_months(self.anchor, months * (self.periods_billed + 1), self.anchor.day)
        start = self.period_start
        month0 = (start.month - 1) // months * months + months
        return date(start.year + month0 // 12, month0 % 12 + 1, 1)

    def full_period_start(self, boundary: date) -> date:
        interval = self.plan.interval
        if interval == "weekly":
            return boundary - timedelta(weeks=1)
        return add_months(boundary, -INTERVAL_MONTHS[interval], boundary.day)

    def json(self) -> dict[str, Any]:
        period_start = self.period_start if self.status == "active" else None
        return {
            "lago_id": self.lago_id,
            "external_id": self.external_id,
            "lago_customer_id": self.customer.lago_id,
            "external_customer_id": self.customer.external_id,
            "billing_entity_code": "lead2cash",
            "billing_time": self.billing_time,
            "name": self.name,
            "plan_code": self.plan.code,
            "plan_amount_cents": self.amount_cents,
            "plan_amount_currency": self.plan.currency,
            "status": self.status,
            "created_at": ts(self.created_at),
            "canceled_at": None,
            "started_at": ts(self.started_at),
            "ending_at": ts(self.ending_at),
            "subscription_at": ts(self.subscription_at),
            "terminated_at": ts(self.terminated_at),
            "previous_plan_code": self.previous_plan_code,
            "next_plan_code": None,
            "downgrade_plan_date": None,
            "trial_ended_at": None,
            "current_billing_period_started_at": ts(midnight(period_start)) if period_start else None,
            "current_billing_period_ending_at": (
                ts(midnight(self.boundary()) - timedelta(seconds=1)) if period_start else None
            ),
            "on_termination_credit_note": self.on_termination_credit_note,
            "on_termination_invoice": self.on_termination_invoice,
            "consolidate_invoice": True,
            "purchase_order_number": None,
        }

    def extended_json(self) -> dict[str, Any]:
        data = self.json()
        data["plan"] = self.plan.json()
        return data

    def webhook_json(self) -> dict[str, Any]:
        data = self.extended_json()
        data["customer"] = self.customer.base_json()
        return data


@dataclass
class AppliedTax:
    lago_id: str
    tax: Tax
    base_cents: int
    amount_cents: int


@dataclass
class Fee:
    lago_id: str
    item_type: str  # add_on | subscription | charge
    item_code: str
    item_name: str
    item_id: str
    units: Decimal
    unit_amount_cents: int
    amount_cents: int
    currency: str
    taxes: list[AppliedTax]
    created_at: datetime
    description: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    subscription: Subscription | None = None
    credited_cents: int = 0
    charge_id: str | None = None  # a usage charge's fee
    events_count: int | None = None

    @property
    def taxes_amount_cents(self) -> int:
        return sum(t.amount_cents for t in self.taxes)

    @property
    def taxes_rate(self) -> Decimal:
        return sum((t.tax.rate for t in self.taxes), Decimal(0))

    def json(self, invoice: Invoice) -> dict[str, Any]:
        sub = self.subscription
        return {
            "lago_id": self.lago_id,
            "lago_charge_id": self.charge_id,
            "lago_charge_filter_id": None,
            "lago_invoice_id": invoice.lago_id,
            "lago_true_up_fee_id": None,
            "lago_true_up_parent_fee_id": None,
            "lago_subscription_id": sub.lago_id if sub else None,
            "lago_customer_id": invoice.customer.lago_id,
            "external_customer_id": invoice.customer.external_id,
            "external_subscription_id": sub.external_id if sub else None,
            "amount_cents": self.amount_cents,
            "amount_currency": self.currency,
            "taxes_amount_cents": self.taxes_amount_cents,
            "taxes_rate": float(self.taxes_rate),
            "units": decimal_str(self.units),
            "precise_unit_amount": to_major(self.unit_amount_cents, self.currency),
            "total_aggregated_units": decimal_str(self.units),
            "total_amount_cents": self.amount_cents + self.taxes_amount_cents,
            "total_amount_currency": self.currency,
            "events_count": self.events_count,
            "pay_in_advance": False,
            "invoiceable": True,
            "from_date": ts(self.from_date),
            "to_date": ts(self.to_date),
            "payment_status": invoice.payment_status,
            "created_at": ts(self.created_at),
            "succeeded_at": None,
            "failed_at": None,
            "refunded_at": None,
            "event_transaction_id": None,
            "description": self.description,
            "sub_total_excluding_taxes_amount_cents": self.amount_cents,
            "sub_total_excluding_taxes_precise_amount_cents": decimal_str(Decimal(self.amount_cents)),
            "self_billed": False,
            "item": {
                "type": self.item_type,
                "code": self.item_code,
                "name": self.item_name,
                "description": self.description,
                "lago_item_id": self.item_id,
                "item_type": _ITEM_TYPES[self.item_type],
            },
            "applied_taxes": [
                {
                    "lago_id": t.lago_id,
                    "lago_fee_id": self.lago_id,
                    "lago_tax_id": t.tax.lago_id,
                    "tax_name": t.tax.name,
                    "tax_code": t.tax.code,
                    "tax_rate": float(t.tax.rate),
                    "tax_description": None,
                    "amount_cents": t.amount_cents,
                    "amount_currency": self.currency,
                    "created_at": ts(self.created_at),
                }
                for t in self.taxes
            ],
        }


_ITEM_TYPES = {
    "add_on": "AddOn",
    "subscription": "Subscription",
    "charge": "BillableMetric",
    "credit": "WalletTransaction",
}


@dataclass
class Invoice:
    lago_id: str
    customer: Customer
    invoice_type: str  # one_off | subscription
    currency: str
    fees: list[Fee]
    applied_taxes: list[AppliedTax]
    issuing_date: date
    created_at: datetime
    updated_at: datetime
    status: str = "draft"
    payment_status: str = "pending"
    number: str = ""
    sequential_id: int | None = None
    metadata: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    billing_periods: list[dict[str, Any]] = field(default_factory=list)
    credit_notes_amount_cents: int = 0
    net_payment_term: int = 0
    payment_overdue: bool = False
    payment_dispute_lost_at: datetime | None = None
    prepaid_credit_amount_cents: int = 0  # wallet credits applied (wallets.py)
    prepaid_granted_credit_amount_cents: int | None = None  # of which granted credits (traceable wallets)
    total_paid_amount_cents: int = 0  # succeeded payments recorded on it (POST /payments)

    @property
    def fees_amount_cents(self) -> int:
        return sum(f.amount_cents for f in self.fees)

    @property
    def taxes_amount_cents(self) -> int:
        return sum(t.amount_cents for t in self.applied_taxes)

    @property
    def total_amount_cents(self) -> int:
        return (
            self.fees_amount_cents
            + self.taxes_amount_cents
            - self.credit_notes_amount_cents
            - self.prepaid_credit_amount_cents
        )

    def json(self) -> dict[str, Any]:
        fees, taxes = self.fees_amount_cents, self.taxes_amount_cents
        data = {
            "lago_id": self.lago_id,
            "billing_entity_code": "lead2cash",
            "sequential_id": self.sequential_id,
            "number": self.number,
            "issuing_date": self.issuing_date.isoformat(),
            "payment_due_date": (self.issuing_date + timedelta(days=self.net_payment_term)).isoformat(),
            "payment_overdue": self.payment_overdue,
            "net_payment_term": self.net_payment_term,
            "invoice_type": self.invoice_type,
            "status": self.status,
            "payment_status": self.payment_status,
            "currency": self.currency,
            "fees_amount_cents": fees,
            "coupons_amount_cents": 0,
            "credit_notes_amount_cents": self.credit_notes_amount_cents,
            "sub_total_excluding_taxes_amount_cents": fees,
            "taxes_amount_cents": taxes,
            "sub_total_including_taxes_amount_cents": fees + taxes,
            "prepaid_credit_amount_cents": self.prepaid_credit_amount_cents,
            "prepaid_granted_credit_amount_cents": self.prepaid_granted_credit_amount_cents,
            "prepaid_purchased_credit_amount_cents": (
                None
                if self.prepaid_granted_credit_amount_cents is None
                else self.prepaid_credit_amount_cents - self.prepaid_granted_credit_amount_cents
            ),
            "progressive_billing_credit_amount_cents": 0,
            "total_amount_cents": self.total_amount_cents,
            # Lago's Invoice#total_due_amount_cents: nothing on a voided invoice, else the total less the
            # payments recorded (a payment status set through PUT records no payment).
            "total_paid_amount_cents": self.total_paid_amount_cents,
            "total_due_amount_cents": 0
            if self.status == "voided"
            else self.total_amount_cents - self.total_paid_amount_cents,
            "version_number": 4,
            "self_billed": False,
            "created_at": ts(self.created_at),
            "updated_at": ts(self.updated_at),
            "customer": self.customer.base_json(),
            "metadata": list(self.metadata),
            "applied_taxes": [
                {
                    "lago_id": t.lago_id,
                    "lago_invoice_id": self.lago_id,
                    "lago_tax_id": t.tax.lago_id,
                    "tax_name": t.tax.name,
                    "tax_code": t.tax.code,
                    "tax_rate": float(t.tax.rate),
                    "tax_description": None,
                    "amount_cents": t.amount_cents,
                    "amount_currency": self.currency,
                    "fees_amount_cents": t.base_cents,
                    "created_at": ts(self.created_at),
                }
                for t in self.applied_taxes
            ],
        }
        if self.sequential_id is None:
            del data["sequential_id"]  # a draft has none yet; the schema wants an integer when present
        if self.payment_dispute_lost_at is not None:  # the schema has no null for it
            data["payment_dispute_lost_at"] = ts(self.payment_dispute_lost_at)
        return data

    def extended_json(self) -> dict[str, Any]:
        data = self.json()
        data["billing_periods"] = list(self.billing_periods)
        data["credits"] = []
        data["fees"] = [f.json(self) for f in self.fees]
        data["subscriptions"] = [s.json() for s in self.subscriptions]
        return data


@dataclass
class CreditNote:
    lago_id: str
    sequential_id: int
    number: str
    invoice: Invoice
    reason: str
    description: str | None
    items: list[tuple[str, Fee, int]]  # (lago_id, fee, amount_cents)
    applied_taxes: list[AppliedTax]
    credit_amount_cents: int
    refund_amount_cents: int
    created_at: datetime
    # A refund goes to the payment provider: pending until it answers (succeeded or failed).
    refund_status: str | None = None
    updated_at: datetime | None = None

    @property
    def sub_total_cents(self) -> int:
        return sum(amount for _, _, amount in self.items)

    @property
    def taxes_amount_cents(self) -> int:
        return sum(t.amount_cents for t in self.applied_taxes)

    def json(self) -> dict[str, Any]:
        cur = self.invoice.currency
        total = self.sub_total_cents + self.taxes_amount_cents
        rates = {t.tax.code: t.tax.rate for t in self.applied_taxes}
        return {
            "lago_id": self.lago_id,
            "billing_entity_code": "lead2cash",
            "sequential_id": self.sequential_id,
            "number": self.number,
            "lago_invoice_id": self.invoice.lago_id,
            "invoice_number": self.invoice.number,
            "issuing_date": self.created_at.date().isoformat(),
            "credit_status": "available" if self.credit_amount_cents else None,
            "refund_status": self.refund_status,
            "reason": self.reason,
            "description": self.description,
            "currency": cur,
            "total_amount_cents": total,
            "taxes_amount_cents": self.taxes_amount_cents,
            "taxes_rate": float(sum(rates.values(), Decimal(0))),
            "sub_total_excluding_taxes_amount_cents": self.sub_total_cents,
            "balance_amount_cents": self.credit_amount_cents,
            "credit_amount_cents": self.credit_amount_cents,
            "refund_amount_cents": self.refund_amount_cents,
            "offset_amount_cents": 0,
            "coupons_adjustment_amount_cents": 0,
            "created_at": ts(self.created_at),
            "updated_at": ts(self.updated_at or self.created_at),
            "file_url": None,
            "self_billed": False,
            "customer": self.invoice.customer.base_json(),
            "items": [
                {
                    "lago_id": item_id,
                    "amount_cents": amount,
                    "amount_currency": cur,
                    "fee": fee.json(self.invoice),
                }
                for item_id, fee, amount in self.items
            ],
            "applied_taxes": [
                {
                    "lago_id": t.lago_id,
                    "lago_credit_note_id": self.lago_id,
                    "lago_tax_id": t.tax.lago_id,
                    "tax_name": t.tax.name,
                    "tax_code": t.tax.code,
                    "tax_rate": float(t.tax.rate),
                    "tax_description": None,
                    "base_amount_cents": t.base_cents,
                    "amount_cents": t.amount_cents,
                    "amount_currency": cur,
                    "created_at": ts(self.created_at),
                }
                for t in self.applied_taxes
            ],
        }


@dataclass
class Payment:
    """A payment recorded on an invoice (``Payments::ManualCreateService``: a manual payment, succeeded at
    once). Serialized as ``V1::PaymentSerializer``: a manual payment has no provider, so its provider
    fields are null (the OpenAPI document declares them strings; tests/conformance/lago notes it)."""

    lago_id: str
    invoice: Invoice
    amount_cents: int
    reference: str
    created_at: datetime
    payment_type: str = "manual"
    payment_status: str = "succeeded"

    def json(self) -> dict[str, Any]:
        customer = self.invoice.customer
        return {
            "lago_id": self.lago_id,
            "lago_customer_id": customer.lago_id,
            "external_customer_id": customer.external_id,
            "invoice_ids": [self.invoice.lago_id],
            "invoice_numbers": [self.invoice.number],
            "lago_payable_id": self.invoice.lago_id,
            "payable_type": "Invoice",
            "amount_cents": self.amount_cents,
            "amount_currency": self.invoice.currency,
            "status": self.payment_status,
            "payment_status": self.payment_status,
            "type": self.payment_type,
            "reference": self.reference,
            "payment_provider_code": None,
            "payment_provider_type": None,
            "external_payment_id": None,
            "provider_payment_id": None,
            "provider_customer_id": None,
            "next_action": {},
            "created_at": ts(self.created_at),
        }


@dataclass
class WebhookEndpoint:
    lago_id: str
    url: str
    signature_algo: str
    name: str | None
    event_types: list[str] | None
    created_at: datetime

    def json(self, organization_id: str) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "lago_organization_id": organization_id,
            "webhook_url": self.url,
            "signature_algo": self.signature_algo,
            "name": self.name,
            "event_types": self.event_types,
            "created_at": ts(self.created_at),
        }


def paginate(items: list[Any], page: int, per_page: int) -> tuple[list[Any], dict[str, Any]]:
    total = len(items)
    pages = -(-total // per_page)
    chunk = items[(page - 1) * per_page : page * per_page]
    meta = {
        "current_page": page,
        "next_page": page + 1 if page < pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": pages,
        "total_count": total,
    }
    return chunk, meta


class LagoStore:
    """The organization's data and the operations the API exposes on it."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Clock,
        effects: EffectCounter,
        emit: Emit,
        currencies: tuple[str, ...],
        grace_period_days: int = 0,
        organization_name: str = "lead2cash sandbox",
        accepted_currencies: frozenset[str] | None = None,
    ) -> None:
        self._rng = random.Random(f"lago-ids:{seed}")
        self.clock = clock
        self.effects = effects
        self.emit = emit
        self.currencies = currencies  # the catalogue's, seeded with plans
        # What the API takes, as Lago's own validation (not its OpenAPI enum): see currencies.py.
        self.accepted_currencies = LAGO_CURRENCIES if accepted_currencies is None else accepted_currencies
        self.grace_period_days = grace_period_days
        self.organization_id = self.new_id()
        self.number_prefix = f"{organization_name[:3].upper()}-{self.organization_id[-4:].upper()}"
        self.taxes: dict[str, Tax] = {}
        self.tax_by_country: dict[str, str] = {}
        self.plans: dict[str, Plan] = {}
        self.add_ons: dict[str, AddOn] = {}
        self.customers: dict[str, Customer] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.invoices: dict[str, Invoice] = {}
        self.credit_notes: dict[str, CreditNote] = {}
        self.payments: dict[str, Payment] = {}
        self.webhook_endpoints: dict[str, WebhookEndpoint] = {}
        self._customer_seq = 0
        self.usage = Usage(self.new_id, self.clock.now)
        from lead2cash.sandbox.lago.wallets import Wallets  # it builds on this module's records

        self.wallets = Wallets(self)

    # -- identifiers -------------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # -- catalogue ---------------------------------------------------------------------------------

    def add_tax(self, code: str, name: str, rate: Decimal, country: str | None = None) -> Tax:
        tax = Tax(self.new_id(), code, name, rate, self.clock.now())
        self.taxes[code] = tax
        if country:
            self.tax_by_country[country] = code
        return tax

    def add_plan(
        self, code: str, name: str, interval: str, amount_cents: int, currency: str, **kw: Any
    ) -> Plan:
        plan = Plan(self.new_id(), code, name, interval, amount_cents, currency, self.clock.now(), **kw)
        self.plans[code] = plan
        return plan

    def create_plan(self, data: dict[str, Any]) -> Plan:
        """``POST /plans``: a plan with its usage charges (standard, package, graduated)."""
        errors = {k: ["value_is_mandatory"] for k in ("name", "code", "interval", "amount_currency")
                  if not data.get(k)}  # fmt: skip
        if not isinstance(data.get("amount_cents"), int):
            errors["amount_cents"] = ["value_is_mandatory"]
        if data.get("interval") and data["interval"] not in ("weekly", *INTERVAL_MONTHS):
            errors["interval"] = ["value_is_invalid"]
        if data.get("code") in self.plans:
            errors["code"] = ["value_already_exist"]
        if errors:
            raise LagoError(422, "validation_errors", errors)
        currency = self.check_currency(data["amount_currency"])
        try:
            charges = self.usage.build_charges(data.get("charges"))
        except UsageError as exc:
            raise LagoError(exc.status, exc.code, exc.details) from None
        return self.add_plan(
            str(data["code"]), str(data["name"]), str(data["interval"]), int(data["amount_cents"]), currency,
            description=data.get("description") or "", pay_in_advance=bool(data.get("pay_in_advance")),
            charges=charges,
        )  # fmt: skip

    def add_add_on(self, code: str, name: str, amount_cents: int, currency: str, **kw: Any) -> AddOn:
        add_on = AddOn(self.new_id(), code, name, amount_cents, currency, self.clock.now(), **kw)
        self.add_ons[code] = add_on
        return add_on

    def check_currency(self, currency: Any) -> str:
        if currency not in self.accepted_currencies:
            raise invalid(currency="value_is_invalid")
        return str(currency)

    # -- customers ---------------------------------------------------------------------------------

    def upsert_customer(self, data: dict[str, Any]) -> Customer:
        external_id = data.get("external_id")
        if not isinstance(external_id, str) or not external_id:
            raise invalid(external_id="value_is_mandatory")
        now = self.clock.now()
        customer = self.customers.get(external_id)
        created = customer is None
        if customer is None:
            self._customer_seq += 1
            customer = Customer(
                self.new_id(),
                external_id,
                self._customer_seq,
                f"{self.number_prefix}-{self._customer_seq:03d}",
                now,
                now,
            )
        currency = data.get("currency")
        if currency is not None:
            self.check_currency(currency)
            if customer.currency and currency != customer.currency and self._customer_has_documents(customer):
                raise invalid(currency="currencies_does_not_match")
            customer.currency = currency
        tax_codes = data.get("tax_codes")
        if tax_codes is not None:
            unknown = [c for c in tax_codes if c not in self.taxes]
            if unknown:
                raise not_found("tax")
            customer.tax_codes = list(tax_codes)
        if data.get("account_type") in ("customer", "partner"):
            customer.account_type = data["account_type"]
        for name in CUSTOMER_FIELDS:
            if name in data:
                customer.fields[name] = data[name]
        if isinstance(data.get("metadata"), list):
            customer.metadata = [
                {
                    "lago_id": m.get("id") or self.new_id(),
                    "key": str(m.get("key", "")),
                    "value": str(m.get("value", "")),
                    "display_in_invoice": bool(m.get("display_in_invoice", False)),
                    "created_at": ts(now),
                }
                for m in data["metadata"]
                if isinstance(m, dict)
            ]
        customer.updated_at = now
        self.customers[external_id] = customer
        self.effects.record("customer.create" if created else "customer.update", external_id)
        return customer

    def _customer_has_documents(self, customer: Customer) -> bool:
        return any(i.customer is customer for i in self.invoices.values()) or any(
            s.customer is customer for s in self.subscriptions.values()
        )

    def customer(self, external_id: str) -> Customer:
        try:
            return self.customers[external_id]
        except KeyError:
            raise not_found("customer") from None

    def delete_customer(self, external_id: str) -> Customer:
        """Lago's DELETE /customers/{external_customer_id}: its subscriptions end (no termination invoice,
        since Lago discards the customer's drafts) and it is gone from every listing."""
        customer = self.customer(external_id)
        for sub in list(self.subscriptions.values()):
            if sub.customer is customer and sub.status in ("active", "pending"):
                sub.status, sub.terminated_at = "terminated", self.clock.now()
                self.effects.record("subscription.terminate", sub.external_id)
        del self.customers[external_id]
        self.effects.record("customer.delete", external_id)
        return customer

    def customer_taxes(self, customer: Customer) -> list[Tax]:
        if customer.tax_codes:
            return [self.taxes[c] for c in customer.tax_codes]
        code = self.tax_by_country.get(customer.fields.get("country") or "")
        return [self.taxes[code]] if code else []

    def _assign_currency(self, customer: Customer, currency: str) -> None:
        if customer.currency is None:
            customer.currency = currency
        elif customer.currency != currency:
            raise invalid(currency="currencies_does_not_match")

    # -- subscriptions -----------------------------------------------------------------------------

    def create_subscription(self, data: dict[str, Any]) -> tuple[Subscription, bool]:
        missing = {k: "value_is_mandatory" for k in ("external_customer_id", "plan_code", "external_id")}
        for key in list(missing):
            if isinstance(data.get(key), str) and data[key]:
                del missing[key]
        if missing:
            raise invalid(**missing)
        billing_time = data.get("billing_time") or "calendar"
        if billing_time not in ("calendar", "anniversary"):
            raise invalid(billing_time="value_is_invalid")
        customer = self.customer(data["external_customer_id"])
        plan = self.plans.get(data["plan_code"])
        if plan is None:
            raise not_found("plan")
        if data.get("ending_at"):  # nothing is created when the dates are refused
            today = self.clock.now()
            check_subscription_dates(data.get("subscription_at") or today, data["ending_at"], today.date())
        overrides = data.get("plan_overrides") or {}
        currency = overrides.get("amount_currency") or plan.currency
        self.check_currency(currency)
        existing = self.subscriptions.get(data["external_id"])
        if existing is not None and existing.status in ("active", "pending"):
            if existing.customer is not customer:
                raise invalid(external_id="value_already_exist")
            if existing.plan is not plan:
                # A plan change on the same external id: Lago upgrades in place.
                existing.previous_plan_code = existing.plan.code
                existing.plan = plan
                existing.amount_cents = int(overrides.get("amount_cents", plan.amount_cents))
            return existing, False
        self._assign_currency(customer, currency)
        now = self.clock.now()
        sub_at = (
            parse_datetime(data["subscription_at"], "subscription_at") if data.get("subscription_at") else now
        )
        sub = Subscription(
            self.new_id(),
            data["external_id"],
            customer,
            plan,
            data.get("name"),
            billing_time,
            sub_at,
            now,
            amount_cents=int(overrides.get("amount_cents", plan.amount_cents)),
            ending_at=parse_datetime(data["ending_at"], "ending_at") if data.get("ending_at") else None,
        )
        self.subscriptions[sub.external_id] = sub
        self.effects.record("subscription.create", sub.external_id)
        if sub_at <= now:
            self._activate(sub)
            self._skip_completed_periods(sub, now)
        return sub, True

    def _skip_completed_periods(self, sub: Subscription, now: datetime) -> None:
        """A subscription created with a start date in the past: "Lago will not generate any invoices for
        past periods already completed" (guide/subscriptions/assign-plan.mdx, start date in the past); the
        arrears fee of the current period goes on its next invoice, from the start of that period."""
        while sub.period_start is not None and midnight(sub.boundary()) <= now:
            if sub.ending_at is not None and midnight(sub.boundary()) > sub.ending_at:
                break  # ends inside this period: the termination bills it
            sub.period_start = sub.boundary()
            sub.periods_billed += 1

    def _activate(self, sub: Subscription) -> None:
        sub.status = "active"
        sub.started_at = sub.subscription_at
        sub.period_start = sub.anchor = sub.subscription_at.date()
        self.emit("subscription.started", "subscription", sub.webhook_json())

    def subscription(self, external_id: str) -> Subscription:
        try:
            return self.subscriptions[external_id]
        except KeyError:
            raise not_found("subscription") from None

    def update_subscription(self, sub: Subscription, data: dict[str, Any]) -> Subscription:
        # Lago's Subscriptions::UpdateService validates as on create, before changing anything: the start
        # given, else the subscription's own; an end given must be after today and after that start.
        start = data.get("subscription_at", sub.subscription_at)
        check_subscription_dates(start, data.get("ending_at"), self.clock.now().date())
        if "name" in data:
            sub.name = data["name"]
        if "ending_at" in data:
            sub.ending_at = (
                None if _blank(data["ending_at"]) else parse_datetime(data["ending_at"], "ending_at")
            )
        overrides = data.get("plan_overrides") or {}
        if "amount_cents" in overrides:  # a corrected price: the next period bills at it
            sub.amount_cents = int(overrides["amount_cents"])
        if data.get("subscription_at"):
            if sub.status != "pending":
                raise invalid(subscription_at="cannot_be_updated")
            sub.subscription_at = parse_datetime(data["subscription_at"], "subscription_at")
            if sub.subscription_at <= self.clock.now():
                self._activate(sub)
        return sub

    def terminate_subscription(
        self, sub: Subscription, at: datetime | None = None, *, invoice: bool = True
    ) -> Subscription:
        """``invoice=False`` is Lago's ``on_termination_invoice=skip``: the unbilled part is not invoiced."""
        if sub.status == "terminated":
            raise not_found("subscription")
        now = at or self.clock.now()
        if sub.status == "active" and invoice:
            # Bill the periods that ended, then the used part of the current one.
            self._bill_due(sub, now)
            assert sub.period_start is not None
            end = now.date() + timedelta(days=1)
            if end > sub.period_start:
                self._bill_period(sub, sub.period_start, min(end, sub.boundary()), "subscription_terminating")
        sub.status = "terminated"
        sub.terminated_at = now
        self.effects.record("subscription.terminate", sub.external_id)
        self.emit("subscription.terminated", "subscription", sub.webhook_json())
        return sub

    # -- billing -----------------------------------------------------------------------------------

    def advance_clock(self, target: datetime) -> list[Invoice]:
        """Move time forward and bill every period that ended on the way, in date order."""
        if target < self.clock.now():
            raise ValueError("the clock only moves forward")
        before = set(self.invoices)
        self.clock.offset = target - self.clock.start
        for sub in list(self.subscriptions.values()):
            if sub.status == "pending" and sub.subscription_at <= target:
                self._activate(sub)
            if sub.status == "active":
                if sub.ending_at is not None and sub.ending_at <= target:
                    self.terminate_subscription(sub, at=sub.ending_at)
                else:
                    self._bill_due(sub, target)
        self.finalize_due_drafts()
        return [self.invoices[i] for i in self.invoices if i not in before]

    def _bill_due(self, sub: Subscription, until: datetime) -> None:
        while sub.period_start is not None and midnight(sub.boundary()) <= until:
            self._bill_period(sub, sub.period_start, sub.boundary(), "subscription_periodic")

    def _bill_period(self, sub: Subscription, start: date, end: date, reason: str) -> Invoice:
        """Invoice [start, end) in arrears; a partial period is prorated by days, as Lago does."""
        boundary = sub.boundary()
        full_start = sub.full_period_start(boundary)
        full_days = (boundary - full_start).days
        days = (end - start).days
        amount = sub.amount_cents
        if days != full_days:
            amount = round_half_up(Decimal(sub.amount_cents) * days / full_days)
        now = self.clock.now()
        currency = sub.customer.currency or sub.plan.currency
        from_dt, to_dt = midnight(start), midnight(end) - timedelta(seconds=1)
        fee = self._make_fee(
            "subscription",
            sub.plan.code,
            sub.plan.name,
            sub.lago_id,
            Decimal(1),
            amount,
            currency,
            self.customer_taxes(sub.customer),
            description=None,
            subscription=sub,
            from_date=from_dt,
            to_date=to_dt,
        )
        # Usage charges are billed in arrears on the same invoice, over the same dates.
        fees = [fee, *self._charge_fees(sub, midnight(start), midnight(end), currency, from_dt, to_dt)]
        # The billing run for a period happens at its end, but never before the subscription existed (a
        # subscription that ends in the past, created late, is billed when the next run sees it).
        billed_at = max(sub.created_at, min(now, midnight(end)))
        invoice = self._new_invoice(sub.customer, "subscription", currency, fees, issuing=billed_at.date())
        invoice.subscriptions = [sub]
        invoice.billing_periods = [
            {
                "lago_subscription_id": sub.lago_id,
                "external_subscription_id": sub.external_id,
                "lago_plan_id": sub.plan.lago_id,
                "subscription_from_datetime": ts(from_dt),
                "subscription_to_datetime": ts(to_dt),
                "charges_from_datetime": ts(from_dt),
                "charges_to_datetime": ts(to_dt),
                "invoicing_reason": reason,
            }
        ]
        self.effects.record("invoice.subscription_period", f"{sub.external_id}:{start.isoformat()}")
        if end >= boundary:
            sub.periods_billed += 1
        sub.period_start = end
        invoice.created_at = invoice.updated_at = billed_at
        for f in fees:  # created by the same billing run as their invoice
            f.created_at = billed_at
        if self.grace_period_days > 0 and reason != "subscription_terminating":
            self.emit("invoice.drafted", "invoice", invoice.extended_json())
        else:
            self._finalize(invoice, invoice.issuing_date)
            self.emit("invoice.created", "invoice", invoice.extended_json())
        return invoice

    def _charge_fees(
        self,
        sub: Subscription,
        start: datetime,
        end: datetime,
        currency: str,
        from_dt: datetime,
        to_dt: datetime,
    ) -> list[Fee]:
        fees = []
        taxes = self.customer_taxes(sub.customer)
        for usage in self.usage.charges_usage(sub.external_id, sub.plan.charges, start, end, currency):
            fee = self._make_fee(
                "charge", usage.charge.metric.code, usage.charge.metric.name, usage.charge.metric.lago_id,
                Decimal(1), usage.amount_cents, currency, taxes, subscription=sub, from_date=from_dt,
                to_date=to_dt, charge_id=usage.charge.lago_id, events_count=usage.events_count,
            )  # fmt: skip
            fee.units = usage.units
            fees.append(fee)
        return fees

    def current_period(self, sub: Subscription) -> tuple[datetime, datetime]:
        """[from, to) of the subscription's open billing period."""
        start = sub.period_start or sub.subscription_at.date()
        return midnight(start), midnight(sub.boundary())

    def finalize_due_drafts(self) -> None:
        today = self.clock.today()
        for invoice in list(self.invoices.values()):
            if (
                invoice.status == "draft"
                and invoice.invoice_type == "subscription"
                and invoice.issuing_date + timedelta(days=self.grace_period_days) <= today
            ):
                self._finalize(invoice, invoice.issuing_date + timedelta(days=self.grace_period_days))
                self.emit("invoice.created", "invoice", invoice.extended_json())

    def _make_fee(
        self,
        item_type: str,
        code: str,
        name: str,
        item_id: str,
        units: Decimal,
        unit_amount_cents: int,
        currency: str,
        taxes: list[Tax],
        **kw: Any,
    ) -> Fee:
        amount = round_half_up(units * unit_amount_cents)
        fee_id = self.new_id()
        applied = [AppliedTax(self.new_id(), t, amount, tax_amount(amount, t.rate)) for t in taxes]
        return Fee(
            fee_id, item_type, code, name, item_id, units, unit_amount_cents, amount, currency, applied,
            self.clock.now(), **kw,
        )  # fmt: skip

    def _new_invoice(
        self, customer: Customer, invoice_type: str, currency: str, fees: list[Fee], issuing: date
    ) -> Invoice:
        # Invoice-level taxes are computed on the sum of the fees per tax, then rounded once.
        bases: dict[str, tuple[Tax, int]] = {}
        for fee in fees:
            for applied in fee.taxes:
                tax, base = bases.get(applied.tax.code, (applied.tax, 0))
                bases[applied.tax.code] = (tax, base + fee.amount_cents)
        applied_taxes = [AppliedTax(self.new_id(), t, b, tax_amount(b, t.rate)) for t, b in bases.values()]
        now = self.clock.now()
        invoice = Invoice(
            self.new_id(),
            customer,
            invoice_type,
            currency,
            fees,
            applied_taxes,
            issuing,
            now,
            now,
            number=f"{self.number_prefix}-DRAFT",
            net_payment_term=int(customer.fields.get("net_payment_term") or 0),
        )
        self.invoices[invoice.lago_id] = invoice
        return invoice

    def _finalize(self, invoice: Invoice, issuing: date) -> None:
        customer = invoice.customer
        customer.invoice_seq += 1
        invoice.sequential_id = customer.invoice_seq
        invoice.number = f"{self.number_prefix}-{customer.sequential_id:03d}-{customer.invoice_seq:03d}"
        invoice.status = "finalized"
        invoice.issuing_date = issuing
        if invoice.invoice_type == "subscription":
            self.wallets.apply_prepaid_credits(invoice)  # Lago applies wallet credits as it finalizes
        invoice.updated_at = max(invoice.updated_at, min(self.clock.now(), midnight(issuing)))

    # -- invoices ----------------------------------------------------------------------------------

    def create_one_off_invoice(self, data: dict[str, Any]) -> Invoice:
        external_customer_id = data.get("external_customer_id")
        if not isinstance(external_customer_id, str) or not external_customer_id:
            raise invalid(external_customer_id="value_is_mandatory")
        customer = self.customer(external_customer_id)
        currency = data.get("currency") or customer.currency
        if not currency:
            raise invalid(currency="value_is_mandatory")
        self.check_currency(currency)
        raw_fees = data.get("fees")
        if not isinstance(raw_fees, list) or not raw_fees:
            raise invalid(fees="no_fees")
        fees: list[Fee] = []
        for raw in raw_fees:
            if not isinstance(raw, dict):
                raise invalid(fees="invalid_fee")
            add_on = self.add_ons.get(raw.get("add_on_code"))  # type: ignore[arg-type]
            if add_on is None:
                raise not_found("add_on")
            try:
                units = Decimal(str(raw["units"])) if raw.get("units") is not None else Decimal(1)
            except InvalidOperation:
                raise invalid(units="invalid_value") from None
            unit_cents = raw.get("unit_amount_cents")
            if unit_cents is None:
                unit_cents = add_on.amount_cents
            if isinstance(unit_cents, bool) or not isinstance(unit_cents, int) or unit_cents < 0:
                raise invalid(unit_amount_cents="invalid_value")
            tax_codes = raw.get("tax_codes")
            if tax_codes:
                if any(c not in self.taxes for c in tax_codes):
                    raise not_found("tax")
                taxes = [self.taxes[c] for c in tax_codes]
            else:
                taxes = self.customer_taxes(customer)
            fees.append(
                self._make_fee(
                    "add_on",
                    add_on.code,
                    raw.get("invoice_display_name") or add_on.name,
                    add_on.lago_id,
                    units,
                    unit_cents,
                    currency,
                    taxes,
                    description=raw.get("description") or add_on.description,
                )
            )
        self._assign_currency(customer, currency)
        invoice = self._new_invoice(customer, "one_off", currency, fees, issuing=self.clock.today())
        self._finalize(invoice, self.clock.today())
        self.effects.record("invoice.create", external_customer_id)
        self.emit("invoice.one_off_created", "invoice", invoice.extended_json())
        return invoice

    def invoice(self, lago_id: str) -> Invoice:
        try:
            return self.invoices[lago_id]
        except KeyError:
            raise not_found("invoice") from None

    def update_invoice(self, invoice: Invoice, data: dict[str, Any]) -> Invoice:
        status = data.get("payment_status")
        if status is not None and status not in PAYMENT_STATUSES:
            raise invalid(payment_status="value_is_invalid")
        metadata = data.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, list) or not all(isinstance(m, dict) for m in metadata):
                raise invalid(metadata="invalid_value")
            self._replace_metadata(invoice, metadata)
        if status is not None and status != invoice.payment_status:
            if invoice.status != "finalized":
                raise LagoError(405, "payment_status_update_not_allowed")
            self._set_payment_status(invoice, status)
        invoice.updated_at = self.clock.now()
        return invoice

    def _set_payment_status(self, invoice: Invoice, status: str) -> None:
        invoice.payment_status = status
        if status == "succeeded":
            invoice.payment_overdue = False  # Lago clears it once the invoice is paid
        invoice.updated_at = self.clock.now()
        self.effects.record("invoice.payment_status", f"{invoice.lago_id}:{status}")
        # Any payment status may follow any other (a returned debit fails a succeeded payment, a
        # retry succeeds a failed one); the webhook carries the invoice as saved, updated_at included.
        self.emit("invoice.payment_status_updated", "invoice", invoice.extended_json())
        if status == "succeeded" and invoice.invoice_type == "credit":
            self.wallets.invoice_paid(invoice)  # a top-up paid: its credits reach the wallet

    # -- payments ----------------------------------------------------------------------------------

    def create_manual_payment(self, data: dict[str, Any]) -> Payment:
        """``POST /payments`` (``Payments::ManualCreateService`` and the ``Payment`` model's validations):
        a manual payment of part or all of a finalized invoice, succeeded at once. The invoice's
        ``total_paid_amount_cents`` becomes the sum of its succeeded payments; once that reaches its
        total, its payment status becomes ``succeeded`` (the only webhook: ``invoice.payment_status_updated``;
        a partial payment sends none)."""
        invoice_id = data.get("invoice_id")
        if not invoice_id:
            raise invalid(invoice_id="value_is_mandatory")
        amount = data.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise invalid(amount_cents="invalid_value")
        invoice = self.invoices.get(str(invoice_id))
        if invoice is None:
            raise not_found("invoice")
        if invoice.status != "finalized":  # Invoice#allow_manual_payment? (finalized, open)
            raise LagoError(403, "feature_unavailable")
        paid_at = data.get("paid_at")
        created = self.clock.now()
        if paid_at is not None:
            try:
                created = midnight(date.fromisoformat(str(paid_at)[:10]))
            except ValueError:
                raise invalid(paid_at="invalid_date") from None
        reference = data.get("reference")
        if not isinstance(reference, str) or not reference.strip():
            raise invalid(reference="value_is_mandatory")
        if len(reference) > 40:
            raise invalid(reference="value_is_too_long")
        if invoice.invoice_type == "credit" and amount != invoice.total_amount_cents:
            raise invalid(amount_cents="invalid_amount")  # a top-up is paid whole
        if amount + invoice.total_paid_amount_cents > invoice.total_amount_cents:
            raise invalid(amount_cents="greater_than")
        payment = Payment(self.new_id(), invoice, amount, reference, created)
        self.payments[payment.lago_id] = payment
        self.effects.record("payment.create", f"{invoice.lago_id}:{amount}")
        invoice.total_paid_amount_cents += amount  # a recorded payment is succeeded and stays so
        invoice.updated_at = self.clock.now()
        if (
            invoice.total_paid_amount_cents == invoice.total_amount_cents
            and invoice.payment_status != "succeeded"
        ):
            self._set_payment_status(invoice, "succeeded")
        return payment

    def payment(self, lago_id: str) -> Payment:
        try:
            return self.payments[lago_id]
        except KeyError:
            raise not_found("payment") from None

    def list_payments(self, query: Any, external_customer_id: str | None = None) -> list[Payment]:
        """``GET /payments`` and ``GET /customers/{id}/payments`` (``PaymentsQuery``): newest first,
        by customer and by invoice."""
        ext = external_customer_id or query.get("external_customer_id")
        if external_customer_id is not None:
            self.customer(external_customer_id)  # 404 customer_not_found
        items = list(self.payments.values())
        if ext:
            items = [p for p in items if p.invoice.customer.external_id == ext]
        invoice_id = query.get("invoice_id")
        if invoice_id:
            items = [p for p in items if p.invoice.lago_id == invoice_id]
        items.sort(key=lambda p: (p.created_at, p.lago_id), reverse=True)
        return items

    def lose_dispute(self, lago_id: str) -> Invoice:
        """``POST /invoices/{id}/lose_dispute`` (a chargeback lost): Lago's ``mark_as_dispute_lost!``
        keeps the first time, clears overdue and sends ``invoice.payment_dispute_lost`` (the invoice under
        ``payment_dispute_lost``); the payment status is left as it was."""
        invoice = self.invoice(lago_id)
        if invoice.status != "finalized":
            raise LagoError(405, "not_disputable")
        invoice.payment_dispute_lost_at = invoice.payment_dispute_lost_at or self.clock.now()
        invoice.payment_overdue = False
        invoice.updated_at = self.clock.now()
        self.effects.record("invoice.lose_dispute", lago_id)
        self.emit("invoice.payment_dispute_lost", "payment_dispute_lost", invoice.extended_json())
        return invoice

    def _replace_metadata(self, invoice: Invoice, items: list[dict[str, Any]]) -> None:
        # Lago's semantics: items with a known id are updated, others created, the rest removed.
        existing = {m["lago_id"]: m for m in invoice.metadata}
        before = {(m["key"], m["value"]) for m in invoice.metadata}
        result = []
        for item in items:
            key, value = str(item.get("key", "")), str(item.get("value", ""))
            if not key:
                raise invalid(metadata="value_is_mandatory")
            current = existing.get(item.get("id"))  # type: ignore[arg-type]
            if current is None:
                current = {"lago_id": self.new_id(), "created_at": ts(self.clock.now())}
            current.update(key=key, value=value)
            result.append(current)
        invoice.metadata = result
        for key, value in {(m["key"], m["value"]) for m in result} - before:
            self.effects.record("invoice.metadata", f"{key}={value}")

    def finalize_invoice(self, lago_id: str) -> Invoice:
        invoice = self.invoices.get(lago_id)
        if invoice is None or invoice.status != "draft":
            raise not_found("invoice")  # Lago looks the id up among drafts only
        self._finalize(invoice, self.clock.today())
        self.effects.record("invoice.finalize", lago_id)
        self.emit("invoice.created", "invoice", invoice.extended_json())
        return invoice

    def void_invoice(self, lago_id: str) -> Invoice:
        invoice = self.invoice(lago_id)
        if invoice.status != "finalized" or invoice.payment_status == "succeeded":
            raise LagoError(405, "not_voidable")
        invoice.status = "voided"
        invoice.updated_at = self.clock.now()
        self.effects.record("invoice.void", lago_id)
        self.wallets.recredit(invoice)  # Invoices::VoidService: consumed credits back, before the webhook
        self.emit("invoice.voided", "invoice", invoice.extended_json())
        return invoice

    def list_invoices(self, query: Any) -> list[Invoice]:
        items = list(self.invoices.values())
        ext = query.get("external_customer_id")
        if ext:
            items = [i for i in items if i.customer.external_id == ext]
        statuses = query.getlist("statuses[]") or ([query["status"]] if query.get("status") else [])
        if statuses:
            items = [i for i in items if i.status in statuses]
        pay = query.getlist("payment_statuses[]") or (
            [query["payment_status"]] if query.get("payment_status") else []
        )
        if pay:
            items = [i for i in items if i.payment_status in pay]
        if query.get("currency"):
            items = [i for i in items if i.currency == query["currency"]]
        if query.get("invoice_type"):
            items = [i for i in items if i.invoice_type == query["invoice_type"]]
        for bound, keep in (
            ("issuing_date_from", lambda d, b: d >= b),
            ("issuing_date_to", lambda d, b: d <= b),
        ):
            if query.get(bound):
                try:
                    limit = date.fromisoformat(query[bound])
                except ValueError:
                    continue  # Lago ignores a malformed date filter
                items = [i for i in items if keep(i.issuing_date, limit)]
        for name, value in query.multi_items():
            if name.startswith("metadata[") and name.endswith("]"):
                key = name[len("metadata[") : -1]
                if value:
                    items = [
                        i for i in items if any(m["key"] == key and m["value"] == value for m in i.metadata)
                    ]
                else:
                    items = [i for i in items if all(m["key"] != key for m in i.metadata)]
        # lago-api's InvoicesQuery: issuing date and creation time, newest first, then id.
        items.sort(key=lambda i: i.lago_id)
        items.sort(key=lambda i: (i.issuing_date, i.created_at), reverse=True)
        return items

    def list_fees(self, query: Any) -> list[tuple[Fee, Invoice]]:
        """``GET /fees``: the fees of the organization's invoices, with the spec's filters on customer,
        subscription, type, currency and creation time (a malformed time is ignored, as Lago does with
        a date filter), oldest first."""
        ext = query.get("external_customer_id")
        sub = query.get("external_subscription_id")
        kind = query.get("fee_type")
        currency = query.get("currency")
        bounds = []
        for name, keep in (
            ("created_at_from", lambda d, b: d >= b),
            ("created_at_to", lambda d, b: d <= b),
        ):
            if query.get(name):
                try:
                    bounds.append((parse_datetime(query[name], name), keep))
                except LagoError:
                    continue
        items = [
            (f, inv)
            for inv in self.invoices.values()
            if not ext or inv.customer.external_id == ext
            for f in inv.fees
            if (not sub or (f.subscription is not None and f.subscription.external_id == sub))
            and (not kind or f.item_type == kind)
            and (not currency or f.currency == currency)
            and all(keep(f.created_at, b) for b, keep in bounds)
        ]
        items.sort(key=lambda p: (p[0].created_at, p[0].lago_id))  # lago-api's FeesQuery: oldest first
        return items

    # -- credit notes ------------------------------------------------------------------------------

    def create_credit_note(self, data: dict[str, Any]) -> CreditNote:
        invoice = self.invoices.get(data.get("invoice_id"))  # type: ignore[arg-type]
        if invoice is None:
            raise not_found("invoice")
        if invoice.status != "finalized":
            raise LagoError(405, "invalid_invoice_status")
        reason = data.get("reason") or "other"
        if reason not in CREDIT_NOTE_REASONS:
            raise invalid(reason="value_is_invalid")
        raw_items = data.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise invalid(items="must_be_an_array")
        fees = {f.lago_id: f for f in invoice.fees}
        items: list[tuple[str, Fee, int]] = []
        for raw in raw_items:
            fee = fees.get(raw.get("fee_id")) if isinstance(raw, dict) else None
            if fee is None:
                raise not_found("fee")
            amount = raw.get("amount_cents")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise invalid(amount_cents="invalid_value")
            if fee.credited_cents + amount > fee.amount_cents:
                raise invalid(amount_cents="higher_than_remaining_fee_amount")
            items.append((self.new_id(), fee, amount))
        bases: dict[str, tuple[Tax, int]] = {}
        for _, fee, amount in items:
            for applied in fee.taxes:
                tax, base = bases.get(applied.tax.code, (applied.tax, 0))
                bases[applied.tax.code] = (tax, base + amount)
        applied_taxes = [AppliedTax(self.new_id(), t, b, tax_amount(b, t.rate)) for t, b in bases.values()]
        total = sum(a for _, _, a in items) + sum(t.amount_cents for t in applied_taxes)
        credit, refund = data.get("credit_amount_cents"), data.get("refund_amount_cents")
        if credit is None and refund is None:
            credit, refund = total, 0
        credit, refund = int(credit or 0), int(refund or 0)
        if credit + refund != total:
            raise invalid(base="invalid_credit_and_refund_amounts")
        if refund and invoice.payment_status != "succeeded":
            # Lago refunds only what was paid (CreditNotes::ValidateService).
            raise invalid(refund_amount_cents="higher_than_remaining_invoice_amount")
        if invoice.invoice_type == "credit":
            # CreditNotes::CreateService / ValidateService: a top-up is credited only once paid, with an
            # active wallet, and only refunded (no credit part); the refunded credits leave the wallet.
            wallet = self.wallets.top_up_wallet(invoice)
            if invoice.payment_status != "succeeded" or wallet is None:
                raise LagoError(405, "invalid_type_or_status")
            if credit:
                raise invalid(credit_amount_cents="cannot_credit_invoice")
            if refund > min(wallet.balance_cents, self.wallets.top_up_left(invoice)):
                raise invalid(refund_amount_cents="exceeds_remaining_transaction_amount")
        for _, fee, amount in items:
            fee.credited_cents += amount
        seq = len(self.credit_notes) + 1
        note = CreditNote(
            self.new_id(),
            seq,
            f"{invoice.number}-CN{seq:03d}",
            invoice,
            reason,
            data.get("description"),
            items,
            applied_taxes,
            credit,
            refund,
            self.clock.now(),
            refund_status="pending" if refund else None,
        )
        # The credited invoice keeps its totals: Lago's credit_notes_amount_cents counts credit applied
        # *to* an invoice (a later one), not notes issued on it.
        self.credit_notes[note.lago_id] = note
        if invoice.invoice_type == "credit":
            self.wallets.take_back(invoice, refund, note.lago_id)
        self.effects.record("credit_note.create", invoice.lago_id)
        self.emit("credit_note.created", "credit_note", note.json())
        return note

    def settle_refund(self, lago_id: str, status: Any) -> CreditNote:
        """The payment provider's answer to a credit note's refund (sandbox admin; in Lago it comes from
        the provider's webhook). A refund that already succeeded stays so; a failure sends Lago's
        ``credit_note.refund_failure``. Lago sends nothing when a refund succeeds."""
        note = self.credit_notes.get(lago_id)
        if note is None:
            raise not_found("credit_note")
        if status not in ("succeeded", "failed"):
            raise invalid(refund_status="value_is_invalid")
        if note.refund_status is None:
            raise LagoError(405, "no_refund")
        if note.refund_status == "succeeded" or note.refund_status == status:
            return note
        note.refund_status = status
        note.updated_at = self.clock.now()
        self.effects.record("credit_note.refund", f"{lago_id}:{status}")
        if status == "failed":
            customer = note.invoice.customer
            error = {
                "lago_credit_note_id": note.lago_id,
                "lago_customer_id": customer.lago_id,
                "external_customer_id": customer.external_id,
                "provider_customer_id": f"cus_{customer.lago_id[:14]}",
                "payment_provider": "stripe",
                "payment_provider_code": "stripe",
                "provider_error": {"message": "The refund was declined", "error_code": "refund_failed"},
            }
            self.emit("credit_note.refund_failure", "credit_note_payment_provider_refund_error", error)
        return note

    # -- webhook endpoints -------------------------------------------------------------------------

    def create_webhook_endpoint(self, data: dict[str, Any]) -> WebhookEndpoint:
        url = data.get("webhook_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(webhook_url="url_invalid")
        if any(e.url == url for e in self.webhook_endpoints.values()):
            raise invalid(webhook_url="value_already_exist")
        if len(self.webhook_endpoints) >= 10:
            raise invalid(webhook_endpoint="exceeded_limit")
        algo = data.get("signature_algo") or "jwt"
        if algo not in ("jwt", "hmac"):
            raise invalid(signature_algo="value_is_invalid")
        event_types = data.get("event_types")
        endpoint = WebhookEndpoint(self.new_id(), url, algo, data.get("name"), event_types, self.clock.now())
        self.webhook_endpoints[endpoint.lago_id] = endpoint
        return endpoint

    def webhook_endpoint(self, lago_id: str) -> WebhookEndpoint:
        try:
            return self.webhook_endpoints[lago_id]
        except KeyError:
            raise not_found("webhook_endpoint") from None
