"""``lead2cash check --live``: the config checked against what the configured systems say about themselves.

- Salesforce: describe of the objects the routes read and write (Opportunity, its Account and line items
  and, through relationship paths, PricebookEntry and Product2): every field a source option names exists;
  every ``writeback_fields`` entry exists, is updateable and has a type that can hold the value.
- SAP: ``$metadata`` of API_BUSINESS_PARTNER (the partner search field) and of the lookup service (the
  fields the crash-recovery lookup filters and selects).
- Lago: the plan and add-on codes the mapping tables give each active product of the Salesforce catalogue
  (per currency for plans) exist in Lago.

Every problem is a ConfigIssue with the file, line and mapping key to fix. A system that cannot be reached
is reported as skipped, not as a problem; any other exception is a bug in the check and is raised. SAP
G/L accounts have no metadata API here, so are not checked.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
from rich.console import Console
from rich.markup import escape

from lead2cash.adapters import lago as lago_adapter
from lead2cash.config import ConfigIssue
from lead2cash.errors import DeliveryError
from lead2cash.systems.lago.binding import LagoBinding, OrderTarget
from lead2cash.systems.registry import load, system_types
from lead2cash.systems.salesforce.binding import (
    ACCOUNT_FIELDS,
    LINE_FIELDS,
    OPPORTUNITY_FIELDS,
    SalesforceBinding,
    WritebackTarget,
)
from lead2cash.systems.sap.binding import SapSystem

# Writeback field -> Salesforce field types that can hold its value.
WRITEBACK_TYPES: dict[str, frozenset[str]] = {
    "invoice_number": frozenset({"string", "textarea"}),
    "invoiced_amount": frozenset({"currency", "double"}),
    "payment_status": frozenset({"picklist", "string"}),
    "accounting_document": frozenset({"string", "textarea"}),
    "last_sync": frozenset({"datetime"}),
}
_EDMX = "{http://schemas.microsoft.com/ado/2008/09/edm}"
# What a system that cannot be reached (or refuses the check's credentials) raises. Anything else is a bug
# in the check and must surface as one, not read like a network problem.
UNREACHABLE: tuple[type[BaseException], ...] = (
    DeliveryError,
    OSError,
    httpx.HTTPError,
    requests.RequestException,
    ET.ParseError,
)


@dataclass
class LiveCheck:
    hub: Any
    console: Console
    issues: list[ConfigIssue] = field(default_factory=list)
    catalogue: list[dict[str, Any]] | None = None  # active price book entries, for the Lago codes

    @property
    def loaded(self) -> Any:
        return self.hub.loaded

    def issue(self, path: tuple[str | int, ...], message: str) -> None:
        self.issues.append(self.loaded.issue(path, message))

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def skipped(self, system: str, exc: BaseException) -> None:
        reason = exc.describe() if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        self.say(f"[yellow]skipped[/yellow]: {escape(system)} not reachable ({escape(reason[:200])})")

    def routes(self, side: str, system: str) -> list[tuple[int, Any]]:
        return [
            (i, r)
            for i, r in enumerate(self.hub.config.routes)
            if r.enabled and getattr(r, side).system == system and r.name in self.hub.routes
        ]

    # ------------------------------------------------------------------ Salesforce
    async def salesforce(self, name: str, binding: SalesforceBinding) -> None:
        client = binding.client
        budget = client.budget("lead2cash-check", 1.0)
        cache: dict[str, dict[str, Any]] = {}

        async def describe(obj: str) -> dict[str, Any]:
            if obj not in cache:
                data = await client.call(
                    budget, lambda sf: sf.restful(f"sobjects/{obj}/describe"), f"describe {obj}"
                )
                cache[obj] = {f["name"]: f for f in (data or {}).get("fields", [])}
            return cache[obj]

        try:
            await describe("Opportunity")
        except UNREACHABLE as exc:
            self.skipped(name, exc)
            return
        checked = 0

        async def resolve(obj: str, path: str) -> str | None:
            """None when ``obj.path`` exists, else what is wrong; follows relationship names."""
            parts = path.split(".")
            for i, part in enumerate(parts):
                fields = await describe(obj)
                if i == len(parts) - 1:
                    return None if part in fields else f"{obj} has no field {part}"
                rel = next((f for f in fields.values() if f.get("relationshipName") == part), None)
                if rel is None or not rel.get("referenceTo"):
                    return f"{obj} has no relationship {part}"
                obj = rel["referenceTo"][0]
            return None

        for i, route in self.routes("source", name):
            options = route.source.options
            obj = route.source.object
            groups: list[tuple[str, str, tuple[str, ...]]] = []
            if obj == "Opportunity":
                groups = [
                    ("fields", "Opportunity", tuple(options.get("fields", OPPORTUNITY_FIELDS))),
                    ("account_fields", "Account", tuple(options.get("account_fields", ACCOUNT_FIELDS))),
                    ("line_fields", "OpportunityLineItem", tuple(options.get("line_fields", LINE_FIELDS))),
                ]
            elif "fields" in options:
                groups = [("fields", obj, tuple(options["fields"]))]
            groups.append(("filters", obj, tuple(dict(options.get("filters") or {}))))
            for option, target_obj, names in groups:
                for n, field_name in enumerate(names):
                    checked += 1
                    problem = await resolve(target_obj, field_name)
                    if problem is None:
                        continue
                    if option in options:
                        where: tuple[str | int, ...] = ("routes", i, "source", "options", option)
                        where = (*where, n) if option != "filters" else (*where, field_name)
                    else:
                        where = ("routes", i, "source", "object")
                    default = "" if option in options else f" (default {option})"
                    self.issue(where, f"route {route.name}: {problem}{default}")

        written: set[str] = set()
        for _, route in self.routes("target", name):
            target = self.hub.routes[route.name].target
            if isinstance(target, WritebackTarget):
                written.add(str(route.target.options.get("object", "Opportunity")))
        explicit = binding.config.model_fields_set
        for obj in sorted(written):
            fields = await describe(obj)
            for key, sf_name in binding.config.writeback_fields.model_dump().items():
                if sf_name is None:
                    continue
                checked += 1
                set_here = "writeback_fields" in explicit
                where = ("systems", name, "writeback_fields", key) if set_here else ("systems", name)
                found = fields.get(sf_name)
                if found is None:
                    self.issue(where, f"{obj} has no field {sf_name} (writeback_fields.{key})")
                elif not found.get("updateable", False):
                    self.issue(where, f"{obj}.{sf_name} is not updateable (writeback_fields.{key})")
                elif found.get("type") not in WRITEBACK_TYPES.get(key, frozenset({found.get("type")})):
                    allowed = ", ".join(sorted(WRITEBACK_TYPES[key]))
                    self.issue(
                        where,
                        f"{obj}.{sf_name} is a {found.get('type')} field; writeback_fields.{key} needs {allowed}",
                    )
        self.say(
            f"[green]ok[/green]: {escape(name)}: {checked} field(s) checked against describe of {len(cache)} object(s)"
        )
        try:
            self.catalogue = await client.call(
                budget,
                lambda sf: sf.query_all(
                    "SELECT CurrencyIsoCode, Product2.ProductCode, Product2.Billing_Type__c "
                    "FROM PricebookEntry WHERE IsActive = true"
                )["records"],
                "catalogue",
            )
        except UNREACHABLE as exc:
            self.say(
                f"[yellow]note[/yellow]: {escape(name)}: no product catalogue read ({escape(str(exc)[:160])})"
            )

    # ------------------------------------------------------------------ SAP
    async def sap(self, name: str, system: SapSystem) -> None:
        cfg = system.cfg

        async def properties(service: str, entity_set: str) -> set[str] | None:
            response = await system.odata.request("GET", service, "$metadata", what="$metadata")
            assert response is not None
            root = ET.fromstring(response.content)  # noqa: S314 - the configured system's own service document
            set_type = None
            for es in root.iter(f"{_EDMX}EntitySet"):
                if es.get("Name") == entity_set:
                    set_type = str(es.get("EntityType", "")).rsplit(".", 1)[-1]
            if set_type is None:
                return None
            for et in root.iter(f"{_EDMX}EntityType"):
                if et.get("Name") == set_type:
                    return {str(p.get("Name")) for p in et.iter(f"{_EDMX}Property")}
            return None

        try:
            bp = await properties(cfg.odata.business_partner, "A_BusinessPartner")
        except UNREACHABLE as exc:
            self.skipped(name, exc)
            return
        field_name = cfg.business_partner.search_field
        if bp is None:
            self.issue(
                ("systems", name, "odata", "business_partner"),
                "the service has no entity set A_BusinessPartner",
            )
        elif field_name not in bp:
            self.issue(
                ("systems", name, "business_partner", "search_field"),
                f"A_BusinessPartner has no property {field_name}",
            )
        lk = cfg.lookup
        service = getattr(cfg.odata, lk.service)
        try:
            props = await properties(service, lk.entity_set)
        except UNREACHABLE as exc:
            self.say(
                f"[yellow]note[/yellow]: {escape(name)}: lookup service $metadata not read ({escape(str(exc)[:160])})"
            )
            props = set()
        if props is None:
            self.issue(
                ("systems", name, "lookup", "entity_set"), f"{service} has no entity set {lk.entity_set}"
            )
        elif props:
            for key in ("reference_field", "document_field", "company_code_field", "fiscal_year_field"):
                value = getattr(lk, key)
                if value not in props:
                    self.issue(("systems", name, "lookup", key), f"{lk.entity_set} has no property {value}")
        self.say(
            f"[green]ok[/green]: {escape(name)}: $metadata of the business partner and lookup services checked"
        )

    # ------------------------------------------------------------------ Lago
    async def lago(self, name: str, binding: LagoBinding) -> None:
        targets = [
            (i, route, t)
            for i, route in self.routes("target", name)
            if isinstance(t := self.hub.routes[route.name].target, OrderTarget)
        ]
        try:
            plan_list = [p async for p in binding.client.pages("/plans", "plans.list", "plans")]
            add_ons = {
                str(a["code"]) async for a in binding.client.pages("/add_ons", "add_ons.list", "add_ons")
            }
        except UNREACHABLE as exc:
            self.skipped(name, exc)
            return
        if not targets:
            self.say(f"[green]ok[/green]: {escape(name)}: reachable; no route bills orders here")
            return
        if self.catalogue is None:
            self.say(
                f"[yellow]skipped[/yellow]: {escape(name)}: plan and add-on codes need the Salesforce catalogue"
            )
            return
        plans = {str(p["code"]) for p in plan_list}
        billed = {str(p.get("amount_currency")) for p in plan_list}
        unsupported = set(binding.config.unsupported_currencies)
        # A currency without a single plan is not set up in this Lago at all: a business decision (its deals
        # are dead-lettered with the reason), said once, not an error per product.
        absent = sorted(
            {
                str(e.get("CurrencyIsoCode"))
                for e in self.catalogue
                if (e.get("Product2") or {}).get("Billing_Type__c") == "Recurring"
            }
            - billed
            - unsupported
        )
        for missing in absent:
            self.say(
                f"[yellow]warning[/yellow]: {escape(name)} has no plan in {missing}: deals in {missing} will be "
                "dead-lettered (list it in unsupported_currencies to refuse them before any call)"
            )
        unsupported |= set(absent)
        checked = 0
        for i, route, target in targets:
            seen: set[tuple[str, str, str]] = set()
            for entry in self.catalogue:
                product = entry.get("Product2") or {}
                code, currency = product.get("ProductCode"), entry.get("CurrencyIsoCode")
                if not code or not currency or currency in unsupported:
                    continue
                recurring = product.get("Billing_Type__c") == "Recurring"
                what = "plan" if recurring else "add-on"
                if (code, currency if recurring else "", what) in seen:
                    continue
                seen.add((code, currency if recurring else "", what))
                checked += 1
                table = target.plan_table if recurring else target.addon_table
                table_name = target.plan_table_name if recurring else target.addon_table_name
                where = self._table_position(i, table_name, table, code)
                try:
                    lago_code = lago_adapter.table_code(table, table_name, code, currency, what)
                except DeliveryError as exc:
                    self.issue(where, f"route {route.name}: {exc.describe()}")
                    continue
                if lago_code not in (plans if recurring else add_ons):
                    ccy = f" in {currency}" if recurring else ""
                    self.issue(
                        where,
                        f"route {route.name}: Lago has no {what} {lago_code!r} (for product {code}{ccy})",
                    )
        self.say(f"[green]ok[/green]: {escape(name)}: {checked} plan/add-on code(s) checked against Lago")

    def _table_position(
        self, route_index: int, table_name: str | None, table: Mapping[str, Any] | None, code: str
    ) -> tuple[str | int, ...]:
        if table_name is None or table is None:
            return ("routes", route_index, "target")
        return ("mappings", table_name, code if code in table else "_default")

    # ------------------------------------------------------------------ all
    async def run(self) -> list[ConfigIssue]:
        systems = self.hub.systems
        types = list(system_types())
        kind = {name: cfg.type for name, cfg in self.hub.config.systems.items()}
        # In the registry's order, Salesforce before Lago: its catalogue is what the Lago codes are checked
        # for. Each type's check is the one its declaration names.
        order = sorted(systems, key=lambda n: types.index(kind[n]) if kind.get(n) in types else len(types))
        try:
            for name in order:
                spec = system_types().get(kind.get(name, ""))
                if spec is not None and spec.live_check:
                    await load(spec.live_check)(self, name, systems[name])
        finally:
            await self.hub.aclose_systems()
        return self.issues


async def check_salesforce(check: LiveCheck, name: str, binding: SalesforceBinding) -> None:
    await check.salesforce(name, binding)


async def check_sap(check: LiveCheck, name: str, system: SapSystem) -> None:
    await check.sap(name, system)


async def check_lago(check: LiveCheck, name: str, binding: LagoBinding) -> None:
    await check.lago(name, binding)


def check_live(hub: Any, console: Console) -> list[ConfigIssue]:
    """Check the built hub's config against its systems' metadata; returns the problems found."""
    return asyncio.run(LiveCheck(hub, console).run())
