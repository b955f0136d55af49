"""Usage-based billing in the Lago sandbox: billable metrics, plan charges, events, current usage.

As Lago does it:
- Billable metrics aggregate a subscription's events of one ``code`` over a billing period: ``count_agg``
  (events), ``sum_agg`` and ``max_agg`` (of the numeric property ``field_name``), ``unique_count_agg``
  (distinct values of ``field_name``; ``operation_type: remove`` takes a value out again).
- Charges price the aggregated units: ``standard`` (units x amount), ``package`` (every started package
  of ``package_size`` beyond ``free_units`` costs ``amount``), ``graduated`` (each tier's units at its
  per-unit price, plus the tier's flat amount once usage enters the tier).
- Events are deduplicated by ``(external_subscription_id, transaction_id)``: a resent event is accepted
  (200) and counted once. ``POST /events/batch`` takes at most 100 events; a structurally invalid event
  fails the whole request with 422 and ``error_details`` keyed by the event's index (Lago's choice: the
  sender removes the bad ones and sends the rest again). An unknown code, or a sum/max event without a
  numeric aggregation property, is accepted and reported later by the ``events.errors`` webhook.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lead2cash.sandbox.lago.money import decimal_str, to_cents

AGGREGATIONS = ("count_agg", "sum_agg", "max_agg", "unique_count_agg")
CHARGE_MODELS = ("standard", "package", "graduated")
MAX_BATCH = 100


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts_ms(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class BillableMetric:
    lago_id: str
    code: str
    name: str
    aggregation_type: str
    field_name: str | None
    created_at: datetime
    description: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "code": self.code,
            "description": self.description,
            "recurring": False,
            "rounding_function": None,
            "rounding_precision": None,
            "created_at": _ts(self.created_at),
            "field_name": self.field_name,
            "aggregation_type": self.aggregation_type,
            "weighted_interval": None,
            "filters": [],
        }


@dataclass
class Charge:
    lago_id: str
    metric: BillableMetric
    charge_model: str
    properties: dict[str, Any]
    created_at: datetime
    invoice_display_name: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "lago_billable_metric_id": self.metric.lago_id,
            "billable_metric_code": self.metric.code,
            "invoice_display_name": self.invoice_display_name,
            "created_at": _ts(self.created_at),
            "charge_model": self.charge_model,
            "invoiceable": True,
            "regroup_paid_fees": None,
            "pay_in_advance": False,
            "prorated": False,
            "min_amount_cents": 0,
            "properties": self.properties,
            "filters": [],
            "taxes": [],
        }

    def price_cents(self, units: Decimal, currency: str) -> int:
        """The charge's amount for ``units`` in minor units (rounded once, at the end)."""
        p = self.properties
        if units <= 0:
            return 0
        if self.charge_model == "standard":
            return to_cents(units * Decimal(p["amount"]), currency)
        if self.charge_model == "package":
            billable = units - Decimal(p.get("free_units") or 0)
            if billable <= 0:
                return 0
            packages = math.ceil(billable / Decimal(p["package_size"]))
            return to_cents(Decimal(packages) * Decimal(p["amount"]), currency)
        total = Decimal(0)  # graduated
        for tier in p["graduated_ranges"]:
            low = Decimal(tier["from_value"])
            high = None if tier["to_value"] is None else Decimal(tier["to_value"])
            # Lago's tiers: the first counts from 0, the next ones from (previous to_value + 1) - 1.
            floor = low if low == 0 else low - 1
            if units <= floor:
                break
            in_tier = (units if high is None else min(units, high)) - floor
            total += in_tier * Decimal(tier["per_unit_amount"]) + Decimal(tier["flat_amount"])
        return to_cents(total, currency)


@dataclass
class Event:
    lago_id: str
    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: datetime
    properties: dict[str, Any]
    created_at: datetime
    precise_total_amount_cents: str | None = None

    def json(self, lago_subscription_id: str | None, lago_customer_id: str | None) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "transaction_id": self.transaction_id,
            "lago_customer_id": lago_customer_id,
            "code": self.code,
            "timestamp": _ts_ms(self.timestamp),
            "precise_total_amount_cents": self.precise_total_amount_cents,
            "properties": self.properties,
            "lago_subscription_id": lago_subscription_id,
            "external_subscription_id": self.external_subscription_id,
            "created_at": _ts(self.created_at),
        }


@dataclass
class ChargeUsage:
    charge: Charge
    units: Decimal
    events_count: int
    amount_cents: int


class UsageError(Exception):
    """A request Lago refuses: 422 with ``error_details`` (per field, or per batch index)."""

    def __init__(self, details: dict[str, Any], status: int = 422, code: str = "validation_errors") -> None:
        super().__init__(str(details))
        self.details = details
        self.status = status
        self.code = code


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        Decimal(str(value))
    except (InvalidOperation, ValueError):
        return False
    return True


def parse_timestamp(value: Any, now: datetime) -> datetime | None:
    """Lago's event timestamp: Unix seconds (integer, or a string with decimals); absent means now."""
    if value is None or value == "":
        return now
    if isinstance(value, bool):
        return None
    try:
        seconds = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not seconds.is_finite() or seconds < 0 or seconds > 32503680000:
        return None
    return datetime.fromtimestamp(float(seconds), UTC)


class Usage:
    """The organization's metrics, plan charges and events."""

    def __init__(self, new_id: Callable[[], str], now: Callable[[], datetime]) -> None:
        self.new_id = new_id
        self.now = now
        self.metrics: dict[str, BillableMetric] = {}
        self.events: dict[tuple[str, str], Event] = {}
        self.by_subscription: dict[str, list[Event]] = defaultdict(list)
        self.received: Counter[str] = Counter()  # transaction id -> times sent (duplicates included)

    # -- metrics and charges -------------------------------------------------------------------------

    def create_metric(self, data: dict[str, Any]) -> BillableMetric:
        errors: dict[str, list[str]] = {}
        for key in ("name", "code", "aggregation_type"):
            if not data.get(key):
                errors[key] = ["value_is_mandatory"]
        agg = data.get("aggregation_type")
        if agg and agg not in AGGREGATIONS:
            errors["aggregation_type"] = ["value_is_invalid"]
        if agg in ("sum_agg", "max_agg", "unique_count_agg") and not data.get("field_name"):
            errors["field_name"] = ["value_is_mandatory"]
        if data.get("code") in self.metrics:
            errors["code"] = ["value_already_exist"]
        if errors:
            raise UsageError(errors)
        metric = BillableMetric(
            self.new_id(),
            str(data["code"]),
            str(data["name"]),
            str(agg),
            data.get("field_name"),
            self.now(),
            data.get("description"),
        )
        self.metrics[metric.code] = metric
        return metric

    def build_charges(self, items: Any) -> list[Charge]:
        charges = []
        for i, item in enumerate(items or []):
            if not isinstance(item, dict):
                raise UsageError({f"charges.{i}": ["value_is_invalid"]})
            metric = next(
                (m for m in self.metrics.values() if m.lago_id == item.get("billable_metric_id")), None
            )
            if metric is None:
                raise UsageError({}, status=404, code="billable_metric_not_found")
            model = item.get("charge_model")
            if model not in CHARGE_MODELS:
                raise UsageError({"charge_model": ["value_is_invalid"]})
            props = dict(item.get("properties") or {})
            problem = _check_properties(model, props)
            if problem:
                raise UsageError({"properties": [problem]})
            charges.append(
                Charge(self.new_id(), metric, model, props, self.now(), item.get("invoice_display_name"))
            )
        return charges

    # -- events ---------------------------------------------------------------------------------------

    def check_event(self, data: Any) -> dict[str, list[str]]:
        """What the API refuses at once (the rest is found while processing, and sent as a webhook)."""
        if not isinstance(data, dict):
            return {"event": ["value_is_invalid"]}
        errors: dict[str, list[str]] = {}
        for key in ("transaction_id", "external_subscription_id", "code"):
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                errors[key] = ["value_is_mandatory"]
        if parse_timestamp(data.get("timestamp"), self.now()) is None:
            errors["timestamp"] = ["invalid_format"]
        props = data.get("properties")
        if props is not None and (
            not isinstance(props, dict)
            or any(isinstance(v, bool) or not isinstance(v, str | int | float) for v in props.values())
        ):
            errors["properties"] = ["value_is_invalid"]
        return errors

    def ingest(self, data: dict[str, Any]) -> tuple[Event, bool]:
        """Store one checked event; a known (subscription, transaction id) is the stored one, not new."""
        key = (data["external_subscription_id"], data["transaction_id"])
        self.received[data["transaction_id"]] += 1
        known = self.events.get(key)
        if known is not None:
            return known, False
        now = self.now()
        ts = parse_timestamp(data.get("timestamp"), now)
        assert ts is not None  # checked before
        event = Event(
            self.new_id(),
            data["transaction_id"],
            data["external_subscription_id"],
            data["code"],
            ts,
            dict(data.get("properties") or {}),
            now,
            data.get("precise_total_amount_cents"),
        )
        self.events[key] = event
        self.by_subscription[event.external_subscription_id].append(event)
        return event, True

    def processing_errors(self, events: list[Event]) -> dict[str, list[str]]:
        """The ``events.errors`` webhook's lists for events just taken in."""
        invalid_code: list[str] = []
        missing: list[str] = []
        for e in events:
            metric = self.metrics.get(e.code)
            if metric is None:
                invalid_code.append(e.transaction_id)
            elif not _has_aggregation_property(metric, e.properties):
                missing.append(e.transaction_id)
        if not invalid_code and not missing:
            return {}
        return {
            "invalid_code": invalid_code,
            "missing_aggregation_property": missing,
            "invalid_filter_values": [],
            "missing_group_key": [],
        }

    # -- aggregation ---------------------------------------------------------------------------------

    def aggregate(
        self, external_subscription_id: str, metric: BillableMetric, start: datetime, end: datetime
    ) -> tuple[Decimal, int]:
        """(units, events counted) of ``metric`` for events with ``start <= timestamp < end``."""
        events = [
            e
            for e in self.by_subscription.get(external_subscription_id, ())
            if e.code == metric.code and start <= e.timestamp < end
        ]
        agg, name = metric.aggregation_type, metric.field_name or ""
        if agg == "count_agg":
            return Decimal(len(events)), len(events)
        if agg == "unique_count_agg":
            values: set[str] = set()
            counted = 0
            for e in sorted(events, key=lambda e: e.timestamp):
                if name not in e.properties:
                    continue
                counted += 1
                if e.properties.get("operation_type") == "remove":
                    values.discard(str(e.properties[name]))
                else:
                    values.add(str(e.properties[name]))
            return Decimal(len(values)), counted
        numbers = [Decimal(str(e.properties[name])) for e in events if _is_number(e.properties.get(name))]
        if not numbers:
            return Decimal(0), 0
        return (sum(numbers, Decimal(0)) if agg == "sum_agg" else max(numbers)), len(numbers)

    def charges_usage(
        self,
        external_subscription_id: str,
        charges: list[Charge],
        start: datetime,
        end: datetime,
        currency: str,
    ) -> list[ChargeUsage]:
        out = []
        for charge in charges:
            units, count = self.aggregate(external_subscription_id, charge.metric, start, end)
            out.append(ChargeUsage(charge, units, count, charge.price_cents(units, currency)))
        return out


def charge_usage_json(usage: ChargeUsage, currency: str) -> dict[str, Any]:
    return {
        "units": decimal_str(usage.units),
        "total_aggregated_units": decimal_str(usage.units),
        "events_count": usage.events_count,
        "amount_cents": usage.amount_cents,
        "amount_currency": currency,
        "charge": {
            "lago_id": usage.charge.lago_id,
            "charge_model": usage.charge.charge_model,
            "invoice_display_name": usage.charge.invoice_display_name,
        },
        "billable_metric": {
            "lago_id": usage.charge.metric.lago_id,
            "name": usage.charge.metric.name,
            "code": usage.charge.metric.code,
            "aggregation_type": usage.charge.metric.aggregation_type,
        },
        "filters": [],
        "grouped_usage": [],
    }


def _has_aggregation_property(metric: BillableMetric, properties: dict[str, Any]) -> bool:
    name = metric.field_name or ""
    if metric.aggregation_type in ("sum_agg", "max_agg"):
        return _is_number(properties.get(name))
    return metric.aggregation_type != "unique_count_agg" or name in properties


def _check_properties(model: str, props: dict[str, Any]) -> str | None:
    try:
        if model == "standard":
            Decimal(str(props["amount"]))
        elif model == "package":
            Decimal(str(props["amount"]))
            if int(props["package_size"]) < 1:
                return "invalid_package_size"
        else:
            ranges = props["graduated_ranges"]
            if not ranges or ranges[0]["from_value"] != 0 or ranges[-1]["to_value"] is not None:
                return "invalid_graduated_ranges"
            for low, high in itertools.pairwise(ranges):
                if high["from_value"] != low["to_value"] + 1:
                    return "invalid_graduated_ranges"
            for r in ranges:
                Decimal(str(r["per_unit_amount"]))
                Decimal(str(r["flat_amount"]))
    except (KeyError, TypeError, ValueError, InvalidOperation, IndexError):
        return f"invalid_{model}_properties"
    return None


__all__ = [
    "MAX_BATCH",
    "BillableMetric",
    "Charge",
    "ChargeUsage",
    "Event",
    "Usage",
    "UsageError",
    "charge_usage_json",
]
