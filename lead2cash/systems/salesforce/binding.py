"""The Salesforce binding: the connector (transport) paired with the adapter (record shapes).

Sources (``source.object``): ``Opportunity`` (with Account and line items, for ``salesforce.opportunity``)
or any object with ``options.fields``. Targets (``target.action``): ``writeback`` (an Invoice's billing
state onto its Opportunity) and ``upsert`` (any entity onto any object by an external id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jmespath
from pydantic import BaseModel, ValidationError

from lead2cash.adapters.salesforce import (
    SalesforceMappingError,
    invoice_writeback,
    opportunity_id_of,
    writeback_applied,
)
from lead2cash.canonical_model import Invoice
from lead2cash.config.errors import ConfigProblems
from lead2cash.config.salesforce import SalesforceSystemConfig, SalesforceWritebackFields
from lead2cash.connectors.salesforce import (
    BatchWriter,
    ChangeReader,
    ChildQuery,
    ConnectionSettings,
    Credentials,
    Cursor,
    QuerySpec,
    SalesforceClient,
    identifier,
)
from lead2cash.connectors.salesforce.soql import record_id
from lead2cash.errors import PermanentError
from lead2cash.routes.interfaces import Source, SourceBatch, Target
from lead2cash.store import Store
from lead2cash.systems import BindingContext

ACCOUNT_FIELDS = (
    "Id", "Name", "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry",
)  # fmt: skip
OPPORTUNITY_FIELDS = (
    "Name", "StageName", "CloseDate", "IsClosed", "IsWon", "Amount", "AccountId", "LastStageChangeDate",
)  # fmt: skip
LINE_FIELDS = (
    "Quantity", "UnitPrice", "ListPrice", "Discount", "TotalPrice", "ServiceDate", "ProductCode",
    "Product2Id", "PricebookEntryId", "Service_End_Date__c", "PricebookEntry.Product2.ProductCode",
    "PricebookEntry.Product2.Name", "PricebookEntry.Product2.Family",
    "PricebookEntry.Product2.Billing_Type__c", "PricebookEntry.Product2.Billing_Period__c",
)  # fmt: skip
SOURCE_OPTIONS = frozenset(
    {
        "fields",
        "account_fields",
        "line_fields",
        "filters",
        "safety_lag",
        "page_size",
        "sweep_interval",
        "api_share",
    }
)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigProblems([((where,), "expected a list of field names")])
    try:
        return tuple(identifier(v) for v in value)
    except ValueError as exc:
        raise ConfigProblems([((where,), str(exc))]) from None


def _float(options: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigProblems([(("options", key), "expected a number of seconds")])
    return float(value)


class SalesforceSource:
    def __init__(
        self,
        name: str,
        client: SalesforceClient,
        reader: ChangeReader,
        share: float,
        default_currency: str | None,
    ) -> None:
        self.name = name
        self.client = client
        self.reader = reader
        self.budget = client.budget(name, share)
        self.default_currency = default_currency

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        cursor = Cursor.loads(checkpoint)
        await self.client.start(self.budget)
        result = await self.client.call(
            self.budget, lambda sf: self.reader.read(sf, cursor, limit), f"read {self.reader.spec.object}"
        )
        self._defaults(result.records)
        return SourceBatch(
            result.records,
            result.cursor.dumps(),
            more=result.more,
            meta={"server_time": str(result.server_time), "api_calls": self.client.calls},
        )

    def _defaults(self, records: list[dict[str, Any]]) -> None:
        if self.default_currency:
            for record in records:
                record.setdefault("CurrencyIsoCode", self.default_currency)

    async def reread(self, record: Mapping[str, Any]) -> SourceBatch:
        """The record this one was, read again by its Id with its account and line items (deleted
        included); no record when it no longer matches the source's filters."""
        try:
            rid = record_id(str(record.get("Id")))
        except ValueError as exc:
            raise PermanentError(f"cannot re-read the record: {exc}") from None
        await self.client.start(self.budget)
        records = await self.client.call(
            self.budget, lambda sf: self.reader.reread(sf, rid), f"re-read {self.reader.spec.object} {rid}"
        )
        self._defaults(records)
        return SourceBatch(records, None)

    # ------------------------------------------------------------------ operators (lead2cash checkpoint, run)
    @staticmethod
    def parse_checkpoint(value: str) -> str:
        """A checkpoint an operator typed, checked and normalised (ValueError when malformed)."""
        try:
            return Cursor.loads(value).dumps()
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"not a Salesforce cursor ({exc}); expected JSON such as "
                '{"ts": "2026-12-01T00:00:00.000Z", "id": "000000000000000", "sweep_after": null, '
                '"sweep_at": null}, or use `lead2cash checkpoint start`'
            ) from None

    async def checkpoint_at(self, when: dt.datetime | None) -> str:
        """The checkpoint that starts reading at ``when`` (None: the org's clock now)."""
        if when is None:
            await self.client.start(self.budget)
            when = await self.client.call(self.budget, self.reader.server_time, "read the org's clock")
        return Cursor.starting_at(when).dumps()

    async def behind(self, checkpoint: str | None) -> int:
        """Records past the checkpoint: after a read that caught up, those inside the safety lag."""
        cursor = Cursor.loads(checkpoint)
        await self.client.start(self.budget)
        return await self.client.call(
            self.budget, lambda sf: self.reader.count_after(sf, cursor), f"count {self.reader.spec.object}"
        )

    @property
    def safety_lag(self) -> float:
        return self.reader.safety_lag


class WritebackTarget:
    """An Invoice's billing state onto its Opportunity (update by Id, coalesced into collections).

    Exactly once: the update sets absolute values, and ``lookup`` reads the Opportunity back and reports
    the effect applied when it already holds them (the sync time aside)."""

    def __init__(
        self,
        name: str,
        writer: BatchWriter,
        config: SalesforceSystemConfig,
        store: Store | None = None,
        ledger_system: str | None = "sap",
    ) -> None:
        self.name = name
        self.writer = writer
        self.fields = config.writeback_fields.model_dump()
        self.statuses: dict[str, str] = {}
        self.store = store
        self.ledger_system = ledger_system

    def _values(self, entity: BaseModel, synced_at: dt.datetime | None) -> tuple[str, dict[str, Any]]:
        if not isinstance(entity, Invoice):
            raise PermanentError(f"writeback takes an Invoice, not {type(entity).__name__}")
        ledger = self.ledger_system
        if ledger and ledger not in entity.refs and self.store is not None:
            # A status change written after the invoice was posted carries its accounting document too, so
            # the Opportunity never shows one invoice's number with another's document.
            document = self.store.xref_get("Invoice", entity.id, ledger)
            if document:
                entity = entity.model_copy(update={"refs": entity.refs.with_ref(ledger, document)})
        try:
            return invoice_writeback(entity, self.fields, self.statuses, synced_at)
        except SalesforceMappingError as exc:
            raise PermanentError(str(exc), details={"field": exc.field}) from None

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        opp_id, values = self._values(entity, dt.datetime.now(dt.UTC))
        return await self.writer.write({"Id": opp_id, **values})

    def preview(self, entity: BaseModel, key: str) -> dict[str, Any]:
        """The update a delivery sends, without I/O (``lead2cash test``); the sync time is left out."""
        opp_id, values = self._values(entity, None)
        return {"sobject": self.writer.obj, "Id": opp_id, **values}

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        opp_id, values = self._values(entity, None)
        found = await self.writer.fetch([opp_id], list(values))
        current = next(iter(found.values()), None)
        if current is not None and writeback_applied(current, values, set()):
            return str(current.get("Id") or opp_id)
        return None


class UpsertTarget:
    """Any canonical entity onto ``object`` by ``external_id_field``; ``fields`` maps Salesforce field ->
    JMESPath over the entity's JSON. ``lookup`` finds the record by its external id and compares."""

    def __init__(self, name: str, writer: BatchWriter, fields: Mapping[str, Any]) -> None:
        self.name = name
        self.writer = writer
        self.fields = {identifier(k): jmespath.compile(v) for k, v in fields.items()}

    def _record(self, entity: BaseModel) -> dict[str, Any]:
        data = entity.model_dump(mode="json")
        record = {name: expr.search(data) for name, expr in self.fields.items()}
        key = record.get(self.writer.match_field)
        if not isinstance(key, str) or not key:
            raise PermanentError(
                f"no value for the external id {self.writer.match_field}",
                details={"field": self.writer.match_field},
            )
        return record

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        return await self.writer.write(self._record(entity))

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        record = self._record(entity)
        ext = record[self.writer.match_field]
        found = await self.writer.fetch([ext], [f for f in record if f != "Id"])
        current = found.get(ext)
        if current is not None and writeback_applied(current, record, set()):
            return str(current.get("Id"))
        return None


class SalesforceBinding:
    def __init__(self, name: str, config: SalesforceSystemConfig, context: BindingContext) -> None:
        self.name = name
        self.config = config
        self.context = context
        auth = config.auth
        key_file = auth.private_key_file
        if key_file and not Path(key_file).is_absolute():
            key_file = str(context.base_dir / key_file)
        ca_bundle = config.ca_bundle
        if ca_bundle and not Path(ca_bundle).is_absolute():
            ca_bundle = str(context.base_dir / ca_bundle)
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if ca_bundle and not Path(ca_bundle).is_file():
            problems.append((("ca_bundle",), f"no such file: {ca_bundle}"))
        if key_file and not Path(key_file).is_file():
            problems.append((("auth", "private_key_file"), f"no such file: {key_file}"))
        if problems:
            raise ConfigProblems(problems)
        self.settings = ConnectionSettings(
            token_url=config.resolved_token_url,
            credentials=Credentials(
                grant_type=auth.grant_type,
                client_id=auth.client_id,
                client_secret=auth.client_secret.get_secret_value() if auth.client_secret else None,
                username=auth.username,
                password=auth.password.get_secret_value() if auth.password else None,
                private_key_file=Path(key_file) if key_file else None,
                audience=auth.audience,  # default: jwt_audience(token URL), never the My Domain host
            ),
            instance_url=config.instance_url,
            api_version=config.api_version,
            ca_bundle=ca_bundle,
            proxies={str(k): v for k, v in config.proxies.items()},
            timeout=config.timeout,
            max_concurrent_calls=config.max_concurrent_calls,
            pause_below=config.api_budget.pause_below,
            limit_retry_after=config.api_budget.retry_after,
        )
        self.client = SalesforceClient(self.settings)

    def close(self) -> None:
        """Release connections and worker threads (the hub should call this when it closes)."""
        self.client.close()

    def _spec(self, obj: str, options: Mapping[str, Any]) -> QuerySpec:
        multi = self.config.multi_currency
        currency = ("CurrencyIsoCode",) if multi else ()
        filters_opt = options.get("filters", {"IsWon": True} if obj == "Opportunity" else {})
        if not isinstance(filters_opt, Mapping):
            raise ConfigProblems([(("options", "filters"), "expected a mapping of field -> value")])
        if obj == "Opportunity":
            fields = _names(options.get("fields", OPPORTUNITY_FIELDS), "options.fields")
            account = _names(options.get("account_fields", ACCOUNT_FIELDS), "options.account_fields")
            lines = _names(options.get("line_fields", LINE_FIELDS), "options.line_fields")
            all_fields = (*fields, *currency, *(f"Account.{f}" for f in (*account, *currency)))
            # A line edit moves the line's SystemModstamp, not the Opportunity's: the line items are
            # watched on a cursor of their own, and the Opportunity of a changed line is read again.
            children: tuple[ChildQuery, ...] = (
                ChildQuery(
                    "OpportunityLineItems",
                    (*lines, *currency),
                    object="OpportunityLineItem",
                    parent_field="OpportunityId",
                    parent_relationship="Opportunity",
                ),
            )
        else:
            if "fields" not in options:
                raise ConfigProblems([(("options", "fields"), f"name the fields to read from {obj}")])
            all_fields, children = (*_names(options["fields"], "options.fields"), *currency), ()
        try:
            return QuerySpec(identifier(obj), tuple(all_fields), children, tuple(filters_opt.items()))
        except ValueError as exc:
            raise ConfigProblems([(("options",), str(exc))]) from None

    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        unknown = set(options) - SOURCE_OPTIONS
        if unknown:
            raise ConfigProblems(
                [
                    (("options", u), f"unknown option; known: {', '.join(sorted(SOURCE_OPTIONS))}")
                    for u in unknown
                ]
            )
        cfg = self.config
        reader = ChangeReader(
            self._spec(object, options),
            safety_lag=_float(options, "safety_lag", cfg.safety_lag) or 0.0,
            page_size=int(options.get("page_size", cfg.page_size)),
            sweep_interval=_float(options, "sweep_interval", cfg.sweep_interval),
            clock=self.client.server_clock,
        )
        share = _float(options, "api_share", cfg.api_budget.daily_share) or 1.0
        default_currency = None if cfg.multi_currency else cfg.default_currency
        return SalesforceSource(f"{self.name}/{object}", self.client, reader, share, default_currency)

    def _writer(self, obj: str, match: str, options: Mapping[str, Any], name: str) -> BatchWriter:
        share = _float(options, "api_share", self.config.api_budget.daily_share) or 1.0
        return BatchWriter(
            self.client,
            self.client.budget(name, share),
            obj,
            match,
            window=_float(options, "write_window", self.config.write_window) or 0.0,
            bulk_threshold=int(options.get("bulk_threshold", self.config.bulk_threshold)),
        )

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        if action == "writeback":
            wb_obj = str(options.get("object", "Opportunity"))
            name = f"{self.name}/{wb_obj}.writeback"
            ledger = options.get("ledger_system", "sap")
            target = WritebackTarget(
                name,
                self._writer(wb_obj, "Id", options, name),
                self.config,
                self.context.store,
                str(ledger) if ledger else None,
            )
            statuses = options.get("payment_status_values", {})
            if not isinstance(statuses, Mapping):
                raise ConfigProblems([(("options", "payment_status_values"), "expected a mapping")])
            target.statuses = {str(k): str(v) for k, v in statuses.items()}
            # Per route, over the system's: a route that writes a snapshot of the invoice (its ledger
            # document) must leave the payment status, which only the status route keeps current.
            overrides = options.get("writeback_fields", {})
            if not isinstance(overrides, Mapping):
                raise ConfigProblems([(("options", "writeback_fields"), "expected a mapping")])
            try:
                target.fields = SalesforceWritebackFields.model_validate(
                    {**target.fields, **overrides}
                ).model_dump()
            except ValidationError as exc:
                raise ConfigProblems(
                    [(("options", "writeback_fields", *e["loc"]), e["msg"]) for e in exc.errors()]
                ) from None
            return target
        if action == "upsert":
            obj, ext, fields = options.get("object"), options.get("external_id_field"), options.get("fields")
            if not isinstance(obj, str) or not isinstance(ext, str) or not isinstance(fields, Mapping):
                raise ConfigProblems(
                    [(("options",), "upsert needs object, external_id_field and fields (field -> JMESPath)")]
                )
            if ext not in fields:
                raise ConfigProblems([(("options", "fields"), f"map the external id field {ext}")])
            name = f"{self.name}/{obj}.upsert"
            try:
                return UpsertTarget(name, self._writer(obj, ext, options, name), fields)
            except (ValueError, jmespath.exceptions.JMESPathError) as exc:
                raise ConfigProblems([(("options", "fields"), str(exc))]) from None
        raise ConfigProblems([(("action",), f"unknown action {action!r}; known: writeback, upsert")])


def build(name: str, config: SalesforceSystemConfig, context: BindingContext) -> SalesforceBinding:
    return SalesforceBinding(name, config, context)


__all__ = ["SalesforceBinding", "build", "opportunity_id_of"]
