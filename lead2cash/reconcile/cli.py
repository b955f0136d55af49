"""``lead2cash reconcile``: do the systems agree? Each check is a command of this group. Heavy imports
wait for the command."""

from __future__ import annotations

import asyncio
import json
import sys
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

ConfigOpt = Annotated[
    list[Path], typer.Option("--config", "-c", help="config file(s), as `lead2cash run` takes them")
]


@reconcile_app.command("three-way")
def three_way(
    config: ConfigOpt,
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
            str(report.won.get(ccy, "-")),
            str(invoiced if invoiced is not None else "-"),
            str(posted if posted is not None else "-"),
            "yes" if (invoiced or 0) == (posted or 0) else "NO",
            str(sum(n for (c, _cause), n in counted.items() if c == ccy)),
        )
    console.print(amounts)
    console.print(
        f"deals won {report.deals} (awaiting first invoice {report.awaiting_invoice}), invoices "
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
