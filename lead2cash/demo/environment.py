"""The whole lead-to-cash flow on one machine: the three sandboxes, the hub on the shipped routes, and the
checks that the three systems agree. ``make demo``, the end-to-end tests and ``bench/lead_to_cash.py`` all
run on this.

The hub is configured exactly as a deployment is: a systems file (written here from what the sandboxes
print), plus the shipped ``config/mappings.yaml`` and ``config/lead-to-cash.yaml``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lead2cash.demo.clients import SandboxClients
from lead2cash.hub import Hub
from lead2cash.reconcile.three_way import ThreeWayReport, reconcile_sync
from lead2cash.reconcile.three_way import order_of as order_of  # the demo's and the tests' name for it
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.sandbox.sap import SapSandbox
from lead2cash.sandbox.server import SandboxCluster

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
ROUTE_FILES = ("mappings.yaml", "lead-to-cash.yaml")
# The billing engine takes these; a deal in another currency would be dead-lettered, by design.
DEMO_CURRENCIES = ("USD", "EUR", "GBP", "JPY")
SAP_REFERENCE_LENGTH = 16  # DocumentReferenceID (XBLNR)
ROUTES = (
    "won-opportunity-to-billing",
    "posted-invoice-to-ledger",
    "billing-status-to-opportunity",
    "ledger-document-to-opportunity",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Progress:
    won: int = 0
    billed: int = 0
    invoices: int = 0
    posted: int = 0
    written_back: int = 0
    pending: int = 0
    retries: int = 0
    dead_letters: int = 0


# The demo's checker is the product's three-way reconciliation (``lead2cash reconcile three-way``).
Agreement = ThreeWayReport


def demo_sandboxes(seed: int, seed_size: int) -> tuple[SalesforceSandbox, LagoSandbox, SapSandbox]:
    """The three sandboxes as the lead-to-cash demo runs them (``lead2cash sandbox`` too, by default):
    ``seed_size`` open deals in the billing engine's currencies with an API allowance no run exhausts, and
    a billing engine and ledger that start empty, the billing clock at today."""
    salesforce = SalesforceSandbox(
        seed=seed, seed_size=seed_size, daily_api_limit=10_000_000, currencies=DEMO_CURRENCIES
    )
    lago = LagoSandbox(seed=seed, seed_size=0, clock_start=datetime.now(UTC))
    sap = SapSandbox(seed=seed, seed_size=0)
    return salesforce, lago, sap


def hub_systems_config(
    printed: dict[str, Any],
    *,
    store_url: str,
    web_port: int,
    safety_lag: str = "1s",
    log_level: str = "WARNING",
    worker_id: str = "lead-to-cash-demo",
    overrides: dict[str, dict[str, Any]] | None = None,
    admin_token: str | None = None,
) -> dict[str, Any]:
    """The hub's systems file for the sandboxes, from the ``systems:`` JSON they print (``printed``):
    state store, web app (the Lago webhook receiver) and the four systems the shipped routes name.
    ``overrides`` are merged (deeply) into a system's entry, e.g. shorter client timeouts."""
    sap = dict(printed["sap"])
    # The shipped routes keep account determination in mappings.yaml, not inline.
    sap.pop("revenue_account_by_family", None)
    sap.pop("tax_code_by_catalog_code", None)
    sap.update(
        revenue_accounts="sap_revenue_accounts",
        tax_codes="sap_tax_codes",
        invoice_postings="sap_invoice_postings",
        clearing_accounts="sap_clearing_accounts",
    )
    systems: dict[str, dict[str, Any]] = {
        "salesforce": {**printed["salesforce"], "safety_lag": safety_lag, "sweep_interval": None},
        "lago": {**printed["lago"], "plan_table": "lago_plans", "addon_table": "lago_add_ons"},
        "sap": sap,
        "hub": {"type": "hub"},
    }
    for name, extra in (overrides or {}).items():
        systems[name] = _merged(systems[name], extra)
    web: dict[str, Any] = {"enabled": True, "host": "127.0.0.1", "port": web_port}
    if admin_token:
        web["admin_token"] = admin_token
    return {
        "state": {"url": store_url, "worker_id": worker_id},
        "logging": {"level": log_level},
        "web": web,
        "systems": systems,
    }


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def sap_reference(number: str) -> str:
    """The DocumentReferenceID the shipped ledger route posts an invoice under (``long_references: tail``),
    worked out here on its own to check the hub: the number, or its longest tail of whole "-" segments
    within SAP's 16 characters."""
    parts = number.split("-")
    tails = ("-".join(parts[i:]) for i in range(len(parts)))
    return next((t for t in tails if len(t) <= SAP_REFERENCE_LENGTH), number)


class LeadToCash(SandboxClients):
    def __init__(
        self,
        workdir: Path,
        *,
        seed: int = 42,
        seed_size: int = 60,
        store_url: str | None = None,
        config_dir: Path = CONFIG_DIR,
        safety_lag: str = "1s",
        log_level: str = "WARNING",
        admin_token: str | None = None,
        extra_route_files: Sequence[Path] = (),
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.admin_token = admin_token
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.salesforce, self.lago, self.sap = demo_sandboxes(seed, seed_size)
        self.cluster = SandboxCluster(
            systems=[self.salesforce, self.lago, self.sap], state_dir=self.workdir / "sandbox"
        )
        self.cluster.start_in_thread()
        self.web_port = free_port()
        self.store_url = store_url or f"sqlite:///{self.workdir / 'state.db'}"
        self.systems_file = self.workdir / "systems.yaml"
        self.systems_file.write_text(json.dumps(self.systems_config(safety_lag, log_level), indent=2))
        files = [self.systems_file, *(config_dir / name for name in ROUTE_FILES), *extra_route_files]
        # e.g. config/accounting.yaml (voids, payments, credit notes, refunds), each file loaded once
        self.config_files = list(dict.fromkeys(Path(f).resolve() for f in files))
        self.hub = Hub.from_files(self.config_files)
        ca = ssl.create_default_context(cafile=str(self.cluster.ca_bundle))
        self.http = {
            name: httpx.Client(base_url=self.cluster.base_url(name), verify=ca, timeout=30, trust_env=False)
            for name in ("salesforce", "lago", "sap")
        }
        self._sf_token: str | None = None

    # ------------------------------------------------------------------ configuration
    def systems_config(self, safety_lag: str, log_level: str) -> dict[str, Any]:
        """What a deployment writes by hand, from what the sandboxes print (``lead2cash sandbox --write-systems`` writes the same)."""
        return hub_systems_config(
            self.cluster.hub_config(),
            store_url=self.store_url,
            web_port=self.web_port,
            safety_lag=safety_lag,
            log_level=log_level,
            admin_token=self.admin_token,
        )

    # ------------------------------------------------------------------ the systems, as a person would use them
    def _sf_credentials(self) -> tuple[str, str]:
        return self.salesforce.client_id, self.salesforce.client_secret

    def _lago_api_key(self) -> str:
        return str(self.lago.api_key)

    # ------------------------------------------------------------------ running
    async def start(self) -> None:
        # The webhook endpoint is registered first: events published while the hub is still starting are
        # retried by the billing engine, not lost to the poll fallback's interval.
        headers = {"Authorization": f"Bearer {self.lago.api_key}"}
        endpoint = {
            "webhook_url": f"http://127.0.0.1:{self.web_port}/webhooks/lago",
            "signature_algo": "hmac",
        }
        r = self.http["lago"].post(
            "/api/v1/webhook_endpoints", json={"webhook_endpoint": endpoint}, headers=headers
        )
        r.raise_for_status()
        await self.hub.start()
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(200):
                try:
                    if (await client.get(f"http://127.0.0.1:{self.web_port}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError(f"the hub's web app did not come up on port {self.web_port}")

    async def poll_now(self, route: str = "won-opportunity-to-billing") -> None:
        """An operator's "poll now": read the route's source without waiting for its interval."""
        await self.hub.ingest(route)

    def progress(self) -> Progress:
        store = self.hub.store
        delivered = {r: store.count_messages(r, "delivered") for r in ROUTES}
        retries = sum(
            int(sample.value)
            for metric in self.hub.metrics.retries.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
        return Progress(
            won=len(self._won_ids()),
            billed=len(self._delivered_entities("won-opportunity-to-billing")),
            invoices=store.count_messages("billing-status-to-opportunity"),
            posted=delivered["posted-invoice-to-ledger"],
            written_back=delivered["ledger-document-to-opportunity"],
            pending=sum(store.count_messages(r, "pending") for r in ROUTES),
            retries=retries,
            dead_letters=store.dlq_count(),
        )

    def _won_ids(self) -> set[str]:
        return {r["Id"] for r in self.soql("SELECT Id FROM Opportunity WHERE IsWon = true")}

    def _delivered_entities(self, route: str) -> set[str]:
        """Entities the route delivered; for the billing route, won orders only (it reads every deal)."""
        payloads = (json.loads(m.payload) for m in self.hub.store.messages_for(route, "delivered"))
        return {p["id"] for p in payloads if p.get("status", "won") == "won"}

    def settled(self) -> bool:
        """Every won deal billed, every finalized invoice posted and its document written back, nothing
        pending anywhere, and the billing engine has no webhook left to send."""
        store = self.hub.store
        if any(store.count_messages(r.name, "pending") for r in self.hub.config.routes):
            return False
        if self.lago.webhooks.pending:
            return False
        billed = self._delivered_entities("won-opportunity-to-billing")
        dead_orders = {
            json.loads(d.canonical_payload or "{}").get("id")
            for d in store.dlq_list("won-opportunity-to-billing")
        }
        if not self._won_ids() <= billed | dead_orders:
            return False
        finalized = {i["number"] for i in self.lago_invoices() if i["status"] == "finalized"}
        posted = {
            json.loads(m.payload)["invoice_number"] for m in store.messages_for("posted-invoice-to-ledger")
        }
        if not finalized <= posted:
            return False
        # A wallet top-up's posting belongs to no deal: it has no document to write back.
        deal_postings = sum(
            json.loads(m.payload).get("billing_type") != "credit"
            for m in store.messages_for("posted-invoice-to-ledger", "delivered")
        )
        return store.count_messages("ledger-document-to-opportunity", "delivered") >= deal_postings

    async def wait_settled(self, timeout: float, on_tick: Callable[[Progress], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        stable = 0
        while time.monotonic() < deadline:
            if on_tick is not None:
                on_tick(self.progress())
            stable = stable + 1 if await asyncio.to_thread(self.settled) else 0
            if stable >= 2:
                return True
            await self.poll_now()
            await asyncio.sleep(0.5)
        return False

    async def stop(self) -> None:
        await self.hub.stop()
        await self.hub.aclose_systems()

    def close(self) -> None:
        self.hub.close()
        super().close()
        self.cluster.stop()

    # ------------------------------------------------------------------ do the three systems agree?
    def agreement(self) -> Agreement:
        """Salesforce, Lago and SAP compared record by record and per currency, to the minor unit: the
        product's ``lead2cash reconcile three-way`` over the hub's config, on clients of its own (it may
        run in a thread beside the running hub)."""
        return reconcile_sync(
            self.hub.config, self.hub.store, self.systems_file.parent, config_files=self.config_files
        )

    def lago_api(self, method: str, path: str, **kw: Any) -> Any:
        """One call to the Lago sandbox's API (``path`` below ``/api/v1/``) with its key; the JSON answer."""
        headers = {"Authorization": f"Bearer {self.lago.api_key}"}
        response = self.http["lago"].request(method, f"/api/v1/{path.lstrip('/')}", headers=headers, **kw)
        response.raise_for_status()
        return response.json()

    def sap_receivables(self) -> str:
        return str(self.hub.config.systems["sap"].receivables_account)
