"""The lead-to-cash flow as separate real processes, and a Jepsen-style checker of what it did.

The sandboxes run in their own process (``lead2cash sandbox --lead-to-cash``), the hub in another
(``lead2cash run <systems file> config/mappings.yaml config/lead-to-cash.yaml``), the state store is SQLite
on disk or an external PostgreSQL. Everything here talks to them as an operator would: over HTTP (the
Salesforce sandbox's admin API closes deals, Lago's moves the billing clock, the sandboxes' effect
counters and request logs tell what reached each system), by signals (SIGKILL, SIGTERM) and by reading the
state store. ``tests/reliability`` and ``bench/chaos.py`` run on this (test-only code: not shipped).

The checker (``check``) compares what the three systems counted per key with what the sources imply:

- from the won deals in Salesforce: one Lago customer per account, one subscription per recurring line, one
  one-off invoice (and one metadata write naming the deal) per deal with one-time lines;
- from Lago's finalized invoices: one SAP journal entry each, one business partner per customer, and the
  invoice's number and SAP document written back onto its deal;

and reports per key ``lost`` (expected, never applied), ``duplicated`` (applied more than once) and
``unexpected`` (applied, but no source asked for it), plus the store's own checks: no effect left
``sent`` or ``reserved``, every polled source's checkpoint at the head of its source.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.sandboxes import SandboxesProcess, lead2cash_cmd, wait_for
from lead2cash.demo.clients import HarnessError, SandboxClients
from lead2cash.demo.environment import (
    CONFIG_DIR,
    ROUTES,
    free_port,
    hub_systems_config,
    order_of,
    sap_reference,
)
from lead2cash.store import EffectState, Store

SALESFORCE_SOURCE = "won-opportunity-to-billing"
HUB_SOURCE = "ledger-document-to-opportunity"
LEDGER_ROUTE = "posted-invoice-to-ledger"
# How the sandboxes see each route's target calls, which a route's ``rate_limit`` bounds (``rate_figures``),
# from their request logs (every request, whatever its answer): a call of route 1 upserts its Lago customer
# once, a call of route 2 posts one SAP journal entry, and the write-back routes' calls reach Salesforce as
# collection requests (several calls may share one). The last element names effects whose raw per-second
# peak is reported beside it (Opportunity updates: records, not requests).
RATE_CALLS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "won-opportunity-to-billing": ("lago", ("customers.create",), ()),
    "posted-invoice-to-ledger": ("sap", ("journal_entry.post",), ()),
    "billing-status-to-opportunity": ("salesforce", ("collections.update",), ("Opportunity.update",)),
    "ledger-document-to-opportunity": ("salesforce", ("collections.update",), ("Opportunity.update",)),
}
RESEND_WINDOW_S = 10.0


# ---------------------------------------------------------------------------------------------- processes
class HubProcess:
    """``lead2cash run`` in its own process: start, SIGKILL, SIGTERM, restart; peak RSS sampled with psutil
    over every run."""

    def __init__(self, config_files: list[Path], workdir: Path, web_port: int) -> None:
        self.cmd = lead2cash_cmd("run", *(str(p) for p in config_files))
        self.workdir = workdir
        self.web_port = web_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.max_rss = 0
        self._sampler: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/health"

    def start(self, wait_healthy: bool = True, timeout: float = 60) -> None:
        if self.alive:
            raise HarnessError("the hub is already running")
        self.starts += 1
        log = self.workdir / f"hub-{self.starts:03d}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, env=dict(os.environ)
            )
        self._sampler = threading.Thread(target=self._sample, args=(self.proc,), daemon=True)
        self._sampler.start()
        if wait_healthy:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if not self.alive:
                raise HarnessError(f"the hub exited: {self.last_log()[-3000:]}")
            try:
                return httpx.get(self.health_url, timeout=2, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout, "the hub's /health", interval=0.1)

    def _sample(self, proc: subprocess.Popen[bytes]) -> None:
        import psutil

        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                self.max_rss = max(self.max_rss, p.memory_info().rss)
                time.sleep(0.1)
        except psutil.Error:
            pass

    def kill(self) -> bool:
        """SIGKILL, as the OOM killer or a pulled plug would. True when it was still running."""
        if not self.alive:
            return False
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1
        return True

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (graceful), SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def last_log(self) -> str:
        log = self.workdir / f"hub-{self.starts:03d}.log"
        return log.read_text(errors="replace") if log.exists() else ""


# ---------------------------------------------------------------------------------------------- systems
class Systems(SandboxClients):
    """The three sandboxes over HTTP: the APIs a person would use (retried through injected faults) and the
    sandboxes' admin API."""

    def __init__(self, sandboxes: SandboxesProcess) -> None:
        self.printed = sandboxes.printed
        self.urls = sandboxes.urls
        self.sf_api_version = str(self.printed["salesforce"]["api_version"])
        ca = ssl.create_default_context(cafile=str(sandboxes.ca_bundle))
        self.http = {
            name: httpx.Client(base_url=url, verify=ca, timeout=30, trust_env=False)
            for name, url in self.urls.items()
        }
        self._sf_token: str | None = None

    def _sf_credentials(self) -> tuple[str, str]:
        auth = self.printed["salesforce"]["auth"]
        return str(auth["client_id"]), str(auth["client_secret"])

    def _lago_api_key(self) -> str:
        return str(self.printed["lago"]["api_key"])

    def won_deals(self) -> dict[str, dict[str, Any]]:
        """Won opportunities with their account, stamp and line items (recurring or not, as the shipped
        mapping reads it: ``PricebookEntry.Product2.Billing_Type__c``)."""
        opps = self.soql(
            "SELECT Id, AccountId, SystemModstamp, Billing_Invoice_Number__c, SAP_Accounting_Document__c, "
            "(SELECT Id, PricebookEntry.Product2.Billing_Type__c FROM OpportunityLineItems) "
            "FROM Opportunity WHERE IsWon = true"
        )
        out = {}
        for o in opps:
            lines = (o.get("OpportunityLineItems") or {}).get("records") or []
            recurring: list[str] = []
            one_time: list[str] = []
            for line in lines:
                product = ((line.get("PricebookEntry") or {}).get("Product2")) or {}
                (recurring if product.get("Billing_Type__c") == "Recurring" else one_time).append(line["Id"])
            out[o["Id"]] = {**o, "recurring_lines": recurring, "one_time_lines": one_time}
        return out


# ---------------------------------------------------------------------------------------------- the checker
@dataclass
class Verdict:
    deals: int = 0
    invoices: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    sent_left: int = 0
    reserved_left: int = 0
    dead_letters: int = 0
    # Records the hub set aside with a permanent error (accounted for, with a reason: not lost); by reason.
    dead_lettered: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line per lost/duplicated/unexpected key

    @property
    def ok(self) -> bool:
        return not self.problems


def _tally(
    verdict: Verdict, what: str, expected: Iterable[str], counts: Counter[str] | dict[str, int]
) -> None:
    """Jepsen's queue checker, per key: lost = expected but never applied, duplicated = applied more than
    once, unexpected = applied but never asked for."""
    wanted = set(expected)
    for key in sorted(wanted):
        n = counts.get(key, 0)
        if n == 0:
            verdict.lost += 1
            verdict.problems.append(f"lost {what} {key}")
        elif n > 1:
            verdict.duplicated += 1
            verdict.problems.append(f"duplicated {what} {key} x{n}")
    for key in sorted(set(counts) - wanted):
        if counts[key]:
            verdict.unexpected += 1
            verdict.problems.append(f"unexpected {what} {key} x{counts[key]}")


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def salesforce_head(won: dict[str, dict[str, Any]]) -> tuple[dt.datetime, str] | None:
    stamps = [(_ts(str(o["SystemModstamp"])), o["Id"]) for o in won.values()]
    return max(stamps) if stamps else None


def checkpoint_at_head(store: Store, won: dict[str, dict[str, Any]]) -> list[str]:
    """Problems with the polled sources' checkpoints: the Salesforce cursor must have reached the newest won
    deal's (SystemModstamp, Id); the hub source the last confirmation number of the ledger route."""
    problems: list[str] = []
    checkpoints = store.checkpoints_all()
    sf = next((v for k, v in checkpoints.items() if k.startswith(f"{SALESFORCE_SOURCE}:")), None)
    head = salesforce_head(won)
    if head is not None:
        if not sf:
            problems.append("no Salesforce checkpoint")
        else:
            cursor = json.loads(sf)
            at = (_ts(cursor["ts"]), cursor["id"]) if cursor.get("ts") else None
            if at is None or at < head:
                problems.append(f"Salesforce checkpoint {at} is behind the newest won deal {head}")
    delivered = store.messages_for(LEDGER_ROUTE, "delivered")
    if delivered:
        last = max(m.confirmed_seq or 0 for m in delivered)
        hub_cp = next((v for k, v in checkpoints.items() if k.startswith(f"{HUB_SOURCE}:")), None)
        if hub_cp is None or int(hub_cp) != last:
            problems.append(f"hub source checkpoint {hub_cp} is not the last confirmation {last}")
    return problems


def check(systems: Systems, store: Store) -> Verdict:
    """Everything the three systems counted, against what the won deals and Lago's invoices ask for."""
    verdict = Verdict()
    won = systems.won_deals()
    verdict.deals = len(won)
    lago = systems.effects("lago")
    sap = systems.effects("sap")
    salesforce = systems.effects("salesforce")

    # Won deal -> billing.
    _tally(verdict, "Lago customer", {o["AccountId"] for o in won.values()}, lago.get("customer.create", {}))
    _tally(
        verdict,
        "Lago subscription",
        {f"{oid}:{line}" for oid, o in won.items() for line in o["recurring_lines"]},
        lago.get("subscription.create", {}),
    )
    invoices = systems.lago_invoices(detailed=True)
    one_off_orders = {oid for oid, o in won.items() if o["one_time_lines"]}
    one_off = Counter(
        order_of(i) or f"unknown:{i['lago_id']}" for i in invoices if i.get("invoice_type") == "one_off"
    )
    _tally(verdict, "Lago one-off invoice for deal", one_off_orders, one_off)
    metadata = {
        k.split("=", 1)[1]: n
        for k, n in lago.get("invoice.metadata", {}).items()
        if k.startswith("lead2cash_order=")
    }
    # The metadata is written when an order is reconciled by reads (a first delivery the ledger vouches
    # for leaves the invoice marked by its fees only): never twice, never for a deal without one.
    _tally(verdict, "Lago invoice metadata for deal", set(metadata) & one_off_orders, metadata)

    # Posted invoice -> ledger: one journal entry per finalized invoice, one partner per customer; an
    # invoice the hub dead-lettered as permanent (with its reason) is accounted for, not expected in SAP.
    finalized = [i for i in invoices if i["status"] == "finalized"]
    verdict.invoices = len(finalized)
    set_aside: set[str] = set()
    reasons: Counter[str] = Counter()
    for d in store.dlq_list(LEDGER_ROUTE, limit=1_000_000):
        if d.error_class == "permanent" and d.canonical_payload:
            set_aside.add(str(json.loads(d.canonical_payload).get("invoice_number")))
            reasons[d.error_message.split(" (entity=")[0].split(": '")[0]] += 1
    verdict.dead_lettered = dict(reasons)
    posted: Counter[str] = Counter()
    for key, n in sap.get("journal_entry.post", {}).items():
        posted[key.split(":", 1)[1]] += n
    to_post = [i for i in finalized if i["number"] not in set_aside]
    _tally(verdict, "SAP journal entry for invoice", {sap_reference(i["number"]) for i in to_post}, posted)
    partners = sap.get("business_partner.create", {})
    customers = {str(i["customer"]["external_id"]).upper() for i in to_post}
    _tally(verdict, "SAP business partner", customers, partners)

    # Status back to the deal: only won deals are written to, and each billed deal shows one of its own
    # finalized invoices with that invoice's SAP document.
    for oid, n in salesforce.get("Opportunity.update", {}).items():
        if oid not in won and n:
            verdict.unexpected += 1
            verdict.problems.append(f"unexpected Salesforce update of opportunity {oid} x{n}")
    docs = {d["DocumentReferenceID"]: str(d["AccountingDocument"]) for d in systems.sap_documents()}
    by_number = {i["number"]: i for i in finalized}
    billed = {order_of(i) for i in finalized}
    for oid, o in won.items():
        if oid not in billed:
            continue
        number = o.get("Billing_Invoice_Number__c")
        shown = by_number.get(number or "")
        document = str(o.get("SAP_Accounting_Document__c") or "")
        if number in set_aside and shown is not None and order_of(shown) == oid:
            continue  # its invoice never reached SAP (dead-lettered): no document to show
        posted_as = docs.get(sap_reference(number or ""), "?")
        if shown is None or order_of(shown) != oid or not document.startswith(posted_as):
            verdict.lost += 1
            verdict.problems.append(
                f"lost write-back on opportunity {oid}: shows invoice {number!r}, document {document!r}"
            )

    # The store: nothing left between "sent" and "confirmed", checkpoints at the head.
    verdict.sent_left = store.effects_in_state(EffectState.SENT)
    verdict.reserved_left = store.effects_in_state(EffectState.RESERVED)
    if verdict.sent_left or verdict.reserved_left:
        verdict.problems.append(
            f"effect ledger: {verdict.sent_left} sent and {verdict.reserved_left} reserved, never confirmed"
        )
    verdict.dead_letters = store.dlq_count()
    verdict.checkpoints = store.checkpoints_all()
    verdict.problems.extend(checkpoint_at_head(store, won))
    return verdict


# Writes whose body does not identify one caller: a Salesforce collection carries whatever records the
# writer coalesced, and the two write-back routes send identical values to one Opportunity when an invoice's
# status and its SAP document arrive together; such a pair is two calls, not a resend.
UNKEYED_WRITES = ("collections.",)


def retry_after_violations(log: list[dict[str, Any]], slack_s: float = 0.02) -> tuple[int, list[str]]:
    """From a sandbox's request log: every write answered with a Retry-After of N seconds must not come
    again (the same method, path and body: a resend) sooner than N seconds later. Returns (pairs checked,
    violations)."""
    by_sig: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        if entry["method"] not in ("GET", "HEAD") and not entry["op"].startswith(UNKEYED_WRITES):
            by_sig[entry["sig"]].append(entry)
    checked, bad = 0, []
    for entries in by_sig.values():
        entries.sort(key=lambda e: e["t"])
        for before, after in itertools.pairwise(entries):
            if before["retry_after"] > 0:
                checked += 1
                gap = after["t"] - before["t"]
                if gap + slack_s < before["retry_after"]:
                    bad.append(
                        f"{before['op']} {before['method']} {before['path']}: resent {gap:.3f}s after a "
                        f"{before['outcome']} with Retry-After {before['retry_after']}"
                    )
    return checked, bad


def peak_rate(times: list[float], window_s: float) -> int:
    """The most events in any window of ``window_s`` seconds (sliding, over the events' own times)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# ---------------------------------------------------------------------------------------------- the harness
@dataclass
class Figures:
    scenario: str
    backend: str
    records: int = 0
    invoices: int = 0
    kills: int = 0
    faults_injected: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    max_rss_mb: float = 0.0
    elapsed_s: float = 0.0


class ProcessLeadToCash:
    """Sandboxes, hub and store as separate processes, run on the shipped routes (or ``routes_file``)."""

    def __init__(
        self,
        workdir: Path,
        *,
        seed: int = 42,
        seed_size: int = 200,
        store_url: str | None = None,
        routes_file: Path | None = None,
        system_overrides: dict[str, dict[str, Any]] | None = None,
        log_level: str = "WARNING",
        safety_lag: str = "1s",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url or f"sqlite:///{self.workdir / 'state.db'}"
        self.sandboxes = SandboxesProcess.start(self.workdir, seed=seed, seed_size=seed_size)
        self.systems = Systems(self.sandboxes)
        self.web_port = free_port()
        config = hub_systems_config(
            self.sandboxes.printed,
            store_url=self.store_url,
            web_port=self.web_port,
            safety_lag=safety_lag,
            log_level=log_level,
            worker_id="lead-to-cash-processes",
            overrides=system_overrides,
        )
        self.systems_file = self.workdir / "systems.yaml"
        self.systems_file.write_text(json.dumps(config, indent=2))
        routes = routes_file or CONFIG_DIR / "lead-to-cash.yaml"
        self.config_files = [self.systems_file, CONFIG_DIR / "mappings.yaml", routes]
        self.hub = HubProcess(self.config_files, self.workdir, self.web_port)
        # Events published while the hub is down are retried by the billing engine, then polled.
        self.systems.register_webhook(f"http://127.0.0.1:{self.web_port}/webhooks/lago")
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The hub's state store, opened read-side by the harness (the hub process migrates it)."""
        if self._store is None:
            self._store = Store(self.store_url, migrate=False)
        return self._store

    def settled(self) -> bool:
        """Nothing pending, no webhook in flight, every won deal billed, every finalized invoice posted and
        written back, the polled sources' checkpoints at their heads."""
        if not self.hub.alive:
            return False
        store = self.store
        if any(store.count_messages(r, "pending") for r in ROUTES):
            return False
        if self.systems.webhooks_pending():
            return False
        won = self.systems.won_deals()
        billed = self.billed()
        dead = {json.loads(d.canonical_payload or "{}").get("id") for d in store.dlq_list(SALESFORCE_SOURCE)}
        if not set(won) <= billed | dead:
            return False
        finalized = {i["number"] for i in self.systems.lago_invoices() if i["status"] == "finalized"}
        posted = {json.loads(m.payload)["invoice_number"] for m in store.messages_for(LEDGER_ROUTE)}
        if not finalized <= posted:
            return False
        if store.count_messages(HUB_SOURCE, "delivered") < store.count_messages(LEDGER_ROUTE, "delivered"):
            return False
        return not checkpoint_at_head(store, won)

    def billed(self) -> set[str]:
        """Deals whose order route 1 has delivered to the billing engine."""
        return {json.loads(m.payload)["id"] for m in self.store.messages_for(SALESFORCE_SOURCE, "delivered")}

    def wait_settled(self, timeout: float, interval: float = 1.0) -> bool:
        deadline = time.monotonic() + timeout
        stable = 0
        while time.monotonic() < deadline:
            stable = stable + 1 if self.settled() else 0
            if stable >= 2:
                return True
            time.sleep(interval)
        return False

    def check(self) -> Verdict:
        return check(self.systems, self.store)

    def faults_injected(self) -> int:
        return sum(sum(v.values()) for v in self.systems.faults_injected().values())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.hub.stop(timeout=10)
        if self._store is not None:
            self._store.close()
        self.systems.close()
        self.sandboxes.stop()


@contextlib.contextmanager
def running(workdir: Path, **kw: Any) -> Iterator[ProcessLeadToCash]:
    env = ProcessLeadToCash(workdir, **kw)
    try:
        yield env
    finally:
        env.close()


def rate_limited_routes(
    workdir: Path,
    rates: dict[str, float],
    retry: dict[str, Any] | None = None,
    poll_interval: str | None = None,
    source: Path | None = None,
) -> Path:
    """A copy of the shipped routes file with ``rate_limit`` set per route and, with ``retry``, every route's
    retry policy replaced, with ``poll_interval`` every polled source's interval (scenario 2's only changes
    to the shipped routes)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load((source or CONFIG_DIR / "lead-to-cash.yaml").read_text())
    for route in data["routes"]:
        if route["name"] in rates:
            route["rate_limit"] = rates[route["name"]]
        if retry is not None:
            route["retry"] = dict(retry)
        trigger = route["source"].get("trigger") or {}
        if poll_interval is not None and trigger.get("type") == "poll":
            trigger["interval"] = poll_interval
    path = Path(workdir) / "lead-to-cash.rate-limited.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        yaml.dump(data, fh)
    return path


# ---------------------------------------------------------------------------------------------- scenarios
@dataclass
class CrashReport:
    verdict: Verdict
    figures: Figures
    in_doubt_at_kills: list[int] = field(default_factory=list)  # effects left "sent" by each kill
    delivered_at_kills: list[int] = field(default_factory=list)  # messages delivered, after each kill
    settled: bool = True  # False: the check ran on what there was after ``settle_timeout``


def _backend(store_url: str | None) -> str:
    return "postgresql" if store_url and store_url.startswith("postgresql") else "sqlite"


def run_crash_scenario(
    workdir: Path,
    *,
    store_url: str | None,
    deals: int,
    kills: int,
    seed: int = 7,
    delay_s: tuple[float, float] = (1.0, 4.0),
    advance_every: int = 3,
    settle_timeout: float = 300,
) -> CrashReport:
    """Scenario 1: SIGKILL the hub ``kills`` times at seeded random moments (``delay_s`` after each start,
    so some land during start-up) while ``deals`` deals are won (a wave per run of the hub, at a random
    moment of it), billed, invoiced (the billing clock moves 12 days every ``advance_every`` runs), posted
    and written back; restart it each time; then run it until settled, stop it, and check."""
    import random

    rng = random.Random(seed)
    started = time.monotonic()
    in_doubt: list[int] = []
    delivered: list[int] = []
    with running(workdir, seed=seed, seed_size=deals + 20, store_url=store_url) as env:
        per_wave = [deals // kills + (1 if i < deals % kills else 0) for i in range(kills)]
        for i, wave in enumerate(per_wave):
            env.hub.start(wait_healthy=False)
            life = rng.uniform(*delay_s)
            act_at = rng.uniform(0, life)
            time.sleep(act_at)
            if wave:
                env.systems.close_won(wave)
            if (i + 1) % advance_every == 0:
                env.systems.advance_billing(12)
            time.sleep(max(0.0, life - act_at))
            if not env.hub.kill():
                raise HarnessError(f"the hub exited on its own: {env.hub.last_log()[-3000:]}")
            with contextlib.suppress(Exception):  # the store may not exist before the first migration
                in_doubt.append(env.store.effects_in_state(EffectState.SENT))
                delivered.append(sum(env.store.count_messages(r, "delivered") for r in ROUTES))
        env.hub.start()
        env.systems.advance_billing(12)
        settled = env.wait_settled(settle_timeout)
        env.hub.stop()
        verdict = env.check()
        figures = Figures(
            "crash",
            _backend(store_url),
            records=verdict.deals,
            invoices=verdict.invoices,
            kills=env.hub.kills,
            lost=verdict.lost,
            duplicated=verdict.duplicated,
            unexpected=verdict.unexpected,
            max_rss_mb=round(env.hub.max_rss / 2**20, 1),
            elapsed_s=round(time.monotonic() - started, 1),
        )
    return CrashReport(verdict, figures, in_doubt, delivered, settled)


# Scenario 2's faults, on every operation of all three systems at once: 30% answered 429 or 503 with
# Retry-After (and each system's rate-limit headers), requests that hang past the client's timeout,
# connection resets, writes applied whose response is lost, and sessions expired under the caller.
# Lago has no sessions (a static API key): its "expired session" is a revoked key, which the hub rightly
# treats as an operator's problem (the route pauses for a minute, nothing is dropped), so the CI run
# leaves it to Salesforce (OAuth token) and SAP (session and CSRF token); ``--lago-revoked-keys`` in
# bench/chaos.py adds it.
FAULTY: dict[str, Any] = {
    "error_rate": 0.3,
    "error_statuses": [429, 503],
    "retry_after_s": 1,
    "timeout_rate": 0.02,
    "timeout_s": 4.0,
    "reset_rate": 0.03,
    "commit_then_drop_rate": 0.05,
    "expire_session_rate": 0.03,
}
# The hub's client timeouts, shorter than the injected hang (else a "timeout" is only a slow answer).
CLIENT_TIMEOUTS: dict[str, dict[str, Any]] = {
    "salesforce": {"timeout": 2.0},
    "lago": {"timeout": 2.0},
    "sap": {"timeout": 2.0, "soap": {"timeout": 2.0}},
}
# Scenario 2's retry policy for every route. The shipped one (8 attempts, backoff 0.5 s doubling to 30 s) is
# right for production but, with about one request in three failing, a message whose call makes four or
# five requests needs many attempts, and its backoff of up to 30 s holds the route for minutes. So the
# scenario retries sooner and more often; the backoff still stretches to every Retry-After.
FAULTY_RETRY: dict[str, Any] = {
    "attempts": 25,
    "initial_backoff": "200ms",
    "max_backoff": "2s",
    "jitter": "200ms",
}
# ... and polls every 2 s instead of 10 s: about two reads in five fail, and a failed read is only tried
# again at the next interval, so with the shipped 10 s the run spends most of its time waiting for a poll.
FAULTY_POLL_INTERVAL = "2s"
# Ceilings low enough to bind: without them the routes call their targets several times faster.
RATE_LIMITS = {
    "won-opportunity-to-billing": 3.0,
    "posted-invoice-to-ledger": 3.0,
    "billing-status-to-opportunity": 4.0,
    "ledger-document-to-opportunity": 4.0,
}


@dataclass
class RateFigure:
    calls: str
    ceiling: float
    peak_1s: int  # calls started in any one second
    peak_5s: int  # ... in any five seconds
    raw_peak_1s: int  # requests in any one second, resends within a call included (or the named effects)
    events: int

    @property
    def within(self) -> bool:
        """Never above the ceiling: in any second at most ``ceiling`` calls (+1 for the window's edge), and
        over any 5 seconds at most ``5 x ceiling`` (+1)."""
        return self.peak_1s <= int(self.ceiling) + 1 and self.peak_5s <= int(5 * self.ceiling) + 1


@dataclass
class FaultyReport:
    verdict: Verdict
    figures: Figures
    injected: dict[str, int] = field(default_factory=dict)  # per fault kind, all systems
    retry_after_checked: int = 0
    retry_after_violations: list[str] = field(default_factory=list)
    rates: dict[str, RateFigure] = field(default_factory=dict)
    dead_letters: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds: billed, settled
    settled: bool = True  # False: the check ran on what there was after ``settle_timeout``


def call_starts(requests: list[dict[str, Any]], window_s: float = RESEND_WINDOW_S) -> list[float]:
    """When calls began, from requests: a request repeating the previous one's method, path and body within
    ``window_s`` is a resend inside the same call (a connector's own quick retry), not a new call."""
    last: dict[str, float] = {}
    starts = []
    for r in sorted(requests, key=lambda e: e["t"]):
        previous = last.get(r["sig"])
        if previous is None or r["t"] - previous > window_s:
            starts.append(r["t"])
        last[r["sig"]] = r["t"]
    return starts


def rate_figures(systems: Systems, rates: dict[str, float]) -> dict[str, RateFigure]:
    """Peak call rates per route as the sandboxes timed them. Routes whose calls look alike on the target
    (both write-back routes update Opportunities) share the sum of their ceilings."""
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], float] = defaultdict(float)
    for route, rate in rates.items():
        groups[RATE_CALLS[route]] += rate
    out = {}
    for (system, ops, raw_effects), ceiling in groups.items():
        requests = [r for r in systems.requests_log(system) if r["op"] in ops]
        times = call_starts(requests)
        if raw_effects:
            raw = [t for t, kind, _ in systems.effects_log(system) if kind in raw_effects]
        else:
            raw = [r["t"] for r in requests]
        name = f"{system}:{'+'.join(ops)}"
        out[name] = RateFigure(
            name, ceiling, peak_rate(times, 1.0), peak_rate(times, 5.0), peak_rate(raw, 1.0), len(times)
        )
    return out


def run_faulty_scenario(
    workdir: Path,
    *,
    store_url: str | None,
    deals: int,
    seed: int = 11,
    faults: dict[str, Any] | None = None,
    rates: dict[str, float] | None = None,
    settle_timeout: float = 300,
    lago_revoked_keys: bool = False,
    retry: dict[str, Any] | None = None,
) -> FaultyReport:
    """Scenario 2: every fault at once on Salesforce, Lago and SAP while ``deals`` deals go through the whole
    flow (the billing clock moves 35 days once they are billed), each route with a ``rate_limit``. Checked
    from the sandboxes' side: effects per key, Retry-After on every resent write, peak rates per route."""
    rates = RATE_LIMITS if rates is None else rates
    rule = FAULTY if faults is None else faults
    started = time.monotonic()
    routes = rate_limited_routes(
        workdir, rates, FAULTY_RETRY if retry is None else retry, poll_interval=FAULTY_POLL_INTERVAL
    )
    with running(
        workdir,
        seed=seed,
        seed_size=deals + 20,
        store_url=store_url,
        routes_file=routes,
        system_overrides=CLIENT_TIMEOUTS,
    ) as env:
        env.hub.start()
        env.systems.set_faults(
            {
                "salesforce": {"*": rule},
                "lago": {"*": {**rule, "expire_session_rate": 0.0} if not lago_revoked_keys else rule},
                "sap": {"*": rule},
            }
        )
        won = set(env.systems.close_won(deals))
        phases = {}
        # The clock moves once every won deal is billed (its subscriptions exist), while its invoices are
        # still being posted and written back.
        deadline = time.monotonic() + settle_timeout
        while not won <= env.billed() and time.monotonic() < deadline:
            time.sleep(1.0)
        phases["billed"] = round(time.monotonic() - started, 1)
        env.systems.advance_billing(35)
        settled = env.wait_settled(max(0.0, deadline - time.monotonic()) + settle_timeout / 2)
        phases["settled"] = round(time.monotonic() - started, 1)
        env.systems.set_faults({})
        env.hub.stop()
        for system in ("salesforce", "lago", "sap"):  # kept beside the hub's logs, for a post-mortem
            (env.workdir / f"requests-{system}.json").write_text(json.dumps(env.systems.requests_log(system)))
            (env.workdir / f"effects-{system}.json").write_text(json.dumps(env.systems.effects_log(system)))
        injected: Counter[str] = Counter()
        for per_system in env.systems.faults_injected().values():
            for key, n in per_system.items():
                injected[key.rsplit(":", 1)[1]] += n
        checked, violations = 0, []
        for system in ("salesforce", "lago", "sap"):
            c, v = retry_after_violations(env.systems.requests_log(system))
            checked += c
            violations.extend(v)
        verdict = env.check()
        report = FaultyReport(
            verdict,
            Figures(
                "faulty systems",
                _backend(store_url),
                records=verdict.deals,
                invoices=verdict.invoices,
                faults_injected=sum(injected.values()),
                lost=verdict.lost,
                duplicated=verdict.duplicated,
                unexpected=verdict.unexpected,
                max_rss_mb=round(env.hub.max_rss / 2**20, 1),
            ),
            injected=dict(injected),
            retry_after_checked=checked,
            retry_after_violations=violations,
            rates=rate_figures(env.systems, rates),
            dead_letters=[f"{d.route}: {d.error_class}: {d.error_message}" for d in env.store.dlq_list()],
            phases=phases,
            settled=settled,
        )
    report.figures.elapsed_s = round(time.monotonic() - started, 1)
    return report
