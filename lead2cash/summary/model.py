"""The billing summary of one customer in one currency, and the pure functions both ways of computing it
share: an invoice's facts from Lago's invoice object, the pricing of aggregated usage, and the summary
composed from invoices, the current period and the usage accrued in it.

Money is exact: integer minor units everywhere; usage prices are Decimals rounded half-up once per charge,
as Lago rounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from lead2cash.canonical_model.currency import MINOR_UNITS

FIELDS = (
    "period_start",
    "period_end",
    "subscription_charges",
    "usage_charges",
    "one_off_charges",
    "credits",
    "taxes",
    "previous_balance",
    "payments_received",
    "amount_due",
    "next_bill_date",
    "last_invoice_number",
    "last_invoice_status",
)
MONEY_FIELDS = (
    "subscription_charges",
    "usage_charges",
    "one_off_charges",
    "credits",
    "taxes",
    "previous_balance",
    "payments_received",
    "amount_due",
)


def to_minor(amount: Decimal, currency: str) -> int:
    """A major-unit Decimal as integer minor units, rounded half-up (Lago's rounding)."""
    return int(amount.scaleb(MINOR_UNITS.get(currency, 2)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def major(cents: int, currency: str) -> Decimal:
    return Decimal(cents).scaleb(-MINOR_UNITS.get(currency, 2))


def _cents(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invoice.{key}: expected integer minor units")
    return value


@dataclass(frozen=True)
class InvoiceFacts:
    """What the summary needs of one invoice, in minor units of ``currency``."""

    lago_id: str
    customer: str
    currency: str
    number: str
    status: str  # draft | finalized | voided | ...
    payment_status: str  # pending | succeeded | failed | ...
    issuing_date: str  # ISO date
    updated: str  # Lago's updated_at: the newest state of an invoice wins
    subscription_cents: int
    usage_cents: int
    one_off_cents: int
    credit_cents: int
    tax_cents: int
    due_cents: int  # total_amount_cents: what the customer owes on it (after credits)

    @property
    def paid_cents(self) -> int:
        return self.due_cents if self.payment_status == "succeeded" else 0

    @property
    def counts(self) -> bool:
        return self.status == "finalized"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InvoiceFacts:
        return cls(**json.loads(text))


def invoice_facts(record: Mapping[str, Any]) -> InvoiceFacts:
    """An invoice's facts from Lago's invoice object (or a webhook wrapping it in ``invoice``)."""
    data = record.get("invoice") if isinstance(record.get("invoice"), Mapping) else record
    assert isinstance(data, Mapping)
    sub = usage = one_off = 0
    for fee in data.get("fees") or []:
        kind = str((fee.get("item") or {}).get("type") or "")
        amount = _cents(fee, "amount_cents")
        if kind == "subscription":
            sub += amount
        elif kind == "charge":
            usage += amount
        elif kind in ("add_on", "one_off"):
            one_off += amount
    credits = sum(
        _cents(data, k)
        for k in (
            "coupons_amount_cents",
            "credit_notes_amount_cents",
            "prepaid_credit_amount_cents",
            "progressive_billing_credit_amount_cents",
        )
    )
    customer = data.get("customer") or {}
    return InvoiceFacts(
        lago_id=str(data["lago_id"]),
        customer=str(customer.get("external_id") or data.get("external_customer_id") or ""),
        currency=str(data.get("currency") or ""),
        number=str(data.get("number") or data["lago_id"]),
        status=str(data.get("status") or "draft"),
        payment_status=str(data.get("payment_status") or "pending"),
        issuing_date=str(data.get("issuing_date") or ""),
        updated=str(data.get("updated_at") or ""),
        subscription_cents=sub,
        usage_cents=usage,
        one_off_cents=one_off,
        credit_cents=credits,
        tax_cents=_cents(data, "taxes_amount_cents"),
        due_cents=_cents(data, "total_amount_cents"),
    )


# -- usage -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeDef:
    """A plan's usage charge on one billable metric, as Lago describes it."""

    metric: str
    aggregation: str  # count_agg | sum_agg | max_agg | unique_count_agg
    field_name: str | None
    model: str  # standard | package | graduated
    properties: Mapping[str, Any]

    def price(self, units: Decimal, currency: str) -> int:
        """The charge for ``units``, in minor units (rounded once, at the end)."""
        p = self.properties
        if units <= 0:
            return 0
        if self.model == "standard":
            return to_minor(units * Decimal(str(p["amount"])), currency)
        if self.model == "package":
            billable = units - Decimal(str(p.get("free_units") or 0))
            if billable <= 0:
                return 0
            packages = math.ceil(billable / Decimal(str(p["package_size"])))
            return to_minor(Decimal(packages) * Decimal(str(p["amount"])), currency)
        if self.model != "graduated":
            raise ValueError(f"charge model {self.model!r} is not priced by the summary")
        total = Decimal(0)
        for tier in p["graduated_ranges"]:
            low = Decimal(str(tier["from_value"]))
            high = None if tier["to_value"] is None else Decimal(str(tier["to_value"]))
            floor = low if low == 0 else low - 1  # Lago's tiers: (previous to_value + 1) - 1
            if units <= floor:
                break
            in_tier = (units if high is None else min(units, high)) - floor
            total += in_tier * Decimal(str(tier["per_unit_amount"])) + Decimal(str(tier["flat_amount"]))
        return to_minor(total, currency)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


@dataclass
class UsageState:
    """A metric's aggregate over one period, kept so that one more event costs O(1)."""

    count: int = 0
    sum: Decimal = Decimal(0)
    max: Decimal | None = None
    values: dict[str, list[str]] = field(default_factory=dict)  # value -> [timestamp, add|remove]

    def add(self, charge: ChargeDef, timestamp: str, properties: Mapping[str, Any]) -> None:
        if charge.aggregation == "count_agg":
            self.count += 1
            return
        name = charge.field_name or ""
        if charge.aggregation == "unique_count_agg":
            if name not in properties:
                return
            value = str(properties[name])
            op = "remove" if properties.get("operation_type") == "remove" else "add"
            known = self.values.get(value)
            if known is None or known[0] <= timestamp:  # the latest operation on a value decides
                self.values[value] = [timestamp, op]
            return
        number = _number(properties.get(name))
        if number is None:
            return
        self.sum += number
        self.max = number if self.max is None else max(self.max, number)

    def units(self, charge: ChargeDef) -> Decimal:
        if charge.aggregation == "count_agg":
            return Decimal(self.count)
        if charge.aggregation == "unique_count_agg":
            return Decimal(sum(1 for _, op in self.values.values() if op == "add"))
        if charge.aggregation == "max_agg":
            return self.max if self.max is not None else Decimal(0)
        return self.sum

    def to_json(self) -> str:
        return json.dumps(
            {
                "count": self.count,
                "sum": str(self.sum),
                "max": None if self.max is None else str(self.max),
                "values": self.values,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> UsageState:
        d = json.loads(text)
        return cls(
            d["count"], Decimal(d["sum"]), None if d["max"] is None else Decimal(d["max"]), d["values"]
        )


# -- the summary -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A subscription's current billing period: ``start`` <= t < ``end`` (UTC)."""

    subscription: str
    customer: str
    currency: str
    plan: str
    start: datetime
    end: datetime

    @classmethod
    def from_lago(cls, sub: Mapping[str, Any]) -> Period | None:
        started, ending = (
            sub.get("current_billing_period_started_at"),
            sub.get("current_billing_period_ending_at"),
        )
        if not started or not ending:
            return None
        return cls(
            subscription=str(sub["external_id"]),
            customer=str(sub.get("external_customer_id") or ""),
            currency=str(sub.get("plan_amount_currency") or ""),
            plan=str(sub.get("plan_code") or ""),
            start=_parse(started),
            # Lago gives the period's last second; the period ends one second later.
            end=_parse(ending) + timedelta(seconds=1),
        )

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class BillingSummary:
    customer: str
    currency: str
    period_start: str | None
    period_end: str | None  # the period's last day
    subscription_charges: int
    usage_charges: int
    one_off_charges: int
    credits: int
    taxes: int
    previous_balance: int
    payments_received: int
    amount_due: int
    next_bill_date: str | None
    last_invoice_id: str | None
    last_invoice_number: str | None
    last_invoice_status: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BillingSummary:
        return cls(**json.loads(text))

    def public(self) -> dict[str, Any]:
        """The admin API's shape: minor units and the same amounts as decimal strings."""
        out: dict[str, Any] = self.as_dict()
        out["minor_units"] = {k: out.pop(k) for k in MONEY_FIELDS}
        out["amounts"] = {k: str(major(v, self.currency)) for k, v in out["minor_units"].items()}
        return out

    def differences(self, other: BillingSummary) -> dict[str, tuple[Any, Any]]:
        mine, theirs = self.as_dict(), other.as_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def compose(
    customer: str,
    currency: str,
    period: Period | None,
    invoices: Iterable[InvoiceFacts],
    accrued_usage: int,
) -> BillingSummary:
    """The summary from the customer's invoices in ``currency``, its current period and the usage
    accrued in it (not invoiced yet: that is ``usage_charges``). Invoices issued from the period's first
    day are the period's (their subscription and one-off fees, credits, taxes and payments); earlier ones
    make the previous balance (what is still unpaid on them). A period-end invoice issued on the new
    period's first day is the new period's: its usage fees are in ``amount_due``, not in ``usage_charges``."""
    start = period.start.date().isoformat() if period else None
    counted = [i for i in invoices if i.currency == currency and i.counts]
    current = [i for i in counted if start is None or i.issuing_date >= start]
    before = [i for i in counted if start is not None and i.issuing_date < start]
    previous = sum(i.due_cents - i.paid_cents for i in before)
    paid = sum(i.paid_cents for i in current)
    last = max(
        (i for i in invoices if i.currency == currency and i.status in ("finalized", "voided")),
        key=lambda i: (i.issuing_date, i.number),
        default=None,
    )
    return BillingSummary(
        customer=customer,
        currency=currency,
        period_start=start,
        period_end=(period.end - timedelta(seconds=1)).date().isoformat() if period else None,
        subscription_charges=sum(i.subscription_cents for i in current),
        usage_charges=accrued_usage,
        one_off_charges=sum(i.one_off_cents for i in current),
        credits=sum(i.credit_cents for i in current),
        taxes=sum(i.tax_cents for i in current),
        previous_balance=previous,
        payments_received=paid,
        amount_due=previous + sum(i.due_cents for i in current) - paid,
        next_bill_date=period.end.date().isoformat() if period else None,
        last_invoice_id=last.lago_id if last else None,
        last_invoice_number=last.number if last else None,
        last_invoice_status=(
            None if last is None else ("voided" if last.status == "voided" else last.payment_status)
        ),
    )


def first_period(periods: Sequence[Period], currency: str) -> Period | None:
    """The period a customer's summary in ``currency`` shows: its earliest-started subscription's."""
    mine = [p for p in periods if p.currency == currency]
    return min(mine, key=lambda p: (p.start, p.subscription), default=None)
