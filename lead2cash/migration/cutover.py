"""``lead2cash cutover check|execute|rollback``: switch the migrated customers from the legacy billing system
to Lago once the readiness gates pass, with a way back.

Gates (``check``; ``execute`` runs them first):

- ``migration_gates``: the migration's last validation of the cleansed tables passed;
- ``parallel_runs``: the last N billing reconciliations (``<workdir>/reconcile/history.jsonl``) all passed;
- ``dead_letters``: the hub's state store (``--hub-store``) has no open dead letter;
- ``three_way``: ``<workdir>/reconcile/three-way.json``, when a three-way reconciliation wrote it, says clean
  (``{"clean": true}``); without the file the gate passes unless ``cutover.require_three_way`` is set;
- ``next_bill_dates``: every migrated subscription active in Lago next bills on the legacy next-bill date.

``execute --at DATE`` records, in the legacy system's MIGRFLAG table, that the migrated accounts are billed
by Lago from DATE (the legacy run bills none of their dates from DATE on), with who, when and why; the state
is ``<workdir>/cutover/state.json`` and every action a line of ``<workdir>/cutover/log.jsonl``.
``rollback --at DATE`` (within ``cutover.rollback_window_days`` of the cutover) terminates the migrated
subscriptions in Lago with ``on_termination_invoice=skip`` (no invoice for the unbilled part of the period),
hands each contract's last period end Lago billed to the legacy system (``BILL_THRU_DT`` on the contract)
and gives the accounts back to it from the cutover's day: the legacy run bills every period Lago did not
bill, once, at its bill date, and none that Lago billed. ``execute`` after a rollback re-creates each
migrated subscription as ``<contract>~N`` (N the cutover number) through the migration's effect ledger
first (``recreate``), leaves the last period of a contract that ended by then to the legacy system
(``KEEP_THRU_DT``: Lago refuses an ``ending_at`` that is not after today), and the legacy run stops from the
day after DATE.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from lead2cash.migration.ids import contract_of, subscription_id

cutover_app = typer.Typer(
    help="Cutover from the legacy billing system to Lago: readiness gates, execute, roll back.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

WORKDIR = Path(".state/migration")
CONFIG = Path("config/migration/reconcile.yaml")
Workdir = Annotated[Path, typer.Option("--workdir", help="The migration's working directory.")]
ConfigOpt = Annotated[Path, typer.Option("--config", help="Thresholds and cutover settings.")]
LagoUrl = Annotated[
    str | None, typer.Option("--lago-url", help="Lago API base, e.g. https://host/api/v1 (env LAGO_API_URL).")
]
LagoKey = Annotated[
    str | None, typer.Option("--lago-api-key", help="Lago API key (env LAGO_API_KEY; never printed).")
]
CaBundle = Annotated[str | None, typer.Option("--ca-bundle", help="CA bundle for Lago's TLS certificate.")]
HubStore = Annotated[
    str | None, typer.Option("--hub-store", help="The hub's state store URL, for open dead letters.")
]
At = Annotated[str | None, typer.Option("--at", help="Business date YYYY-MM-DD (default: today, UTC).")]
Legacy = Annotated[
    Path | None, typer.Option("--legacy", help="Legacy extract directory (default <workdir>/legacy).")
]


@dataclass
class Gate:
    name: str
    passed: bool
    detail: str


def _date(at: str | None) -> dt.date:
    return dt.date.fromisoformat(at) if at else dt.datetime.now(dt.UTC).date()


def migration_gate(workdir: Path) -> Gate:
    path = workdir / "validation" / "validation.json"
    if not path.exists():
        return Gate("migration_gates", False, f"no validation report at {path}")
    report = json.loads(path.read_text())
    failed = [g["name"] for g in report.get("gates", []) if not g.get("passed")]
    ok = bool(report.get("passed")) and bool(report.get("cleansed"))
    return Gate(
        "migration_gates",
        ok,
        "all gates passed" if ok else f"failing: {', '.join(failed) or 'dirty extract'}",
    )


def parallel_runs_gate(workdir: Path, runs: int) -> Gate:
    from lead2cash.reconcile.report import read_history

    history = read_history(workdir)[-runs:]
    if len(history) < runs:
        return Gate("parallel_runs", False, f"{len(history)} billing reconciliations, {runs} needed")
    bad = [f"{r['cycle']} {r['accuracy']} < {r['threshold']}" for r in history if not r["passed"]]
    detail = ", ".join(f"{r['cycle']} {float(r['accuracy']):.2%}" for r in history)
    return Gate(
        "parallel_runs", not bad, f"last {runs}: {detail}" + (f"; under threshold: {bad}" if bad else "")
    )


def dead_letters_gate(hub_store: str | None) -> Gate:
    url = hub_store or os.environ.get("LEAD2CASH_STORE")
    if not url:
        return Gate("dead_letters", False, "no hub store named (--hub-store or LEAD2CASH_STORE)")
    from lead2cash.store.store import Store

    store = Store(url)
    try:
        n = store.dlq_count(status="open")
    finally:
        store.close()
    return Gate("dead_letters", n == 0, f"{n} open dead letters")


def three_way_gate(workdir: Path, required: bool) -> Gate:
    path = workdir / "reconcile" / "three-way.json"
    if not path.exists():
        return Gate("three_way", not required, f"no three-way reconciliation at {path}")
    data = json.loads(path.read_text())
    clean = bool(data.get("clean", data.get("passed", False)))
    return Gate("three_way", clean, f"{path}: {'clean' if clean else 'differences remain'}")


def legacy_next_bill(legacy: Path, at: dt.date) -> Any:
    """Per open legacy contract, its next bill date after ``at`` (the anniversary chain from NEXT_BILL_DT)."""
    import polars as pl

    from lead2cash.sandbox.legacy.billing import contracts, read_tables

    k = contracts(read_tables(legacy))
    k = k.filter(pl.col("end_on").is_null() | (pl.col("end_on") > pl.lit(at)))
    # The first anniversary strictly after ``at``: Lago has billed ``at`` itself when its run is at ``at``.
    k = k.with_columns(_anniversary_after(pl.lit(at)).alias("nb"))
    return k.select("contract_id", "customer_id", pl.col("nb").alias("legacy_next_bill"))


def _anniversary_after(day: Any) -> Any:
    """The first bill date of the anniversary chain from NEXT_BILL_DT strictly after ``day`` (an expression)."""
    import polars as pl

    months = (day.dt.year() * 12 + day.dt.month()) - (
        pl.col("next_bill").dt.year() * 12 + pl.col("next_bill").dt.month()
    )
    steps = pl.max_horizontal(months // pl.col("months") - 1, 0)
    nb = pl.col("next_bill").dt.offset_by(pl.format("{}mo", steps * pl.col("months")))
    for _ in range(3):
        nb = pl.when(nb <= day).then(nb.dt.offset_by(pl.format("{}mo", pl.col("months")))).otherwise(nb)
    return nb


async def lago_subscriptions(client: Any) -> list[dict[str, Any]]:
    return [s async for s in client.pages("/subscriptions", "subscriptions.list", "subscriptions")]


def next_bill_gate(subs: list[dict[str, Any]], legacy: Any, scope: Any) -> Gate:
    import polars as pl

    lago = pl.DataFrame(
        [
            {
                "contract_id": contract_of(s["external_id"]),
                "lago_next_bill": (
                    dt.datetime.fromisoformat(s["current_billing_period_ending_at"].replace("Z", "+00:00"))
                    + dt.timedelta(seconds=1)
                ).date(),
            }
            for s in subs
            if s.get("current_billing_period_ending_at")
        ],
        schema={"contract_id": pl.String, "lago_next_bill": pl.Date},
    )
    mine = legacy.filter(pl.col("contract_id").is_in(scope.implode())) if scope is not None else legacy
    joined = mine.join(lago, on="contract_id", how="inner")
    bad = joined.filter(pl.col("legacy_next_bill") != pl.col("lago_next_bill"))
    sample = ", ".join(f"{c} legacy {a} Lago {b}" for c, _, a, b in bad.head(3).iter_rows())
    return Gate(
        "next_bill_dates",
        bad.height == 0 and joined.height > 0,
        f"{joined.height:,} subscriptions compared, {bad.height:,} differ"
        + (f" ({sample})" if sample else ""),
    )


def _client(url: str | None, key: str | None, ca: str | None) -> Any:
    from lead2cash.reconcile.cli import lago_client

    return lago_client(url, key, ca)


def run_gates(
    workdir: Path,
    config: Path,
    legacy: Path,
    hub_store: str | None,
    client: Any,
    at: dt.date,
    recreate: bool = False,
) -> list[Gate]:
    import asyncio

    from lead2cash.reconcile.billing import load_config
    from lead2cash.reconcile.cli import migrated_contracts

    cfg = load_config(config)
    required = bool((cfg.extra.get("cutover") or {}).get("require_three_way", False))
    gates = [
        migration_gate(workdir),
        parallel_runs_gate(workdir, cfg.cutover_runs),
        dead_letters_gate(hub_store),
        three_way_gate(workdir, required),
    ]
    if recreate:  # after a rollback no subscription is active: the re-created ones are checked once made
        asyncio.run(client.aclose())
        gates.append(Gate("next_bill_dates", True, "checked on the re-created subscriptions"))
        return gates
    subs = asyncio.run(_with(client, lago_subscriptions))
    gates.append(next_bill_gate(subs, legacy_next_bill(legacy, at), migrated_contracts(workdir)))
    return gates


async def _with(client: Any, fn: Any) -> Any:
    try:
        return await fn(client)
    finally:
        await client.aclose()


def _show(gates: list[Gate]) -> bool:
    table = Table(title="cutover readiness")
    table.add_column("gate")
    table.add_column("result")
    table.add_column("detail")
    for g in gates:
        table.add_row(g.name, "[green]pass[/]" if g.passed else "[red]FAIL[/]", g.detail)
    console.print(table)
    return all(g.passed for g in gates)


def _log(workdir: Path, entry: dict[str, Any]) -> None:
    path = workdir / "cutover" / "log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _state(workdir: Path) -> dict[str, Any]:
    path = workdir / "cutover" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "none"}


def _migrated(workdir: Path, legacy: Path) -> tuple[list[str], list[str]]:
    """(legacy accounts, contracts) of the migration: the accounts as the legacy system numbers them."""
    import polars as pl

    from lead2cash.reconcile.cli import migrated_contracts
    from lead2cash.sandbox.legacy.billing import read_tables

    scope = migrated_contracts(workdir)
    if scope is None:
        err.print("no passing migration validation: nothing to cut over", markup=False)
        raise typer.Exit(2)
    k = read_tables(legacy)["CONTRACT"].select(
        pl.col("CONTR_NO").str.strip_chars().alias("contract_id"), pl.col("CUST_NO").str.strip_chars()
    )
    mine = k.filter(pl.col("contract_id").is_in(scope.implode()))
    return sorted(set(mine["CUST_NO"])), sorted(mine["contract_id"])


@cutover_app.command()
def check(
    workdir: Workdir = WORKDIR,
    config: ConfigOpt = CONFIG,
    legacy: Legacy = None,
    hub_store: HubStore = None,
    lago_url: LagoUrl = None,
    lago_api_key: LagoKey = None,
    ca_bundle: CaBundle = None,
    at: At = None,
) -> None:
    """Run the readiness gates; exit 1 when one fails."""
    gates = run_gates(
        workdir,
        config,
        legacy or workdir / "legacy",
        hub_store,
        _client(lago_url, lago_api_key, ca_bundle),
        _date(at),
        recreate=_state(workdir).get("status") == "rolled_back",
    )
    if not _show(gates):
        err.print("cutover is not ready", markup=False)
        raise typer.Exit(1)
    console.print("ready for cutover", markup=False)


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The migration's effect ledger (default: SQLite <workdir>/ledger.db, as `migrate load`).",
    ),
]
RunOpt = Annotated[
    str, typer.Option("--run", help="The migration run (the ledger's route, as `migrate load`).")
]


@dataclass
class Recreated:
    created: int = 0
    already_done: int = 0
    found_by_lookup: int = 0
    ended: int = 0  # ended by the cutover's day: not re-created (Lago refuses an ending_at in the past)
    left_to_legacy: int = 0  # of those, the ones whose last period Lago did not bill: the legacy run bills it
    absent: int = 0  # no rolled-back subscription in Lago to re-create
    subscriptions: list[str] | None = None
    failures: list[dict[str, str]] | None = None


async def _exists(loader: Any, ext: str) -> bool:
    """Whether Lago has the subscription in any status: a re-created one may have ended by itself since."""
    from lead2cash.connectors.lago import LagoNotFound

    for status in ("active", "pending", "terminated"):
        try:
            await loader._call(
                lambda status=status: loader.client.request(
                    "GET",
                    f"/subscriptions/{quote(ext, safe='')}",
                    "subscriptions.get",
                    params={"status": status},
                )
            )
            return True
        except LagoNotFound:
            continue
    return False


def recreation_plan(
    previous: dict[str, dict[str, Any]],
    contracts: list[str],
    prior_ids: dict[str, str],
    number: int,
    day: dt.date,
    billed_thru: dict[str, dt.date],
    since: dt.date | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, dt.date]]:
    """The subscriptions to create at cutover ``number`` on ``day``, each a copy of its rolled-back one (so a
    price corrected in Lago stays corrected) under ``<contract>~N``, and the contracts whose last period is
    left to the legacy system (contract -> the end of that period, for ``KEEP_THRU_DT``).

    A contract that ended on or before ``day`` is not re-created: real Lago refuses an ``ending_at`` that is
    not after today (``Subscriptions::CreateService#valid_ending_at?``, 422 ``ending_at: invalid_date``).
    Its last period, the days up to its end, is the legacy system's unless Lago billed it already
    (``billed_thru``, handed over by the rollback, reaches the end of the period); it is recorded when it
    fell due after ``since`` (the previous cutover's day: earlier ones the legacy run billed before any
    cutover)."""
    bodies: list[dict[str, Any]] = []
    skipped = {"ended": 0, "absent": 0}
    left: dict[str, dt.date] = {}
    for contract in contracts:
        old = previous.get(prior_ids.get(contract, contract))
        if old is None:
            skipped["absent"] += 1
            continue
        ending = old.get("ending_at")
        end = dt.datetime.fromisoformat(ending.replace("Z", "+00:00")).date() if ending else None
        if end is not None and end <= day:
            skipped["ended"] += 1
            period_end = end + dt.timedelta(days=1)
            thru = billed_thru.get(contract)
            if (thru is None or thru < period_end) and (since is None or period_end > since):
                left[contract] = period_end
            continue
        body: dict[str, Any] = {
            "external_customer_id": old["external_customer_id"],
            "external_id": subscription_id(contract, number),
            "plan_code": old["plan_code"],
            "billing_time": old.get("billing_time") or "anniversary",
            "subscription_at": old["subscription_at"],
            "plan_overrides": {
                "amount_cents": int(old["plan_amount_cents"]),
                "amount_currency": old["plan_amount_currency"],
            },
        }
        if ending:
            body["ending_at"] = ending
        bodies.append(body)
    return bodies, skipped, left


async def recreate(
    client: Any,
    store: Any,
    run: str,
    bodies: list[dict[str, Any]],
    number: int,
    *,
    rate: float = 50.0,
    concurrency: int = 8,
    progress: Any = None,
) -> Recreated:
    """Creates ``bodies`` in Lago exactly once: each is an effect of the migration's ledger, key
    ``subscription:<contract>~N`` (one per contract and cutover), under the load's route so that
    ``migrate rollback`` removes them too. A key left ``sent`` by a crash is looked up in Lago (in any
    status) before anything is sent again; a confirmed key is never sent again."""
    import asyncio

    from lead2cash.migration.load import TARGET, Loader, _route, _state
    from lead2cash.pacing import current_pacer

    loader = Loader(client, store, run, rate=rate)
    out = Recreated(subscriptions=[b["external_id"] for b in bodies])
    keys = [(f"subscription:{b['external_id']}", -number) for b in bodies]  # batch -N: cutover N
    prior = store.effects_reserve(TARGET, _route(run), keys)
    gate = asyncio.Semaphore(concurrency)
    token = current_pacer.set(loader.limiter)

    async def one(body: dict[str, Any]) -> None:
        ext = body["external_id"]
        async with gate:
            await loader.effect(
                f"subscription:{ext}",
                _state(prior, f"subscription:{ext}"),
                lambda: client.create_subscription(body),
                f"/subscriptions/{quote(ext, safe='')}",
                "subscriptions.get",
                found=lambda: _exists(loader, ext),
            )
        if progress:
            progress(1)

    try:
        await asyncio.gather(*(one(b) for b in bodies))
    finally:
        current_pacer.reset(token)
    r = loader.report
    out.created, out.already_done, out.found_by_lookup = r.sent, r.already_done, r.found_by_lookup
    out.failures = r.failures
    return out


async def terminated_subscriptions(client: Any) -> dict[str, dict[str, Any]]:
    subs = client.pages("/subscriptions", "subscriptions.list", "subscriptions", {"status[]": "terminated"})
    return {s["external_id"]: s async for s in subs}


def _ledger(workdir: Path, store: str | None) -> Any:
    from lead2cash.store.store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    return Store(store or f"sqlite:///{(workdir / 'ledger.db').resolve()}")


@cutover_app.command()
def execute(
    by: Annotated[str, typer.Option("--by", help="Who decides the cutover (recorded).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    workdir: Workdir = WORKDIR,
    config: ConfigOpt = CONFIG,
    legacy: Legacy = None,
    hub_store: HubStore = None,
    lago_url: LagoUrl = None,
    lago_api_key: LagoKey = None,
    ca_bundle: CaBundle = None,
    at: At = None,
    store: StoreOpt = None,
    run: RunOpt = "legacy",
    rate: Annotated[
        float, typer.Option(help="Lago requests per second for re-created subscriptions.")
    ] = 50.0,
) -> None:
    """The gates, then the legacy system stops billing the migrated accounts from --at on. After a rollback,
    each migrated subscription is first re-created in Lago as <contract>~N (N: the cutover number)."""
    import asyncio

    from lead2cash.sandbox.legacy.billing import flag_customers, set_contract_dates

    legacy_dir = legacy or workdir / "legacy"
    day = _date(at)
    previous = _state(workdir)
    if previous.get("status") == "executed":
        err.print("cutover already executed (cutover rollback first)", markup=False)
        raise typer.Exit(2)
    again = previous.get("status") == "rolled_back"
    gates = run_gates(
        workdir,
        config,
        legacy_dir,
        hub_store,
        _client(lago_url, lago_api_key, ca_bundle),
        day,
        recreate=again,
    )
    if not _show(gates):
        err.print("cutover refused: a readiness gate fails", markup=False)
        raise typer.Exit(1)
    accounts, contracts = _migrated(workdir, legacy_dir)
    number = int(previous.get("number", 1)) + 1 if again else 1
    subscriptions = contracts
    effective = day
    detail: dict[str, Any] = {}
    if again:
        made, left = _recreate(
            _client(lago_url, lago_api_key, ca_bundle),
            workdir,
            legacy_dir,
            previous,
            contracts,
            number,
            day,
            store,
            run,
            rate,
        )
        gate = asyncio.run(_with(_client(lago_url, lago_api_key, ca_bundle), lago_subscriptions))
        mine = [s for s in gate if s["external_id"] in set(made.subscriptions or [])]
        check = next_bill_gate(mine, legacy_next_bill(legacy_dir, day), None)
        _show([check])
        if made.failures or (mine and not check.passed):
            # Not billed by Lago without the legacy run stopping: end what was made, keep the legacy billing.
            asyncio.run(terminate(_client(lago_url, lago_api_key, ca_bundle), made.subscriptions or []))
            failed = {**previous, "number": number}  # the next attempt takes the next number
            (workdir / "cutover" / "state.json").write_text(json.dumps(failed, indent=1))
            for f in (made.failures or [])[:10]:
                err.print(f"failed: {f['key']}: {f['error']}", markup=False)
            err.print("cutover refused: the re-created subscriptions were ended again", markup=False)
            raise typer.Exit(1)
        subscriptions = made.subscriptions or []
        # The contracts that ended by now and whose last period nobody billed: the legacy run bills it.
        set_contract_dates(legacy_dir, "KEEP_THRU_DT", left)
        # Lago's re-created subscriptions skip the period that ends on ``day``: the legacy run bills it.
        effective = day + dt.timedelta(days=1)
        detail = {k: v for k, v in made.__dict__.items() if k not in ("subscriptions", "failures")}
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    flag_customers(legacy_dir, accounts, "M", effective, by, reason, now)
    state = {
        "status": "executed",
        "number": number,
        "effective": effective.isoformat(),
        "by": by,
        "reason": reason,
        "at": now,
        "accounts": len(accounts),
        "contracts": contracts,
        "subscriptions": subscriptions,
    }
    (workdir / "cutover" / "state.json").parent.mkdir(parents=True, exist_ok=True)
    (workdir / "cutover" / "state.json").write_text(json.dumps(state, indent=1))
    _log(
        workdir,
        {k: v for k, v in state.items() if k not in ("contracts", "subscriptions")}
        | {"action": "execute"}
        | detail,
    )
    again_text = (
        f"; {detail['created'] + detail['already_done'] + detail['found_by_lookup']:,} subscriptions re-created "
        f"as <contract>~{number} ({detail['ended']:,} ended contracts not re-created; "
        f"{detail['left_to_legacy']:,} last periods left to the legacy system)"
        if again
        else ""
    )
    console.print(
        f"cutover {number} executed: {len(accounts):,} legacy accounts ({len(contracts):,} contracts) billed by "
        f"Lago from {effective}{again_text}; recorded by {by}",
        markup=False,
    )


def _recreate(
    client: Any,
    workdir: Path,
    legacy_dir: Path,
    previous: dict[str, Any],
    contracts: list[str],
    number: int,
    day: dt.date,
    store: str | None,
    run: str,
    rate: float,
) -> tuple[Recreated, dict[str, dt.date]]:
    import asyncio

    prior_ids = {contract_of(x): x for x in previous.get("subscriptions") or previous.get("contracts", [])}
    ledger = _ledger(workdir, store)

    async def go() -> tuple[Recreated, dict[str, dt.date]]:
        try:
            old = await terminated_subscriptions(client)
            bodies, skipped, left = recreation_plan(
                old,
                contracts,
                prior_ids,
                number,
                day,
                legacy_billed_thru(legacy_dir),
                dt.date.fromisoformat(previous["effective"]) if previous.get("effective") else None,
            )
            made = await recreate(client, ledger, run, bodies, number, rate=rate)
            made.ended, made.absent, made.left_to_legacy = skipped["ended"], skipped["absent"], len(left)
            return made, left
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    finally:
        ledger.close()


def legacy_billed_thru(legacy: Path) -> dict[str, dt.date]:
    """Per contract, the last period end the new engine billed (``BILL_THRU_DT``, set by a rollback)."""
    import polars as pl

    from lead2cash.sandbox.legacy.billing import contracts, read_tables

    k = contracts(read_tables(legacy)).filter(pl.col("billed_thru").is_not_null())
    return dict(k.select("contract_id", "billed_thru").iter_rows())


async def lago_billed_thru(client: Any, contracts: list[str], since: dt.date) -> dict[str, dt.date]:
    """Per contract, the end of the last period Lago billed on an invoice issued from ``since`` on (while it
    was the system of record)."""
    import polars as pl

    from lead2cash.reconcile.lago import fetch_issued

    try:
        lines = await fetch_issued(client, since)
    finally:
        await client.aclose()
    mine = lines.filter(pl.col("contract_id").is_in(contracts))
    thru = mine.group_by("contract_id").agg(pl.col("period_end").max())
    return dict(thru.iter_rows())


async def terminate(client: Any, contracts: list[str], concurrency: int = 8) -> dict[str, int]:
    """Ends each subscription without a final invoice; one already ended counts as done."""
    import asyncio

    from lead2cash.connectors.lago import LagoNotFound

    gate = asyncio.Semaphore(concurrency)
    counts = {"terminated": 0, "absent": 0}

    async def one(ext: str) -> None:
        async with gate:
            try:
                await client.request(
                    "DELETE",
                    f"/subscriptions/{quote(ext, safe='')}",
                    "subscriptions.terminate",
                    params={"on_termination_invoice": "skip"},
                )
                counts["terminated"] += 1
            except LagoNotFound:
                counts["absent"] += 1

    try:
        await asyncio.gather(*(one(c) for c in contracts))
    finally:
        await client.aclose()
    return counts


@cutover_app.command()
def rollback(
    by: Annotated[str, typer.Option("--by", help="Who decides the rollback (recorded).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")],
    workdir: Workdir = WORKDIR,
    config: ConfigOpt = CONFIG,
    legacy: Legacy = None,
    lago_url: LagoUrl = None,
    lago_api_key: LagoKey = None,
    ca_bundle: CaBundle = None,
    at: At = None,
) -> None:
    """Within the window: Lago's subscriptions end with no final invoice, the legacy contracts resume."""
    import asyncio

    from lead2cash.reconcile.billing import load_config
    from lead2cash.sandbox.legacy.billing import flag_customers, set_contract_dates

    legacy_dir = legacy or workdir / "legacy"
    state = _state(workdir)
    if state.get("status") != "executed":
        err.print("no executed cutover to roll back", markup=False)
        raise typer.Exit(2)
    day = _date(at)
    window = load_config(config).rollback_window_days
    since = (day - dt.date.fromisoformat(state["effective"])).days
    if since > window:
        err.print(
            f"the rollback window is over: {since} days since the cutover, {window} allowed", markup=False
        )
        raise typer.Exit(1)
    subs = state.get("subscriptions") or state["contracts"]  # <contract>~N after a re-cutover
    counts = asyncio.run(terminate(_client(lago_url, lago_api_key, ca_bundle), subs))
    accounts, contracts = _migrated(workdir, legacy_dir)
    effective = dt.date.fromisoformat(state["effective"])
    # What Lago billed as the system of record, per contract: the legacy run resumes after it. Read after the
    # terminations, so that nothing is billed between the reading and the end of the subscriptions.
    thru = asyncio.run(lago_billed_thru(_client(lago_url, lago_api_key, ca_bundle), contracts, effective))
    set_contract_dates(legacy_dir, "BILL_THRU_DT", thru)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    # The accounts go back to the legacy system from the cutover's own day: every period Lago did not bill
    # (whenever it fell due) is billed by the legacy run, and BILL_THRU_DT keeps it off those Lago billed.
    flag_customers(legacy_dir, accounts, "A", effective, by, reason, now)
    state.update({"status": "rolled_back", "rolled_back": day.isoformat(), "resumed": effective.isoformat()})
    (workdir / "cutover" / "state.json").write_text(json.dumps(state, indent=1))
    _log(
        workdir,
        {
            "action": "rollback",
            "effective": effective.isoformat(),
            "by": by,
            "reason": reason,
            "at": now,
            **counts,
            "billed_thru": len(thru),
        },
    )
    console.print(
        f"rolled back: {counts['terminated']:,} Lago subscriptions ended without a final invoice "
        f"({counts['absent']:,} already ended); the legacy system bills every period from {effective} on that "
        f"Lago did not bill (Lago's last billed period end handed over for {len(thru):,} contracts)",
        markup=False,
    )
