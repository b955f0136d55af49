"""``make demo``: the lead-to-cash flow end to end on the sandboxes, with a live view and a reconciliation.

Deals are closed as won in the Salesforce sandbox; the hub (SQLite, the shipped routes) bills them in Lago;
the billing clock is advanced so subscriptions are invoiced; every finalized invoice is posted to SAP as a
balanced journal entry; invoice number, amount, payment status and SAP document go back onto the deal.
The run ends with the three systems compared per currency and record by record.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lead2cash.demo.environment import CONFIG_DIR, Agreement, LeadToCash, Progress

FAULT_PROFILES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "none": {},
    # Transient faults on every system and lost responses on every write: the ledger and the lookups at work.
    "flaky": {
        name: {"*": {"error_rate": 0.2, "commit_then_drop_rate": 0.05, "retry_after_s": 1}}
        for name in ("salesforce", "lago", "sap")
    },
}


def lead2cash_command() -> str:
    """``lead2cash`` as the shell that started the demo can call it: by name when that is this one on the
    PATH, else by the path it was started with (``make demo`` runs ``.venv/bin/lead2cash``)."""
    script = Path(sys.argv[0])
    if script.name != "lead2cash":
        return f"{sys.executable} -m lead2cash.cli"
    found = shutil.which("lead2cash")
    if found and Path(found).resolve() == script.resolve():
        return "lead2cash"
    return str(script)


def _progress_table(p: Progress, phase: str, elapsed: float) -> Panel:
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("stage")
    table.add_column("count", justify="right")
    table.add_row("deals won in Salesforce", str(p.won))
    table.add_row("orders billed in Lago", str(p.billed))
    table.add_row("invoice events received", str(p.invoices))
    table.add_row("journal entries posted in SAP", str(p.posted))
    table.add_row("SAP documents written back", str(p.written_back))
    table.add_row("messages pending", str(p.pending))
    table.add_row("retries", str(p.retries))
    table.add_row("dead letters", str(p.dead_letters), style="red" if p.dead_letters else None)
    return Panel(table, title=f"lead2cash demo: {phase}", subtitle=f"{elapsed:,.1f} s")


AMOUNT_COLUMNS = (
    (
        "won in Salesforce",
        "net Amount (before tax) of every won Opportunity: the deals closed now and before",
    ),
    (
        "invoiced in Lago",
        "gross totals (tax included) of every invoice Lago finalized: one-off fees at once, subscription "
        "periods as the billing clock passes their end (--advance-days)",
    ),
    (
        "receivables in SAP",
        "what SAP booked on the receivables account for those invoices, per transaction currency",
    ),
    (
        "Lago = SAP",
        "invoiced and receivables must agree to the minor unit; won differs from them by tax and by "
        "periods not billed yet",
    ),
)


def _grouped(amount: Any) -> str:
    """An exact amount with thousands separators (``34,387,050``, ``223,207.89``); ``-`` for none."""
    return "-" if amount is None else f"{amount:,}"


def summary_tables(agreement: Agreement, progress: Progress) -> Group:
    amounts = Table(title="amounts per currency", header_style="bold")
    for col in ("currency", "won in Salesforce", "invoiced in Lago", "receivables in SAP", "Lago = SAP"):
        amounts.add_column(col, justify="right" if col != "currency" else "left")
    for ccy in sorted(set(agreement.won) | set(agreement.invoiced) | set(agreement.posted)):
        invoiced, posted = agreement.invoiced.get(ccy), agreement.posted.get(ccy)
        amounts.add_row(
            ccy,
            _grouped(agreement.won.get(ccy)),
            _grouped(invoiced),
            _grouped(posted),
            "yes" if invoiced == posted else "NO",
        )
    revenue = Table(title="revenue per account (Lago's fees by product family, SAP's revenue accounts)",
                    header_style="bold")  # fmt: skip
    for col in ("currency", "account", "billed in Lago", "booked in SAP", "Lago = SAP"):
        revenue.add_column(col, justify="right" if col not in ("currency", "account") else "left")
    for ccy in sorted(set(agreement.revenue_billed) | set(agreement.revenue_posted)):
        billed, booked = agreement.revenue_billed.get(ccy, {}), agreement.revenue_posted.get(ccy, {})
        for account in sorted(set(billed) | set(booked)):
            want, got = billed.get(account), booked.get(account)
            revenue.add_row(ccy, account, _grouped(want), _grouped(got), "yes" if want == got else "NO")
    counts = Table(title="records", header_style="bold")
    for col in (
        "deals won",
        "awaiting first invoice",
        "invoices finalized",
        "journal entries",
        "retries",
        "dead letters",
    ):
        counts.add_column(col, justify="right")
    counts.add_row(
        str(agreement.deals),
        str(agreement.awaiting_invoice),
        str(agreement.invoices),
        str(agreement.journal_entries),
        str(progress.retries),
        str(progress.dead_letters),
    )
    legend = Table.grid(padding=(0, 2))
    legend.add_column(style="bold", no_wrap=True)
    legend.add_column()
    for name, meaning in AMOUNT_COLUMNS:
        legend.add_row(name, meaning)
    return Group(amounts, legend, revenue, counts)


async def _run(
    env: LeadToCash,
    console: Console,
    deals: int,
    advance_days: int,
    faults: str,
    timeout: float,
    keep_running: bool,
) -> int:
    started = time.monotonic()
    phase = "starting"

    def render() -> Panel:
        return _progress_table(env.progress(), phase, time.monotonic() - started)

    with Live(render(), console=console, refresh_per_second=4, transient=False) as live:
        tick: Callable[[Progress], None] = lambda _p: live.update(render())  # noqa: E731
        await env.start()
        if FAULT_PROFILES[faults]:
            env.set_faults(FAULT_PROFILES[faults])
        phase = f"closing {deals} deals as won; the hub bills them"
        env.close_won(deals)
        settled = await env.wait_settled(timeout, on_tick=tick)
        phase = f"billing clock +{advance_days} days: subscriptions invoiced, posted, written back"
        live.update(render())
        env.advance_billing(advance_days)
        settled = await env.wait_settled(timeout, on_tick=tick) and settled
        phase = "settled" if settled else "timed out"
        live.update(render())
    if not console.is_terminal:  # Live leaves its last frame without a line end when output is a file
        console.line()
    env.set_faults({})
    progress = env.progress()
    agreement = await asyncio.to_thread(env.agreement)
    console.print(summary_tables(agreement, progress))
    for difference in agreement.differences[:20]:
        line = Text.assemble(
            "  ", (difference.cause, "red"), f": {difference.detail}\n    fix: {difference.fix}"
        )
        console.print(line, highlight=False)
    for d in env.hub.store.dlq_list(limit=10):
        console.print(
            f"  [red]dead letter[/red] {d.id} ({d.route}): {d.error_message[:160]}", highlight=False
        )
    ok = settled and agreement.agree and progress.dead_letters == 0
    console.print(
        "[green]the three systems agree to the minor unit[/green]"
        if ok
        else "[red]the systems do not agree (see above)[/red]"
    )
    console.print(
        f"state: {env.workdir / 'state.db'}   config: "
        + " ".join(str(p) for p in env.config_files)
        + f"\ntry: {lead2cash_command()} dlq list -c {' -c '.join(str(p) for p in env.config_files)}"
        + f"\n     {lead2cash_command()} reconcile three-way -c {' -c '.join(str(p) for p in env.config_files)}"
    )
    if keep_running:
        console.print("\n[bold]hub and sandboxes keep running[/bold] (Ctrl-C to stop):")
        for name in ("salesforce", "lago", "sap"):
            console.print(f"  {name:<11} {env.cluster.base_url(name)}")
        console.print(f"  hub         http://127.0.0.1:{env.web_port}  (/health, /metrics, /webhooks/lago)")
        console.print(f"  CA bundle   {env.cluster.ca_bundle}")
        console.print(f"  admin token {env.admin_token}", markup=False, highlight=False)
        console.print(
            f"  try:        curl -s -H 'Authorization: Bearer {env.admin_token}' "
            f"'http://127.0.0.1:{env.web_port}/admin/dead-letters?status=all'",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    await env.stop()
    return 0 if ok else 1


def run_lead_to_cash_demo(
    workdir: Path,
    console: Console,
    *,
    deals: int = 25,
    seed: int = 42,
    advance_days: int = 35,
    faults: str = "none",
    timeout: float = 180.0,
    keep_running: bool = False,
) -> int:
    if faults not in FAULT_PROFILES:
        raise ValueError(f"unknown fault profile {faults!r}; known: {', '.join(FAULT_PROFILES)}")
    if workdir.exists():
        shutil.rmtree(workdir)
    # The admin API answers only with a token; the demo makes one per run (printed with --keep-running).
    # The accounting routes too: top-ups, credit notes, refunds, voids and payments are posted in SAP.
    env = LeadToCash(
        workdir,
        seed=seed,
        seed_size=max(60, deals * 3),
        admin_token=secrets.token_urlsafe(24),
        extra_route_files=[CONFIG_DIR / "accounting.yaml"],
    )
    try:
        return asyncio.run(_run(env, console, deals, advance_days, faults, timeout, keep_running))
    finally:
        with contextlib.suppress(Exception):
            env.close()
