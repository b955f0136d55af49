"""The ``salesforce`` system type: Salesforce, the CRM (REST, Bulk API 2.0)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lead2cash.config.base import Strict
from lead2cash.config.salesforce import SalesforceSystemConfig, SalesforceWritebackFields
from lead2cash.systems.registry import ANY, Operation, SystemType

_SHARE = Field(None, gt=0, le=1, description="this route's share of the daily API budget")


class SourceOptions(Strict):
    """Per route, over the system's settings of the same name."""

    fields: list[str] | None = Field(
        None, description="fields read (default for Opportunity: what the adapter needs; required otherwise)"
    )
    account_fields: list[str] | None = Field(None, description="Opportunity: the Account's fields read")
    line_fields: list[str] | None = Field(None, description="Opportunity: the line items' fields read")
    filters: dict[str, Any] | None = Field(
        None, description="field -> value the records must have (default for Opportunity: IsWon true)"
    )
    safety_lag: float | None = Field(None, ge=0, description="seconds behind the server clock read")
    page_size: int | None = Field(None, ge=1, le=2000)
    sweep_interval: float | None = Field(None, gt=0, description="seconds between sweeps for deletions")
    api_share: float | None = _SHARE


class WritebackOptions(Strict):
    object: str = Field("Opportunity", description="the sObject written back to")
    ledger_system: str | None = Field("sap", description="whose reference is the accounting document")
    payment_status_values: dict[str, str] = Field(
        default_factory=dict, description="canonical payment status -> the picklist value written"
    )
    writeback_fields: SalesforceWritebackFields | None = Field(
        None, description="per route, over the system's writeback fields (null: not written)"
    )
    api_share: float | None = _SHARE
    write_window: float | None = Field(None, ge=0, description="seconds writes are gathered for a batch")
    bulk_threshold: int | None = Field(None, ge=1)


class UpsertOptions(Strict):
    object: str = Field(description="the sObject upserted")
    external_id_field: str = Field(description="the external id field matched on")
    fields: dict[str, str] = Field(description="field -> JMESPath over the canonical entity")
    api_share: float | None = _SHARE
    write_window: float | None = Field(None, ge=0, description="seconds writes are gathered for a batch")
    bulk_threshold: int | None = Field(None, ge=1)


SYSTEM = SystemType(
    name="salesforce",
    description="Salesforce, the CRM: won Opportunities (or any sObject) read by change cursor; billing "
    "state written back.",
    config=SalesforceSystemConfig,
    build="lead2cash.systems.salesforce.binding:build",
    sources=(Operation(ANY, "any sObject (Opportunity with its Account and line items)", SourceOptions),),
    actions=(
        Operation("writeback", "billing state onto the Opportunity", WritebackOptions),
        Operation("upsert", "any sObject upserted on an external id", UpsertOptions),
    ),
    adapters=("lead2cash.adapters.salesforce",),
    live_check="lead2cash.testing.metadata:check_salesforce",
    sandbox="lead2cash.sandbox.salesforce:SalesforceSandbox",
)
