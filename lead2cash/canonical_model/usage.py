"""Metered usage: one event of a billable metric for a customer's subscription (an API call, a phone call's
seconds, megabytes stored).

``id`` is the event's **transaction id**: stable for one real-world occurrence, derived by the adapter from
the source record's own identity (never from when or how often the hub saw it), so a record read twice,
or redelivered by the bus, is the same event and the billing engine counts it once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Self

from pydantic import Field, JsonValue, field_validator, model_validator

from lead2cash.canonical_model.base import CanonicalEntity, NonEmptyStr

MAX_PROPERTIES = 64


class UsageEvent(CanonicalEntity):
    customer_id: NonEmptyStr
    """The customer's canonical id (its external id in the billing engine)."""
    subscription_id: NonEmptyStr
    """The subscription the usage is billed under (its external id in the billing engine)."""
    metric_code: NonEmptyStr = Field(max_length=255)
    """The billable metric's code."""
    timestamp: datetime
    """When the usage happened (timezone-aware; kept in UTC)."""
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    """What the metric aggregates or filters on. Numbers are decimal strings ("12.5"), never floats, so
    sums stay exact end to end."""

    @field_validator("timestamp")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a timezone")
        return value.astimezone(UTC)

    @field_validator("properties")
    @classmethod
    def _no_floats(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if len(value) > MAX_PROPERTIES:
            raise ValueError(f"at most {MAX_PROPERTIES} properties")
        for key, item in value.items():
            if isinstance(item, float):
                raise ValueError(f"properties.{key}: a float; give numbers as decimal strings")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.id) > 255:
            raise ValueError("id (the transaction id) is longer than 255 characters")
        return self

    def decimal(self, name: str) -> Decimal | None:
        """A numeric property as a Decimal (None when absent)."""
        value = self.properties.get(name)
        return None if value is None else Decimal(str(value))
