"""``lead2cash demo --migration``: the legacy billing migration end to end on the sandboxes, as an operator
runs it, each step a ``lead2cash`` command in a child process: generate a legacy extract, its quality gates
failing, cleanse, the gates passing, a wrong mapping planted, the load into a Lago sandbox (progress read
from the effect ledger), the parallel run (the accuracy under the threshold, the cutover refused), the
mapping fixed in Lago, the next cycles passing, cutover, rollback, cutover again, and record by record no
period billed twice or missed in either system.

On a terminal the steps are a live table (rich); otherwise one line per step as it ends.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]  # the commands read config/ relative to the project
BY = "demo operator"


@dataclass
class Step:
    name: str
    status: str = "..."  # ..., pass, FAIL (expected), fail
    detail: str = ""
    seconds: float = 0.0


@dataclass
class View:
    """The steps as a live table on a terminal, else one line per finished step."""

    console: Console
    steps: list[Step] = field(default_factory=list)
    live: Live | None = None
    bar: Progress | None = None

    def __post_init__(self) -> None:
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            )
            self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
            self.live.start()

    def _render(self) -> Any:
        table = Table(title="legacy billing migration to Lago", expand=False)
        table.add_column("step")
        table.add_column("result")
        table.add_column("detail", overflow="fold", max_width=100)
        table.add_column("s", justify="right")
        colour = {"pass": "green", "FAIL (expected)": "yellow", "fail": "red", "...": "cyan"}
        for s in self.steps:
            c = colour.get(s.status, "white")
            table.add_row(s.name, f"[{c}]{s.status}[/]", s.detail, f"{s.seconds:.1f}")
        if self.bar is not None and self.bar.tasks and not self.bar.finished:
            return Group(table, self.bar)
        return table

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def start(self, name: str) -> Step:
        step = Step(name)
        self.steps.append(step)
        self.refresh()
        return step

    def done(self, step: Step, status: str, detail: str, started: float) -> None:
        step.status, step.detail, step.seconds = status, detail, time.perf_counter() - started
        self.refresh()
        if self.live is None:
            line = f"{step.name:<34} {status:<16} {detail} ({step.seconds:.1f} s)"
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "220"}
    cwd = ROOT if (ROOT / "config" / "migration").is_dir() else Path.cwd()
    argv = [sys.executable, "-m", "lead2cash.cli", *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)  # noqa: S603 - our own argv


def _failing_gates(out: str) -> list[str]:
    return re.findall(r"│\s*(\w+)\s*│\s*FAIL\s*│", out)


def _confirmed(ledger: Path) -> int:
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT count(*) FROM effects WHERE target = 'lago-migration' AND state = 'confirmed'"
            ).fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0


def plant_wrong_mapping(work: Path, exclude: set[str], rate: float, seed: int) -> Any:
    """A wrong mapping in the cleansed contracts (a plan mapped to another plan's price, a discount lost),
    as `lead2cash.sandbox.legacy.billing.plant_mapping_errors` makes it; returns its ground truth (a Polars
    frame: contract_id, error, price planted and correct_price, in minor units)."""
    import polars as pl

    from lead2cash.sandbox.legacy.billing import plant_mapping_errors
    from lead2cash.sandbox.legacy.generator import EXPONENT

    part = next((work / "cleansed" / "contracts").glob("*.parquet"))
    contracts = pl.read_parquet(part)
    exp = pl.col("currency").replace_strict(EXPONENT, default=2, return_dtype=pl.Int64)
    minor = contracts.select(
        "contract_id",
        "plan_code",
        "currency",
        (pl.col("price") * pl.lit(10).pow(exp)).cast(pl.Int64, strict=False).alias("price"),
    )
    eligible = minor.filter(~pl.col("contract_id").is_in(list(exclude)) & (pl.col("price") > 0))
    _, truth = plant_mapping_errors(eligible, rate=rate, seed=seed)
    wrong = dict(zip(truth["contract_id"], truth["price"], strict=True))
    prices = [
        Decimal(wrong[k]) / 10 ** EXPONENT.get(c, 2) if k in wrong else p
        for k, c, p in contracts.select("contract_id", "currency", "price").iter_rows()
    ]
    contracts.with_columns(pl.Series("price", prices, dtype=contracts["price"].dtype)).write_parquet(part)
    return truth


def record_by_record(
    legacy_dir: Path, lago_lines: Any, scope: set[str], spans: list[tuple[dt.date, dt.date, str]]
) -> dict[str, int]:
    """Every period due from the first span on, against who billed it: ``spans`` are (first, last bill date,
    system of record). A line of a system outside its spans (for the legacy system, a full period falling due in
    one of Lago's), a period billed by both or twice, a period due and billed by nobody are counted. Lago's lines carry the contract (``contract_of``) already."""
    import polars as pl

    from lead2cash.sandbox.legacy.billing import as_if_never_migrated, bill, read_tables

    first, end = spans[0][0], spans[-1][1]
    cycles = sorted({f"{d.year:04d}-{d.month:02d}" for d in _months(first, end + dt.timedelta(days=31))})
    tables = read_tables(legacy_dir)
    mine = pl.col("contract_id").is_in(list(scope))
    legacy = bill(tables, cycles).filter(mine & pl.col("bill_date").is_between(first, end))
    due = bill(as_if_never_migrated(tables), cycles).filter(mine & pl.col("bill_date").is_between(first, end))
    lago = lago_lines.filter(mine & pl.col("bill_date").is_between(first, end))

    def inside(frame: Any, system: str, column: str = "bill_date") -> Any:
        cond = pl.lit(False)
        for a, b, s in spans:
            if s == system:
                cond = cond | pl.col(column).is_between(a, b)
        return cond

    key = ["contract_id", "period_start"]
    # The legacy run decides itself which of its lines it bills (MIGRFLAG at the day a line falls due, the
    # handover dates of single contracts): every line it bills is of record. Only a full period falling due
    # while Lago is the system of record is out of place (a short last period may be left to it).
    of_record = pl.concat(
        [
            legacy.select(*key, pl.lit("legacy").alias("system")),
            lago.filter(inside(lago, "lago")).select(*key, pl.lit("lago").alias("system")),
        ]
    )
    return {
        "due": due.height,
        "billed": of_record.height,
        "billed_twice": of_record.group_by(key).len().filter(pl.col("len") > 1).height,
        "missed": due.select(key).join(of_record, on=key, how="anti").height,
        "not_due": of_record.join(due.select(key), on=key, how="anti").height,
        "legacy_outside": legacy.filter(
            (pl.col("days") == pl.col("full_days")) & inside(legacy, "lago", "period_end")
        ).height,
        "lago_outside": lago.filter(~inside(lago, "lago")).height,
        "lago_twice": lago_lines.filter(mine).group_by(key).len().filter(pl.col("len") > 1).height,
    }


def _months(a: dt.date, b: dt.date) -> list[dt.date]:
    out, d = [], a.replace(day=1)
    while d <= b:
        out.append(d)
        d = (d + dt.timedelta(days=32)).replace(day=1)
    return out


def run_migration_demo(
    workdir: Path,
    console: Console,
    *,
    customers: int = 300,
    seed: int = 21,
    rate: float = 100.0,
    figures: dict[str, Any] | None = None,
) -> int:
    """The program end to end; 0 when record by record nothing was billed twice or missed. ``figures``,
    when given, receives what the run measured (bench/parallel_run.py prints them)."""
    import shutil

    import polars as pl

    from lead2cash.migration.ids import contract_of
    from lead2cash.reconcile.lago import invoice_lines
    from lead2cash.sandbox.lago import LagoSandbox
    from lead2cash.sandbox.legacy.billing import plan_cancellations
    from lead2cash.sandbox.server import SandboxCluster

    shutil.rmtree(workdir, ignore_errors=True)
    work = (workdir / "migration").resolve()
    work.mkdir(parents=True)
    w = ["--workdir", str(work)]
    config = work.parent / "reconcile.yaml"
    config.write_text(
        'billing: {threshold: "0.99", explained: [proration, rounding, timing]}\n'
        "cutover: {runs: 2, rollback_window_days: 30}\n"
    )
    hub = f"sqlite:///{work.parent / 'hub.db'}"
    view = View(console)
    ok = True

    def step(name: str, fn: Callable[[], tuple[str, str]], expect_fail: bool = False) -> tuple[str, str]:
        nonlocal ok
        started = time.perf_counter()
        s = view.start(name)
        status, detail = fn()
        if status == "fail" and expect_fail:
            status = "FAIL (expected)"
        elif status == "fail" or (expect_fail and status == "pass"):
            ok = False
            status = "fail"
        view.done(s, status, detail, started)
        return status, detail

    def need(result: subprocess.CompletedProcess[str], code: int = 0) -> None:
        if result.returncode != code:
            view.stop()
            console.print(result.stdout + result.stderr, markup=False)
            raise RuntimeError(f"{' '.join(result.args[3:6])}: exit {result.returncode}, expected {code}")

    state: dict[str, Any] = {}
    lago = LagoSandbox(seed=3, seed_size=0)
    cluster = SandboxCluster(systems=[lago], state_dir=Path(tempfile.mkdtemp(dir=workdir)))
    cluster.start_in_thread()
    try:
        base = cluster.base_url("lago")
        target = ["--lago-url", base + "/api/v1", "--lago-api-key", lago.api_key]
        target += ["--ca-bundle", str(cluster.ca_bundle)]
        http = httpx.Client(
            verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
            headers={"Authorization": f"Bearer {lago.api_key}"},
        )

        def clock(day: str) -> None:
            http.post(base + "/__sandbox/lago/clock", json={"to": day}).raise_for_status()

        def generate() -> tuple[str, str]:
            r = cli("migrate", "generate", "--customers", str(customers), "--seed", str(seed), *w)
            need(r)
            tables = {"CONTRACT": pl.read_parquet(work / "legacy" / "CONTRACT.parquet")}
            state["cancelled"] = set(plan_cancellations(tables, "2026-01", 0.03, seed=5))
            tables["CONTRACT"].write_parquet(work / "legacy" / "CONTRACT.parquet")
            stats = re.search(r"CUSTMAST ([\d,]*\d).*?CONTRACT ([\d,]*\d)", r.stdout)
            extra = f"{stats.group(1)} accounts, {stats.group(2)} contracts; " if stats else ""
            return "pass", f"{extra}{len(state['cancelled'])} contracts cancelled in January"

        def validate_dirty() -> tuple[str, str]:
            r = cli("migrate", "validate", "--legacy", *w)
            need(r, 1)
            report = json.loads((work / "validation-legacy" / "validation.json").read_text())
            failed = [g["name"] for g in report["gates"] if not g["passed"]]
            return "fail", f"{len(failed)} of {len(report['gates'])} quality gates fail: {', '.join(failed)}"

        def cleanse_and_validate() -> tuple[str, str]:
            need(cli("migrate", "cleanse", *w))
            r = cli("migrate", "validate", *w)
            need(r)
            q = re.search(r"quarantined: ([\d,]+) records", r.stdout)
            return (
                "pass",
                f"every gate passes; {q.group(1) if q else '?'} records quarantined with their reason",
            )

        def wrong_mapping() -> tuple[str, str]:
            truth = plant_wrong_mapping(work, state["cancelled"], rate=0.04, seed=9)
            state["fix"] = dict(zip(truth["contract_id"], truth["correct_price"], strict=True))
            need(cli("migrate", "validate", *w))
            return "pass", f"{len(state['fix'])} contracts mapped to a wrong price (planted, to be found)"

        def load() -> tuple[str, str]:
            from lead2cash.migration.load import plan

            customers_, contracts = plan(work / "cleansed", work / "validation")
            total = customers_.height + sum(len(v) for v in contracts.values())
            done = threading.Event()
            task = view.bar.add_task("load: ledger keys confirmed", total=total) if view.bar else None

            def poll() -> None:
                while not done.wait(0.25):
                    if view.bar is not None and task is not None:
                        view.bar.update(task, completed=_confirmed(work / "ledger.db"))
                        view.refresh()

            watcher = threading.Thread(target=poll, daemon=True)
            watcher.start()
            try:
                r = cli("migrate", "load", *w, *target, "--rate", str(rate))
            finally:
                done.set()
                watcher.join()
                if view.bar is not None and task is not None:
                    view.bar.update(task, completed=_confirmed(work / "ledger.db"))
            need(r)
            state["scope"] = set(lago.store.subscriptions)
            state["load"] = json.loads((work / "load.json").read_text())
            m = re.search(r"loaded (.*?) in ([\d.]+) s \(([\d.]+) customers/s", r.stdout)
            return "pass", (f"{m.group(1)} in {m.group(2)} s, {m.group(3)} customers/s" if m else r.stdout)

        def reconcile(cycle: str, day: str, code: int) -> Callable[[], tuple[str, str]]:
            def go() -> tuple[str, str]:
                clock(day)
                r = cli("reconcile", "billing", *w, "--config", str(config), *target, "--cycle", cycle)
                need(r, code)
                summary = json.loads((work / "reconcile" / f"billing-{cycle}" / "summary.json").read_text())
                causes = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("by_cause", {}).items()))
                acc = float(summary["accuracy"])
                state.setdefault("accuracy", {})[cycle] = summary["accuracy"]
                if "lago_read" in summary:
                    state.setdefault("lago_read", {})[cycle] = summary["lago_read"]
                if cycle == "2026-01":
                    diffs = pl.read_parquet(work / "reconcile" / f"billing-{cycle}" / "differences.parquet")
                    new = pl.read_parquet(work / "reconcile" / f"billing-{cycle}" / "new_lines.parquet")
                    billed = set(new.filter(pl.col("bill_date") < dt.date(2026, 2, 1))["contract_id"])
                    planted = set(state["fix"]) & state["scope"] & billed
                    price = set(diffs.filter(pl.col("cause") == "price")["contract_id"])
                    state["planted"] = (len(planted), len(planted & price), len(price - planted))
                    n, found, other = state["planted"]
                    causes += f"; planted wrong prices billed: {n}, found as price: {found}, other: {other}"
                return ("pass" if code == 0 else "fail"), f"accuracy {acc:.2%} (threshold 99%); {causes}"

            return go

        def check(day: str, code: int) -> Callable[[], tuple[str, str]]:
            def go() -> tuple[str, str]:
                r = cli(
                    "cutover", "check", *w, "--config", str(config), "--hub-store", hub, *target, "--at", day
                )
                need(r, code)
                failed = _failing_gates(r.stdout)
                return (
                    ("fail", f"gates failing: {', '.join(failed)}") if code else ("pass", "all 5 gates pass")
                )

            return go

        def fix() -> tuple[str, str]:
            for contract in set(state["fix"]) & state["scope"]:
                http.put(
                    f"{base}/api/v1/subscriptions/{contract}",
                    json={"subscription": {"plan_overrides": {"amount_cents": state["fix"][contract]}}},
                ).raise_for_status()
            return "pass", f"{len(set(state['fix']) & state['scope'])} prices corrected in Lago"

        cut = ["--by", BY, "--config", str(config), *w, *target]

        def execute(day: str, reason: str) -> Callable[[], tuple[str, str]]:
            def go() -> tuple[str, str]:
                clock(day)
                r = cli(
                    "cutover", "execute", *cut, "--reason", reason, "--hub-store", hub, "--at", day,
                    "--rate", str(rate),
                )  # fmt: skip
                need(r)
                line = next(x for x in r.stdout.splitlines() if "executed" in x)
                return "pass", line.strip()

            return go

        def rollback(day: str) -> tuple[str, str]:
            clock(day)
            r = cli("cutover", "rollback", *cut, "--reason", "invoice layout rejected", "--at", day)
            need(r)
            return "pass", r.stdout.strip().replace("\n", " ")

        def verify() -> tuple[str, str]:
            clock("2026-06-30")
            lines = invoice_lines([i.extended_json() for i in lago.store.invoices.values()])
            assert all(contract_of(c) == c for c in lines["contract_id"])
            spans = [
                (dt.date(2026, 4, 1), dt.date(2026, 4, 20), "lago"),
                (dt.date(2026, 4, 21), dt.date(2026, 5, 1), "legacy"),
                (dt.date(2026, 5, 2), dt.date(2026, 6, 30), "lago"),
            ]
            figures = record_by_record(work / "legacy", lines, state["scope"], spans)
            state["figures"] = figures
            bad = {k: v for k, v in figures.items() if k not in ("due", "billed") and v}
            detail = (
                f"{figures['due']:,} periods due from 1 April to 30 June, {figures['billed']:,} billed by the "
                f"system of record; billed twice {figures['billed_twice']}, missed {figures['missed']}, "
                f"twice in Lago {figures['lago_twice']}"
            )
            return ("fail" if bad else "pass"), detail + (f"; {bad}" if bad else "")

        step(f"generate legacy extract ({customers:,})", generate)
        step("quality gates on the raw extract", validate_dirty, expect_fail=True)
        step("cleanse, quality gates again", cleanse_and_validate)
        step("a wrong mapping slips in", wrong_mapping)
        step("load into Lago (effect ledger)", load)
        step("parallel run 2026-01", reconcile("2026-01", "2026-02-01", 1), expect_fail=True)
        step("cutover check", check("2026-02-01", 1), expect_fail=True)
        step("fix the mapping in Lago", fix)
        step("parallel run 2026-02", reconcile("2026-02", "2026-03-01", 0))
        step("parallel run 2026-03", reconcile("2026-03", "2026-04-01", 0))
        step("cutover check", check("2026-04-01", 0))
        step("cutover 1 April", execute("2026-04-01", "parallel run clean"))
        step("rollback 20 April", lambda: rollback("2026-04-20"))
        step("cutover again 1 May", execute("2026-05-01", "invoice layout fixed"))
        step("record by record to 30 June", verify)
    except RuntimeError as exc:
        console.print(f"demo stopped: {exc}", markup=False)
        ok = False
    finally:
        view.stop()
        cluster.stop()
        if figures is not None:
            figures.update(
                {
                    k: v
                    for k, v in state.items()
                    if k in ("load", "accuracy", "planted", "figures", "lago_read")
                }
            )
            figures["seconds"] = {s.name: round(s.seconds, 2) for s in view.steps}
    console.print(
        f"{'done' if ok else 'FAILED'}: state in {work} (cutover log {work / 'cutover' / 'log.jsonl'}, "
        f"parallel run reports {work / 'reconcile'})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0 if ok else 1
