"""Cutover, rollback and cutover again on the sandboxes with contracts that end around each switch, record
by record: every period due from the first cutover on is billed exactly once, by one system.

The cases (monthly contracts, cutover 1 April, rollback 20 April, cutover again 1 May):

- ``during_cutover``: ends 10 April, legacy bill date the 22nd to the 25th (after the rollback). Lago bills
  the short last period when the subscription ends; the legacy run must not bill it again after the rollback.
- ``before_cutover``: ends 28 March, legacy bill date the 5th to the 15th of April. Lago's invoice of the
  parallel run is not of record; the legacy system must bill the period although the account is migrated.
- ``cutover_eve``: ends 31 March: the period falls due on 1 April, Lago bills it as system of record.
- ``after_rollback``: ends 25 April, legacy bill date in May (after the second cutover): the legacy system
  bills it, Lago does not re-create it (real Lago refuses an ``ending_at`` in the past).
- ``on_recutover``: ends 1 May, the second cutover's day: Lago refuses that ``ending_at`` too.
- ``after_recutover``: ends 20 May: re-created in Lago, which bills its last period when it ends.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import polars as pl

from lead2cash.reconcile.lago import invoice_lines
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.legacy.billing import as_if_never_migrated, bill, read_tables
from lead2cash.sandbox.server import SandboxCluster

ROOT = Path(__file__).resolve().parents[2]

# case: (first and last legacy bill day of the month, END_DT)
CASES = {
    "during_cutover": ((22, 25), "20260410"),
    "before_cutover": ((5, 15), "20260328"),
    "cutover_eve": ((5, 15), "20260331"),
    "after_rollback": ((5, 15), "20260425"),
    "on_recutover": ((5, 15), "20260501"),
    "after_recutover": ((22, 25), "20260520"),
}
CUTOVER, ROLLBACK, RECUTOVER, END = (
    dt.date(2026, 4, 1),
    dt.date(2026, 4, 20),
    dt.date(2026, 5, 1),
    dt.date(2026, 6, 30),
)


def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == code, result.stdout + result.stderr
    return result


def plant(legacy_dir: Path) -> dict[str, set[str]]:
    """Ends 4 open monthly contracts per case (not both of one account's) at the case's date."""
    k = pl.read_parquet(legacy_dir / "CONTRACT.parquet")
    day = k["NEXT_BILL_DT"].str.strptime(pl.Date, "%Y%m%d", strict=False).dt.day()
    open_monthly = (
        k["PLAN_CD"].is_in(["PLATBAS", "SEATADD"]) & k["END_DT"].str.strip_chars().is_in(["", "99991231"])
    ).fill_null(False)
    cases: dict[str, set[str]] = {}
    taken: set[str] = set()
    end = k["END_DT"].to_list()
    for name, ((lo, hi), end_dt) in CASES.items():
        chosen: set[str] = set()
        for i in range(k.height):
            cust = k["CUST_NO"][i].strip()
            if len(chosen) == 4:
                break
            if open_monthly[i] and day[i] is not None and lo <= day[i] <= hi and cust not in taken:
                chosen.add(k["CONTR_NO"][i].strip())
                taken.add(cust)
                end[i] = end_dt
        cases[name] = chosen
    k.with_columns(END_DT=pl.Series(end, dtype=pl.String)).write_parquet(legacy_dir / "CONTRACT.parquet")
    return cases


def test_no_period_billed_twice_or_missed_across_cutover_rollback_and_recutover(tmp_path: Path) -> None:
    work = tmp_path / "work"
    w = ["--workdir", str(work)]
    run("migrate", "generate", "--customers", "200", "--seed", "21", *w)
    legacy_dir = work / "legacy"
    cases = plant(legacy_dir)
    run("migrate", "cleanse", *w)
    run("migrate", "validate", *w)
    config = tmp_path / "reconcile.yaml"
    config.write_text(
        'billing: {threshold: "0.99", explained: [proration, rounding, timing]}\n'
        "cutover: {runs: 0, rollback_window_days: 30}\n"  # no parallel run needed to switch here
    )
    hub = f"sqlite:///{tmp_path / 'hub.db'}"
    lago = LagoSandbox(seed=3, seed_size=0)
    cluster = SandboxCluster(systems=[lago], state_dir=Path(tempfile.mkdtemp()))
    cluster.start_in_thread()
    try:
        base = cluster.base_url("lago")
        target = ["--lago-url", base + "/api/v1", "--lago-api-key", lago.api_key]
        target += ["--ca-bundle", str(cluster.ca_bundle)]
        run("migrate", "load", *w, *target, "--rate", "2000", "--batch-size", "100")
        scope = set(lago.store.subscriptions)
        for name, contracts in cases.items():
            assert contracts & scope, f"no contract of case {name} was migrated"
        http = httpx.Client(verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)))

        def clock(day: str) -> None:
            http.post(base + "/__sandbox/lago/clock", json={"to": day}).raise_for_status()

        cut = ["--by", "billing ops", "--config", str(config), *w, *target]

        clock("2026-04-01")
        run("cutover", "execute", *cut, "--hub-store", hub, "--reason", "first", "--at", "2026-04-01")
        clock("2026-04-20")
        run("cutover", "rollback", *cut, "--reason", "back", "--at", "2026-04-20")
        clock("2026-05-01")
        second = run(
            "cutover",
            "execute",
            *cut,
            "--hub-store",
            hub,
            "--reason",
            "again",
            "--at",
            "2026-05-01",
            "--rate",
            "2000",
        )
        assert "cutover 2 executed" in second.stdout, second.stdout
        left = len((cases["after_rollback"] | cases["on_recutover"]) & scope)
        assert f"{left} last periods left to the legacy system" in " ".join(second.stdout.split())
        clock("2026-06-30")

        cycles = [f"2026-{m:02d}" for m in range(3, 9)]
        tables = read_tables(legacy_dir)
        mine = pl.col("contract_id").is_in(list(scope))
        # What is due: the legacy run as if nobody had switched anything.
        due = bill(as_if_never_migrated(tables), cycles)
        due = due.filter(mine & pl.col("bill_date").is_between(CUTOVER, END))
        legacy = bill(tables, cycles).filter(mine & pl.col("bill_date").is_between(CUTOVER, END))
        lago_lines = invoice_lines([i.extended_json() for i in lago.store.invoices.values()]).filter(mine)
        # Between the rollback and the second cutover the legacy system is the system of record.
        between = lago_lines.filter(pl.col("bill_date").is_between(ROLLBACK, RECUTOVER, closed="right"))
        of_record_lago = lago_lines.filter(
            pl.col("bill_date").is_between(CUTOVER, ROLLBACK) | pl.col("bill_date").is_between(RECUTOVER, END)
        )
        key = ["contract_id", "period_start"]
        of_record = pl.concat(
            [
                legacy.select(*key, pl.lit("legacy").alias("system")),
                of_record_lago.select(*key, pl.lit("lago").alias("system")),
            ]
        )
        twice = of_record.group_by(key).agg(pl.col("system")).filter(pl.col("system").list.len() > 1)
        missed = due.select(key).join(of_record, on=key, how="anti")
        extra = of_record.join(due.select(key), on=key, how="anti")
        problems = {}
        for name, contracts in cases.items():
            c = pl.col("contract_id").is_in(list(contracts & scope))
            found = {
                "twice": twice.filter(c).rows(),
                "missed": missed.filter(c).rows(),
                "extra": extra.filter(c).rows(),
                "lago_between": between.filter(c).select(*key, "bill_date").rows(),
            }
            if any(found.values()):
                problems[name] = found
        assert not problems, problems
        assert twice.is_empty() and missed.is_empty() and extra.is_empty() and between.is_empty()
        assert due.height > 300
        # Who billed the last period of each case (the system of record on the day it fell due).
        last_by = {
            "during_cutover": "lago",
            "before_cutover": "legacy",
            "cutover_eve": "lago",
            "after_rollback": "legacy",
            "on_recutover": "legacy",
            "after_recutover": "lago",
        }
        short = due.filter(pl.col("days") < pl.col("full_days")).select(*key)
        owner = dict(short.join(of_record, on=key).select("contract_id", "system").iter_rows())
        for name, contracts in cases.items():
            for contract in contracts & scope:
                assert owner.get(contract) == last_by[name], (name, contract, owner.get(contract))
    finally:
        cluster.stop()
