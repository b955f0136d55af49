"""Load cleansed, validated customers and contracts into Lago exactly once, and roll a load back.

Every Lago write is an effect in the hub's effect ledger (``effects`` of the state store), keyed
``customer:<legacy id>`` / ``subscription:<legacy contract id>``, with the batch number as its message id:
``reserved`` before the batch, ``sent`` durably before the call, ``confirmed`` after Lago answered. A key
found ``sent`` (the process was killed, a response was lost) is looked up in Lago before anything is sent
again; a ``confirmed`` key is never sent again. So a SIGKILL at any point is recovered by running the same
command again. Rollback deletes, by the ledger, exactly what the load created.

Subscriptions start in the past (``subscription_at`` = the legacy start) on ``anniversary`` billing: Lago
bills no period that is already over, and the next invoice falls on the next anniversary, which is the
legacy next-bill date (gate ``contract_bill_anchor``).

A customer Lago already had before the load (created by the sync routes, or by hand) is neither overwritten
nor, on rollback, deleted: before its first batch a load lists Lago's customers once (its census, kept in
the ledger as ``existing:<run>:<id>`` so a resumed load does not mistake its own customers for them). Its
legacy contracts are still loaded as subscriptions, and those a rollback ends.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
from sqlalchemy import delete, func, select

from lead2cash.canonical_model import minor_units
from lead2cash.connectors.lago import LagoClient, LagoNotFound
from lead2cash.errors import DeliveryError, PermanentError
from lead2cash.pacing import RateLimiter, current_pacer
from lead2cash.store.schema import effects
from lead2cash.store.store import EffectState, Store

TARGET = "lago-migration"
# The ledger's message id of census keys: no batch of the load, and no cutover (cutover N's re-created
# subscriptions are batch -N).
CENSUS_BATCH = -1_000_000
FAR_FUTURE = "9999-12-31"


class LoadRefused(Exception):
    """The data may not be loaded (no passing validation of exactly these cleansed tables)."""


@dataclass
class LoadReport:
    customers: int = 0
    subscriptions: int = 0
    sent: int = 0
    already_done: int = 0
    found_by_lookup: int = 0
    # customers Lago had before the load: left as they were
    preexisting: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    lago_calls: int = 0
    seconds: float = 0.0

    def json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _route(run: str) -> str:
    return f"migrate:{run}"


def cents(amount: Decimal, currency: str) -> int:
    """The amount in the currency's ISO 4217 minor units, half a unit rounded up."""
    return int(amount.scaleb(minor_units(currency)).to_integral_value(rounding=ROUND_HALF_UP))


def plan(cleansed: Path, validation: Path) -> tuple[pl.DataFrame, dict[str, list[dict[str, Any]]]]:
    """The customers and their contracts to load: cleansed, not quarantined, after a passing validation."""
    report_path = validation / "validation.json"
    if not report_path.exists():
        raise LoadRefused(f"no validation report at {report_path}: run `lead2cash migrate validate` first")
    report = json.loads(report_path.read_text())
    if not report.get("cleansed") or Path(report["source"]).resolve() != cleansed.resolve():
        raise LoadRefused(f"{report_path} does not validate the cleansed tables at {cleansed}")
    if not report.get("passed"):
        failed = [g["name"] for g in report["gates"] if not g["passed"]]
        raise LoadRefused(f"quality gates failed: {', '.join(failed)}; nothing is loaded")
    newest = max(p.stat().st_mtime for p in cleansed.rglob("*.parquet"))
    if newest > report_path.stat().st_mtime:
        raise LoadRefused("the cleansed tables changed after validation: validate again")
    quarantine = pl.read_parquet(validation / "quarantine.parquet")
    bad_c = quarantine.filter(pl.col("table") == "customers")["record_id"].implode()
    bad_k = quarantine.filter(pl.col("table") == "contracts")["record_id"].implode()
    customers = (
        pl.scan_parquet(cleansed / "customers" / "*.parquet")
        .filter(~pl.col("customer_id").is_in(bad_c))
        .sort("customer_id")
        .collect()
    )
    contracts = (
        pl.scan_parquet(cleansed / "contracts" / "*.parquet")
        .filter(
            ~pl.col("contract_id").is_in(bad_k)
            & pl.col("customer_id").is_in(customers["customer_id"].implode())
        )
        .sort("contract_id")
        .collect()
    )
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for row in contracts.iter_rows(named=True):
        by_customer.setdefault(row["customer_id"], []).append(row)
    return customers, by_customer


def customer_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "external_id": row["customer_id"],
        "name": row["name"],
        "legal_name": row["name"],
        "email": row["email"],
        "phone": row["phone"],
        "tax_identification_number": row["tax_id"],
        "address_line1": row["address_line1"],
        "city": row["city"],
        "zipcode": row["zipcode"],
        "country": row["country"],
        "currency": row["currency"],
        "customer_type": "company",
        "metadata": [{"key": "legacy_id", "value": row["customer_id"], "display_in_invoice": False}],
    }


def subscription_body(row: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_customer_id": row["customer_id"],
        "external_id": row["contract_id"],
        "plan_code": f"{row['product']}__{row['currency']}",
        "billing_time": "anniversary",
        "subscription_at": f"{row['start_on']}T00:00:00Z",
        "plan_overrides": {
            "amount_cents": cents(row["price"], row["currency"]),
            "amount_currency": row["currency"],
        },
    }
    if row.get("end_on") is not None and str(row["end_on"]) != FAR_FUTURE:
        body["ending_at"] = f"{row['end_on']}T23:59:59Z"
    return body


class Loader:
    def __init__(
        self, client: LagoClient, store: Store, run: str, *, rate: float = 50.0, attempts: int = 8
    ) -> None:
        self.client, self.store, self.run_name, self.route = client, store, run, _route(run)
        self.existing: set[str] = set()
        self.limiter = RateLimiter(rate)
        self.attempts = attempts
        self.report = LoadReport()

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        await self.limiter.acquire()
        return await fn()

    async def _lookup(self, path: str, operation: str) -> bool:
        try:
            await self._call(lambda: self.client.request("GET", path, operation))
        except LagoNotFound:
            return False
        return True

    async def effect(
        self,
        key: str,
        prior: EffectState | None,
        send: Callable[[], Awaitable[Any]],
        lookup_path: str,
        operation: str,
        found: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """``found`` replaces the GET of ``lookup_path`` when an in-doubt key needs another lookup."""
        if prior == EffectState.CONFIRMED:
            self.report.already_done += 1
            return
        check_first = prior == EffectState.SENT
        for attempt in range(1, self.attempts + 1):
            try:
                if check_first and await (found() if found else self._lookup(lookup_path, operation)):
                    self.report.found_by_lookup += 1
                    break
                self.store.effects_mark(TARGET, [key], EffectState.SENT)
                await self._call(send)
                self.report.sent += 1
                break
            except PermanentError as exc:
                self.report.failures.append({"key": key, "error": exc.describe()})
                return
            except DeliveryError as exc:
                if attempt == self.attempts:
                    self.report.failures.append({"key": key, "error": exc.describe()})
                    return
                check_first = True  # the failed call may have been applied
                await asyncio.sleep(
                    max(exc.retry_after or 0.0, min(2.0, 0.1 * 2**attempt)) + random.uniform(0, 0.1)
                )
        self.store.effects_mark(TARGET, [key], EffectState.CONFIRMED)

    async def census(self) -> set[str]:
        """External ids of the customers Lago had before this load's first batch (read once per run)."""
        done = f"census:{self.run_name}"
        prefix = f"existing:{self.run_name}:"
        prior = self.store.effects_reserve(TARGET, self.route, [(done, CENSUS_BATCH)])
        if _state(prior, done) != EffectState.CONFIRMED:
            ids = await self._listing()
            for offset in range(0, len(ids), 1000):
                keys = [prefix + i for i in ids[offset : offset + 1000]]
                self.store.effects_reserve(TARGET, self.route, [(k, CENSUS_BATCH) for k in keys])
                self.store.effects_mark(TARGET, keys, EffectState.CONFIRMED)
            self.store.effects_mark(TARGET, [done], EffectState.CONFIRMED)
            return set(ids)
        with self.store.engine.connect() as conn:
            return {
                r[0][len(prefix) :]
                for r in conn.execute(
                    select(effects.c.idempotency_key).where(
                        effects.c.target == TARGET,
                        effects.c.route == self.route,
                        effects.c.idempotency_key.startswith(prefix, autoescape=True),
                    )
                )
            }

    async def _listing(self) -> list[str]:
        for attempt in range(1, self.attempts + 1):
            try:
                pages = self.client.pages("/customers", "customers.list", "customers")
                return [c["external_id"] async for c in pages]
            except PermanentError:
                raise
            except DeliveryError as exc:
                if attempt == self.attempts:
                    raise
                await asyncio.sleep(max(exc.retry_after or 0.0, min(2.0, 0.1 * 2**attempt)))
        raise AssertionError("unreachable")

    async def customer(
        self, row: dict[str, Any], contracts: list[dict[str, Any]], prior: dict[str, Any]
    ) -> None:
        cid = row["customer_id"]
        key = f"customer:{cid}"
        if cid in self.existing:
            self.report.preexisting.append(cid)
        else:
            await self.effect(
                key,
                _state(prior, key),
                lambda: self.client.upsert_customer(customer_body(row)),
                f"/customers/{quote(cid, safe='')}",
                "customers.get",
            )
        for k in contracts:
            skey = f"subscription:{k['contract_id']}"
            await self.effect(
                skey,
                _state(prior, skey),
                lambda k=k: self.client.create_subscription(subscription_body(k)),
                f"/subscriptions/{quote(k['contract_id'], safe='')}",
                "subscriptions.get",
            )

    async def run(
        self,
        customers: pl.DataFrame,
        contracts: dict[str, list[dict[str, Any]]],
        *,
        batch_size: int = 100,
        concurrency: int = 8,
        progress: bool = False,
    ) -> LoadReport:
        started = time.perf_counter()
        calls0 = self.client.calls
        token = current_pacer.set(self.limiter)  # the connector's own repeats take slots too
        rows = customers.to_dicts()
        bar = _progress(len(rows), progress)
        try:
            self.existing = await self.census()
            for b, offset in enumerate(range(0, len(rows), batch_size)):
                batch = rows[offset : offset + batch_size]
                keys = [
                    (f"customer:{r['customer_id']}", b)
                    for r in batch
                    if r["customer_id"] not in self.existing
                ]
                keys += [
                    (f"subscription:{k['contract_id']}", b)
                    for r in batch
                    for k in contracts.get(r["customer_id"], [])
                ]
                prior = self.store.effects_reserve(TARGET, self.route, keys)
                sem = asyncio.Semaphore(concurrency)

                async def one(
                    r: dict[str, Any], sem: asyncio.Semaphore = sem, prior: dict[str, Any] = prior
                ) -> None:
                    async with sem:
                        await self.customer(r, contracts.get(r["customer_id"], []), prior)
                    bar(1)

                await asyncio.gather(*(one(r) for r in batch))
                self.report.customers += len(batch)
                self.report.subscriptions += sum(len(contracts.get(r["customer_id"], [])) for r in batch)
        finally:
            current_pacer.reset(token)
            bar(0, done=True)
        self.report.lago_calls = self.client.calls - calls0
        self.report.seconds = time.perf_counter() - started
        return self.report


def _state(prior: dict[str, Any], key: str) -> EffectState | None:
    effect = prior.get(key)
    return None if effect is None else effect.state


def _progress(total: int, enabled: bool) -> Callable[..., None]:
    if not enabled:
        return lambda *_, **__: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    bar.start()
    task = bar.add_task("customers", total=total)

    def advance(n: int, done: bool = False) -> None:
        bar.advance(task, n)
        if done:
            bar.stop()

    return advance


def status(store: Store, run: str) -> list[dict[str, Any]]:
    """Per batch: keys in each ledger state."""
    q = (
        select(effects.c.message_id, effects.c.state, func.count())
        .where(
            effects.c.target == TARGET, effects.c.route == _route(run), effects.c.message_id != CENSUS_BATCH
        )
        .group_by(effects.c.message_id, effects.c.state)
    )
    batches: dict[int, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for batch, state, n in conn.execute(q):
            entry = batches.setdefault(
                int(batch), {"batch": int(batch), "reserved": 0, "sent": 0, "confirmed": 0}
            )
            entry[state] = int(n)
    return [batches[b] for b in sorted(batches)]


async def rollback(client: LagoClient, store: Store, run: str, *, rate: float = 50.0) -> dict[str, int]:
    """Delete, by the ledger, every subscription then every customer the load sent (confirmed or in doubt),
    without termination invoices; each ledger row goes once its deletion is done, so a rollback that was
    interrupted goes on where it stopped."""
    limiter = RateLimiter(rate)
    token = current_pacer.set(limiter)
    counts = {"subscriptions": 0, "customers": 0, "absent": 0}
    with store.engine.connect() as conn:
        keys = [
            r[0]
            for r in conn.execute(
                select(effects.c.idempotency_key).where(
                    effects.c.target == TARGET,
                    effects.c.route == _route(run),
                    effects.c.state != EffectState.RESERVED.value,
                )
            )
        ]
    try:
        for kind in ("subscription", "customer"):
            for key in sorted(k for k in keys if k.startswith(kind + ":")):
                ext = quote(key.split(":", 1)[1], safe="")
                found = False
                if kind == "subscription":
                    for st in ("active", "pending"):
                        try:
                            await limiter.acquire()
                            await client.request(
                                "DELETE",
                                f"/subscriptions/{ext}",
                                "subscriptions.terminate",
                                params={"status": st, "on_termination_invoice": "skip"},
                            )
                            found = True
                            break
                        except LagoNotFound:
                            continue
                else:
                    try:
                        await limiter.acquire()
                        await client.request("DELETE", f"/customers/{ext}", "customers.delete")
                        found = True
                    except LagoNotFound:
                        pass
                counts[kind + "s" if found else "absent"] += 1
                with store.engine.begin() as conn:
                    conn.execute(
                        delete(effects).where(effects.c.target == TARGET, effects.c.idempotency_key == key)
                    )
        with store.engine.begin() as conn:  # keys reserved but never sent: nothing in Lago
            conn.execute(delete(effects).where(effects.c.target == TARGET, effects.c.route == _route(run)))
    finally:
        current_pacer.reset(token)
    return counts


def print_err(text: str) -> None:
    print(text, file=sys.stderr)
