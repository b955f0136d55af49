"""``lead2cash reconcile``: do the systems agree, and if not, why? Each check is a command of this group:
``billing`` (the parallel run of the legacy billing system and the new engine for one cycle) and
``three-way`` (CRM won deals, billing, ledger postings).

``billing`` writes under ``<workdir>/reconcile/`` (``--workdir`` is the migration's, default
``.state/migration``); each run appends a line to ``history.jsonl``. Heavy imports wait for the command.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

reconcile_app = typer.Typer(
    help="Reconciliations: do the systems agree, and if not, why.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

WORKDIR = Path(".state/migration")
CONFIG = Path("config/migration/reconcile.yaml")
Workdir = Annotated[Path, typer.Option("--workdir", help="The migration's working directory.")]
ConfigOpt = Annotated[Path, typer.Option("--config", help="Thresholds, tolerances, cutover settings.")]
LagoUrl = Annotated[
    str | None, typer.Option("--lago-url", help="Lago API base, e.g. https://host/api/v1 (env LAGO_API_URL).")
]
LagoKey = Annotated[
    str | None, typer.Option("--lago-api-key", help="Lago API key (env LAGO_API_KEY; never printed).")
]
CaBundle = Annotated[str | None, typer.Option("--ca-bundle", help="CA bundle for Lago's TLS certificate.")]


def lago_client(url: str | None, api_key: str | None, ca_bundle: str | None) -> Any:
    from lead2cash.connectors.lago import LagoClient

    url = url or os.environ.get("LAGO_API_URL")
    key = api_key or os.environ.get("LAGO_API_KEY")
    if not url or not key:
        err.print("Lago needs --lago-url and --lago-api-key (or LAGO_API_URL and LAGO_API_KEY)", markup=False)
        raise typer.Exit(2)
    return LagoClient(url, key, ca_bundle=ca_bundle)


def billing_config(path: Path) -> Any:
    from lead2cash.reconcile.billing import load_config

    try:
        return load_config(path)
    except (OSError, ValueError) as exc:
        err.print(f"{path}: {exc}", markup=False)
        raise typer.Exit(2) from None


def migrated_contracts(workdir: Path) -> Any:
    """The contracts the migration loads (cleansed, not quarantined), or None without a passing validation."""
    from lead2cash.migration.load import LoadRefused, plan

    try:
        _, by_customer = plan(workdir / "cleansed", workdir / "validation")
    except (LoadRefused, FileNotFoundError, ValueError):
        return None
    import polars as pl

    return pl.Series([k["contract_id"] for ks in by_customer.values() for k in ks], dtype=pl.String)


def legacy_lines(legacy: Path, cycle: str) -> Any:
    from lead2cash.reconcile.lago import months_around
    from lead2cash.sandbox.legacy.billing import bill, read_tables

    return bill(read_tables(legacy), months_around(cycle))


@reconcile_app.command()
def billing(
    cycle: Annotated[str, typer.Option("--cycle", help="The billing cycle, YYYY-MM.")],
    workdir: Workdir = WORKDIR,
    config: ConfigOpt = CONFIG,
    legacy: Annotated[
        Path | None, typer.Option("--legacy", help="Legacy extract directory (default <workdir>/legacy).")
    ] = None,
    legacy_lines_file: Annotated[
        Path | None, typer.Option("--legacy-lines", help="The legacy run's invoice lines (Parquet) instead.")
    ] = None,
    new_lines_file: Annotated[
        Path | None,
        typer.Option("--new-lines", help="The new engine's invoice lines (Parquet) instead of Lago."),
    ] = None,
    lago_url: LagoUrl = None,
    lago_api_key: LagoKey = None,
    ca_bundle: CaBundle = None,
    all_contracts: Annotated[
        bool, typer.Option("--all-contracts", help="Compare every line, not only the migrated contracts.")
    ] = False,
) -> None:
    """Legacy invoices against the new engine's for one cycle: differences by cause, accuracy, trend."""
    import asyncio

    import polars as pl

    from lead2cash.reconcile.billing import reconcile
    from lead2cash.reconcile.report import append_history, read_history, write_report

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", cycle):
        err.print(f"--cycle {cycle!r}: expected YYYY-MM", markup=False)
        raise typer.Exit(2)
    started = time.perf_counter()
    cfg = billing_config(config)
    out = workdir / "reconcile" / f"billing-{cycle}"
    out.mkdir(parents=True, exist_ok=True)
    old = (
        pl.scan_parquet(legacy_lines_file)
        if legacy_lines_file
        else legacy_lines(legacy or workdir / "legacy", cycle)
    )
    lago_read: dict[str, Any] | None = None
    if new_lines_file:
        new = pl.scan_parquet(new_lines_file)
    else:
        from lead2cash.reconcile.lago import fetch

        client = lago_client(lago_url, lago_api_key, ca_bundle)

        async def run() -> Any:
            try:
                return await fetch(client, cycle)
            finally:
                await client.aclose()

        read_started = time.perf_counter()
        new = asyncio.run(run())
        lago_read = {
            "lines": new.height,
            "calls": client.calls,
            "by_operation": dict(client.calls_by_operation),
            "seconds": round(time.perf_counter() - read_started, 3),
        }
    if not legacy_lines_file:
        old.write_parquet(out / "legacy_lines.parquet")
    if not new_lines_file:
        new.write_parquet(out / "new_lines.parquet")
    scope = None if all_contracts else migrated_contracts(workdir)
    result = reconcile(old, new, cycle, cfg, scope)
    clock = time.perf_counter()
    result.differences.write_parquet(out / "differences.parquet")
    result.differences.write_csv(out / "differences.csv")
    append_history(workdir, result)
    runs = read_history(workdir)
    result.phases["write"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    report = write_report(out, result, runs)
    result.phases["report"] = round(time.perf_counter() - clock, 3)
    summary = {
        **result.summary(),
        "seconds": round(time.perf_counter() - started, 3),
        "phases": result.phases,
    }
    if lago_read is not None:
        summary["lago_read"] = lago_read
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = Table(title=f"billing {cycle}: differences by cause")
    table.add_column("cause")
    table.add_column("lines", justify="right")
    table.add_column("explained")
    for cause, n in sorted(result.by_cause.items(), key=lambda x: -x[1]):
        table.add_row(cause, f"{n:,}", "yes" if cause in cfg.explained else "no")
    console.print(table)
    trend = " -> ".join(f"{r['cycle']} {float(r['accuracy']):.2%}" for r in runs[-6:])
    console.print(
        f"accuracy {result.accuracy:.4%} (threshold {result.threshold:.2%}), exact match {result.match_rate:.4%}, "
        f"{result.compared:,} lines compared, {result.differences.height:,} differences\n"
        f"trend: {trend}\nreport {report}; differences {out / 'differences.csv'} and .parquet",
        markup=False,
    )
    if lago_read is not None:
        ops = ", ".join(f"{k} {v:,}" for k, v in sorted(lago_read["by_operation"].items()))
        console.print(
            f"new engine: {lago_read['lines']:,} lines read from Lago in {lago_read['calls']:,} calls "
            f"({ops}), {lago_read['seconds']:.2f} s",
            markup=False,
        )
    from lead2cash import fast_exit

    fast_exit.allow()  # every output is written and closed
    if not result.passed:
        err.print(f"accuracy {result.accuracy} is under the threshold {result.threshold}", markup=False)
        raise typer.Exit(1)


HubConfigOpt = Annotated[
    list[Path], typer.Option("--config", "-c", help="config file(s), as `lead2cash run` takes them")
]


@reconcile_app.command("three-way")
def three_way(
    config: HubConfigOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="also write the JSON report here (e.g. <workdir>/reconcile/three-way.json)"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="differences shown in the table (the JSON has all)")] = 50,
) -> None:
    """Salesforce closed-won deals against the billing engine's invoices against the ledger's postings,
    per currency and per deal and invoice, with the likely cause of each difference and its fix.

    Exits 0 when clean, 1 when there are differences, 2 when the config or a system cannot be read."""
    import asyncio

    from lead2cash.config import ConfigError
    from lead2cash.errors import DeliveryError
    from lead2cash.hub import Hub
    from lead2cash.reconcile.three_way import ThreeWay

    try:
        hub = Hub.from_files(config)
    except ConfigError as exc:
        err.print(f"[red]{len(exc.issues)} configuration error(s)[/red]")
        for issue in exc.issues:
            err.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

    async def main() -> Any:
        try:
            check = ThreeWay(hub.config, hub.store, hub.systems, config_files=config)
            return await check.run()
        finally:
            await hub.aclose_systems()
            for system in hub.systems.values():
                odata = getattr(system, "odata", None)
                if odata is not None:
                    await odata.aclose()

    try:
        report = asyncio.run(main())
    except (ValueError, DeliveryError) as exc:
        err.print(f"reconcile three-way: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        hub.close()
    if out is not None:
        report.write_json(out)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        _print(report, limit)
        if out is not None:
            console.print(f"wrote {out}", markup=False)
    raise typer.Exit(0 if report.clean else 1)


def _print(report: Any, limit: int) -> None:
    amounts = Table(title="three-way: amounts per currency", header_style="bold")
    for col in (
        "currency",
        "won (CRM)",
        "invoiced (billing)",
        "posted receivable (ledger)",
        "billing = ledger",
        "differences",
    ):
        amounts.add_column(col, justify="left" if col == "currency" else "right")
    counted = report.by_cause()
    for ccy in report.currencies():
        invoiced, posted = report.invoiced.get(ccy), report.posted.get(ccy)
        amounts.add_row(
            ccy,
            *("-" if v is None else f"{v:,}" for v in (report.won.get(ccy), invoiced, posted)),
            "yes" if (invoiced or 0) == (posted or 0) else "NO",
            str(sum(n for (c, _cause), n in counted.items() if c == ccy)),
        )
    console.print(amounts)
    console.print(
        f"deals won {report.deals} (awaiting first invoice {report.awaiting_invoice}"
        + (
            f", billed on another deal's invoice {report.billed_with_another_deal}"
            if report.billed_with_another_deal
            else ""
        )
        + "), invoices "
        f"{report.invoices}, credit notes {report.credit_notes}, journal entries {report.journal_entries}, "
        f"customers {report.customers}; {report.seconds:.1f}s",
        markup=False,
        highlight=False,
    )
    if report.clean:
        console.print("clean: the three systems agree to the minor unit", markup=False)
        return
    table = Table(
        "cause",
        "ccy",
        Column("deal", overflow="fold"),
        Column("invoice", overflow="fold"),
        Column("difference", overflow="fold", ratio=3),
        Column("fix", overflow="fold", ratio=3),
        title=f"{len(report.differences)} difference(s)",
        header_style="bold",
        expand=True,
    )
    for d in report.differences[:limit]:
        table.add_row(
            d.cause, d.currency or "-", d.deal or "", d.invoice or d.document or "", d.detail, d.fix
        )
    console.print(table)
    if len(report.differences) > limit:
        console.print(f"... and {len(report.differences) - limit} more (--json for all)", markup=False)
