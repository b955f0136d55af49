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
subscriptions in Lago with ``on_termination_invoice=skip`` (no invoice for the unbilled part of the period)
and resumes the legacy contracts from the day after DATE, so the period Lago did not bill is billed, once,
by the legacy system at its next bill date.
"""

from __future__ import annotations

import asyncio
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
    months = (pl.lit(at).dt.year() * 12 + pl.lit(at).dt.month()) - (
        pl.col("next_bill").dt.year() * 12 + pl.col("next_bill").dt.month()
    )
    steps = pl.max_horizontal(months // pl.col("months") - 1, 0)
    cand = pl.col("next_bill").dt.offset_by(pl.format("{}mo", steps * pl.col("months")))
    k = k.with_columns(cand.alias("nb"))
    for _ in range(3):
        k = k.with_columns(
            pl.when(pl.col("nb") <= pl.lit(at))
            .then(pl.col("nb").dt.offset_by(pl.format("{}mo", pl.col("months"))))
            .otherwise(pl.col("nb"))
            .alias("nb")
        )
    return k.select("contract_id", "customer_id", pl.col("nb").alias("legacy_next_bill"))


async def lago_subscriptions(client: Any) -> list[dict[str, Any]]:
    return [s async for s in client.pages("/subscriptions", "subscriptions.list", "subscriptions")]


def next_bill_gate(subs: list[dict[str, Any]], legacy: Any, scope: Any) -> Gate:
    import polars as pl

    lago = pl.DataFrame(
        [
            {
                "contract_id": s["external_id"],
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
    workdir: Path, config: Path, legacy: Path, hub_store: str | None, client: Any, at: dt.date
) -> list[Gate]:
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
    )
    if not _show(gates):
        err.print("cutover is not ready", markup=False)
        raise typer.Exit(1)
    console.print("ready for cutover", markup=False)


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
) -> None:
    """The gates, then the legacy system stops billing the migrated accounts from --at on."""
    from lead2cash.sandbox.legacy.billing import flag_customers

    legacy_dir = legacy or workdir / "legacy"
    day = _date(at)
    if _state(workdir).get("status") == "executed":
        err.print("cutover already executed (cutover rollback first)", markup=False)
        raise typer.Exit(2)
    gates = run_gates(workdir, config, legacy_dir, hub_store, _client(lago_url, lago_api_key, ca_bundle), day)
    if not _show(gates):
        err.print("cutover refused: a readiness gate fails", markup=False)
        raise typer.Exit(1)
    accounts, contracts = _migrated(workdir, legacy_dir)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    flag_customers(legacy_dir, accounts, "M", day, by, reason, now)
    state = {
        "status": "executed",
        "effective": day.isoformat(),
        "by": by,
        "reason": reason,
        "at": now,
        "accounts": len(accounts),
        "contracts": contracts,
    }
    (workdir / "cutover" / "state.json").parent.mkdir(parents=True, exist_ok=True)
    (workdir / "cutover" / "state.json").write_text(json.dumps(state, indent=1))
    _log(workdir, {k: v for k, v in state.items() if k != "contracts"} | {"action": "execute"})
    console.print(
        f"cutover executed: {len(accounts):,} legacy accounts ({len(contracts):,} contracts) billed by Lago "
        f"from {day}; recorded by {by}",
        markup=False,
    )


async def terminate(client: Any, contracts: list[str], concurrency: int = 8) -> dict[str, int]:
    """Ends each subscription without a final invoice; one already ended counts as done."""
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
    from lead2cash.reconcile.billing import load_config
    from lead2cash.sandbox.legacy.billing import flag_customers

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
    counts = asyncio.run(terminate(_client(lago_url, lago_api_key, ca_bundle), state["contracts"]))
    accounts, _ = _migrated(workdir, legacy_dir)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    resume = day + dt.timedelta(days=1)  # Lago billed every date up to ``day``
    flag_customers(legacy_dir, accounts, "A", resume, by, reason, now)
    state.update({"status": "rolled_back", "rolled_back": day.isoformat(), "resumed": resume.isoformat()})
    (workdir / "cutover" / "state.json").write_text(json.dumps(state, indent=1))
    _log(
        workdir,
        {
            "action": "rollback",
            "effective": resume.isoformat(),
            "by": by,
            "reason": reason,
            "at": now,
            **counts,
        },
    )
    console.print(
        f"rolled back: {counts['terminated']:,} Lago subscriptions ended without a final invoice "
        f"({counts['absent']:,} already ended); legacy billing resumes on {resume}",
        markup=False,
    )
