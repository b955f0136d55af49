"""The ``lago`` system type: Lago, the billing engine (REST API, signed webhooks)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lead2cash.config.base import Strict
from lead2cash.config.lago import LagoSystemConfig
from lead2cash.systems.lago.usage import SendUsageOptions
from lead2cash.systems.registry import NoOptions, Operation, SystemType, WebhookReceiver

_CONSUMER = Field(
    None, description="name of this route's read position (default: the object); one per route and object"
)
_EVENTS = Field(None, description="webhook types taken (default: every type the object handles)")


class InvoiceSourceOptions(Strict):
    consumer: str | None = _CONSUMER
    refunds: bool = Field(False, description="also take refunds issued and refunds the provider declined")
    webhook_types: list[str] | None = _EVENTS


class CreditNoteSourceOptions(Strict):
    consumer: str | None = _CONSUMER
    webhook_types: list[str] | None = _EVENTS


class BillOrderOptions(Strict):
    """Per route, over the system's settings of the same name."""

    plan_table: str | None = Field(None, description="mappings table: product code -> plan code")
    addon_table: str | None = Field(None, description="mappings table: product code -> add-on code")
    subscriptions: Literal["per_line", "per_plan"] | None = None
    billing_time: Literal["calendar", "anniversary"] | None = None
    on_reversal_subscriptions: Literal["immediately", "period_end"] | None = None
    on_reversal_invoice: Literal["dead_letter", "credit_note"] | None = None
    on_backdated_amendment: Literal["prorate", "dead_letter"] | None = None


SYSTEM = SystemType(
    name="lago",
    description="Lago, the billing engine: orders billed as subscriptions and one-off invoices; invoices "
    "and credit notes read from its webhooks (with a polling fallback).",
    config=LagoSystemConfig,
    build="lead2cash.systems.lago.binding:build",
    sources=(
        Operation("invoices", "invoices issued, with their payment status", InvoiceSourceOptions),
        Operation("credit_notes", "credit notes issued", CreditNoteSourceOptions),
        Operation(
            "wallet_transactions",
            "wallet movements (webhooks only), voided ones with what funded them",
            CreditNoteSourceOptions,
        ),
        Operation(
            "payments",
            "payments of invoices, part or all (manual ones by poll: Lago sends no webhook for them)",
            CreditNoteSourceOptions,
        ),
    ),
    actions=(
        Operation("bill_order", "an Order as subscriptions and a one-off invoice", BillOrderOptions),
        Operation("upsert_customer", "a Customer created or updated", NoOptions),
        Operation("send_usage", "UsageEvents in batches of up to 100 (POST /events/batch)", SendUsageOptions),
    ),
    adapters=("lead2cash.adapters.lago",),
    webhooks=(
        WebhookReceiver(
            path="lago",
            signature="X-Lago-Signature: HMAC-SHA256 of the body or an RS256 JWT (system's webhook)",
            dedupe_key="X-Lago-Unique-Key",
        ),
    ),
    live_check="lead2cash.testing.metadata:check_lago",
    sandbox="lead2cash.sandbox.lago:LagoSandbox",
)
