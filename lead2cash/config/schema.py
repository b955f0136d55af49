"""The configuration schema. The JSON Schema for editors (``lead2cash config schema``) and the reference
docs are generated from these models, so they are declared once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from apscheduler.triggers.cron import CronTrigger
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator

from lead2cash.config.base import DottedPath, Duration, JMESPath, KeyTemplateStr, Name, Strict
from lead2cash.config.reconcile import ReconcileConfig
from lead2cash.systems.registry import system_types


class StateConfig(Strict):
    url: str = Field(
        "sqlite:///.state/lead2cash.db",
        description="sqlite:///path (embedded default) or postgresql://... for several workers",
    )
    worker_id: str | None = Field(None, description="stable id of this worker; default host:pid")
    lease: Duration = Field(
        120.0, description="how long a claimed message is held before another worker may take it"
    )


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


class WebConfig(Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    admin_token: SecretStr | None = None


# Every registered system type's config model, told apart by ``type`` (see lead2cash.systems.registry).
if TYPE_CHECKING:
    SystemConfig = Any
else:
    SystemConfig = Annotated[
        Union[tuple(spec.config for spec in system_types().values())],  # noqa: UP007 (built at run time)
        Field(discriminator="type"),
    ]


class PollTrigger(Strict):
    type: Literal["poll"]
    interval: Duration = 10.0


class WebhookTrigger(Strict):
    """``POST /webhooks/<route>`` on the hub's web app. Generic senders sign the raw body with HMAC-SHA256
    (base64 in ``signature_header``); system-specific receivers (Lago) bring their own verification."""

    type: Literal["webhook"]
    secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key; unsigned requests are rejected with 401"
    )
    signature_header: str = "X-Signature"
    unique_key_header: str | None = Field(
        "X-Unique-Key", description="sender's delivery id, for deduplication"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    poll_fallback: Duration | None = Field(
        None, description="also poll at this interval, for missed webhooks"
    )


class ScheduleTrigger(Strict):
    type: Literal["schedule"]
    cron: str = Field(description="crontab expression, UTC")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid crontab expression: {exc}") from None
        return value


Trigger = Annotated[PollTrigger | WebhookTrigger | ScheduleTrigger, Field(discriminator="type")]


class SourceConfig(Strict):
    system: str
    object: str
    trigger: Trigger = Field(default_factory=lambda: PollTrigger(type="poll"))
    options: dict[str, Any] = Field(default_factory=dict)


class MappingConfig(Strict):
    adapter: str | None = Field(None, description="a shipped adapter, e.g. 'canonical'")
    function: DottedPath | None = Field(None, description="custom mapping: 'package.module:function'")
    entity: str = Field(description="canonical entity type produced, e.g. Order, Invoice")
    fields: dict[str, JMESPath] = Field(
        default_factory=dict, description="canonical path -> JMESPath over the source record"
    )
    value_maps: dict[str, str] = Field(
        default_factory=dict, description="canonical path -> name of a table under mappings"
    )
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way(self) -> MappingConfig:
        if (self.adapter is None) == (self.function is None):
            raise ValueError("give exactly one of 'adapter' or 'function'")
        return self


class TargetConfig(Strict):
    system: str
    action: str
    options: dict[str, Any] = Field(default_factory=dict)


class RetryConfig(Strict):
    attempts: int = Field(5, ge=1, le=100)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    jitter: Duration = 0.5
    max_inline_wait: Duration = Field(
        30.0, description="longer Retry-After pauses the route instead of waiting"
    )


class RouteConfig(Strict):
    name: Name
    description: str | None = None
    enabled: bool = True
    source: SourceConfig
    filter: JMESPath | None = Field(None, description="records for which this is falsy are skipped")
    mapping: MappingConfig
    target: TargetConfig
    idempotency_key: KeyTemplateStr = Field(
        description="template over the canonical entity, e.g. 'order:{id}:v{version}'"
    )
    ordering_key: KeyTemplateStr | None = Field(
        None, description="records with one ordering key are delivered in order"
    )
    retry: RetryConfig = Field(default_factory=lambda: RetryConfig())
    on_failure: Literal["dead-letter", "halt-route"] = "dead-letter"
    batch_size: int = Field(200, ge=1, le=5000)
    concurrency: int = Field(16, ge=1, le=512)
    rate_limit: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="ceiling on target calls per second (delivers, lookups, connectors' quick retries)",
    )


class SummarySalesforceConfig(Strict):
    system: str = Field(description="the salesforce system the Account is written in")
    object: str = Field("Account", description="the sObject the summary is written on")
    match_field: str = Field(
        "Id",
        description="Account field that holds the customer's Lago external id (Id, or an external id field)",
    )
    interval: Duration = Field(
        5.0, description="a customer's Account is written at most once per interval (its latest summary)"
    )
    fields: dict[str, str] | None = Field(
        None,
        description="summary field -> Account field (default: Billing_*__c names, docs/usage.md); "
        "a field left out is not written",
    )


class BillingSummaryConfig(Strict):
    lago: str = Field(description="the lago system whose customers are summarised")
    poll: Duration = Field(0.5, description="how often the keeper looks for deliveries it was not told of")
    salesforce: SummarySalesforceConfig | None = Field(
        None, description="write each summary to the customer's Account (none: kept in the hub only)"
    )


class HubConfig(Strict):
    version: Literal[1] = 1
    state: StateConfig = Field(default_factory=lambda: StateConfig())
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig())
    web: WebConfig = Field(default_factory=lambda: WebConfig())
    systems: dict[Name, SystemConfig] = Field(default_factory=dict)
    mappings: dict[Name, dict[str, Any]] = Field(default_factory=dict, description="named value maps")
    routes: list[RouteConfig] = Field(default_factory=list)
    reconcile: ReconcileConfig = Field(
        default_factory=lambda: ReconcileConfig(), description="reconciliations the hub runs on a schedule"
    )
    billing_summary: BillingSummaryConfig | None = Field(
        None, description="the near-real-time billing summary per customer (docs/usage.md)"
    )


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _flatten(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _flatten(tp: Any) -> list[Any]:
    args = get_args(tp)
    return [tp] if not args else [a for arg in args for a in _flatten(arg)]


def _alias_choices(schema: dict[str, Any]) -> None:
    """pydantic puts only a field's first name in the schema; a file may use any of its names
    (``AliasChoices``), so each is a property and a required field needs one of them."""
    models: set[type[BaseModel]] = set()
    _models(HubConfig, models)
    for model in models:
        definition = schema.get("$defs", {}).get(model.__name__)
        if definition is None:
            continue
        for field in model.model_fields.values():
            if not isinstance(field.validation_alias, AliasChoices):
                continue
            names = [c for c in field.validation_alias.choices if isinstance(c, str)]
            first = definition["properties"].get(names[0])
            if first is None:
                continue
            for other in names[1:]:
                definition["properties"][other] = {**first, "description": f"alias of {names[0]}"}
            if names[0] in definition.get("required", []):
                definition["required"].remove(names[0])
                definition.setdefault("allOf", []).append({"anyOf": [{"required": [n]} for n in names]})


def json_schema() -> dict[str, Any]:
    schema = HubConfig.model_json_schema()
    _alias_choices(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "lead2cash hub configuration"
    return schema
