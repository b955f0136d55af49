"""The parallel run, end to end on the sandboxes: migrate ~1,500 legacy customers into the Lago sandbox with
planted cancellations and planted mapping errors, run both billing cycles, reconcile (every planted
difference found with its cause), the cutover gate blocks while the mapping errors remain and passes once
they are fixed, cutover, rollback, cutover again (the subscriptions re-created as <contract>~2, not the
contracts that ended in between), and record by record every period after the first cutover billed
exactly once by exactly one system."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from lead2cash.demo.migration import plant_wrong_mapping
from lead2cash.migration.ids import contract_of
from lead2cash.reconcile.lago import invoice_lines
from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.legacy.billing import as_if_never_migrated, bill, plan_cancellations, read_tables
from lead2cash.sandbox.server import SandboxCluster

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = int(os.environ.get("L2C_PARALLEL_RUN_CUSTOMERS", "1500"))


def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == code, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_parallel_run_cutover_and_rollback(tmp_path: Path) -> None:
    work = tmp_path / "work"
    w = ["--workdir", str(work)]
    run("migrate", "generate", "--customers", str(CUSTOMERS), "--seed", "21", *w)
    legacy_dir = work / "legacy"
    tables = {"CONTRACT": pl.read_parquet(legacy_dir / "CONTRACT.parquet")}
    cancelled = set(plan_cancellations(tables, "2026-01", 0.03, seed=5))
    # Contracts that end between the cutover (1 April) and the rollback (20 April), two days before their
    # April bill date: Lago bills their last period when they end, and the second cutover must not
    # re-create them.
    k = tables["CONTRACT"]
    nxt = k["NEXT_BILL_DT"].str.strptime(pl.Date, "%Y%m%d", strict=False)
    april = (
        k["PLAN_CD"].is_in(["PLATBAS", "SEATADD"])
        & k["END_DT"].str.strip_chars().is_in(["", "99991231"])
        & nxt.dt.day().is_between(5, 18)
        & ~k["CONTR_NO"].str.strip_chars().is_in(list(cancelled))
        & (pl.Series(np.random.default_rng(8).random(k.height)) < 0.03)
    ).fill_null(False)
    end_apr = pl.format("202604{}", (nxt.dt.day() - 2).cast(pl.String).str.zfill(2))
    tables["CONTRACT"] = k.with_columns(
        END_DT=pl.when(april).then(pl.select(end_apr).to_series()).otherwise(k["END_DT"])
    )
    ended_april = set(k.filter(april)["CONTR_NO"].str.strip_chars())
    tables["CONTRACT"].write_parquet(legacy_dir / "CONTRACT.parquet")
    run("migrate", "cleanse", *w)
    run("migrate", "validate", *w)

    # A wrong mapping: a plan mapped to another plan's price, a negotiated discount lost.
    truth = plant_wrong_mapping(work, cancelled, rate=0.04, seed=9)
    correct = dict(zip(truth["contract_id"], truth["correct_price"], strict=True))
    assert truth.height > 20 and set(truth["error"]) == {"wrong_price", "discount_lost"}
    run("migrate", "validate", *w)

    config = tmp_path / "reconcile.yaml"
    config.write_text(
        'billing: {threshold: "0.99", explained: [proration, rounding, timing]}\n'
        "cutover: {runs: 2, rollback_window_days: 30}\n"
    )
    hub = f"sqlite:///{tmp_path / 'hub.db'}"
    lago = LagoSandbox(seed=3, seed_size=0)
    cluster = SandboxCluster(systems=[lago], state_dir=Path(tempfile.mkdtemp()))
    cluster.start_in_thread()
    try:
        base = cluster.base_url("lago")
        target = [
            "--lago-url",
            base + "/api/v1",
            "--lago-api-key",
            lago.api_key,
            "--ca-bundle",
            str(cluster.ca_bundle),
        ]
        http = httpx.Client(
            verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
            headers={"Authorization": f"Bearer {lago.api_key}"},
        )

        def clock(day: str) -> None:
            http.post(base + "/__sandbox/lago/clock", json={"to": day}).raise_for_status()

        run("migrate", "load", *w, *target, "--rate", "2000", "--batch-size", "100")
        scope = set(lago.store.subscriptions) - set()

        # ---- cycle 2026-01: the planted mapping errors fail the parallel run
        clock("2026-02-01")
        rec = ["reconcile", "billing", *w, "--config", str(config), *target]
        failed = run(*rec, "--cycle", "2026-01", code=1)
        assert "under the threshold" in failed.stderr
        diffs = pl.read_parquet(work / "reconcile" / "billing-2026-01" / "differences.parquet")
        by_cause = {c: set(g["contract_id"]) for (c,), g in diffs.group_by("cause")}
        lago_jan = invoice_lines([i.extended_json() for i in lago.store.invoices.values()])
        billed_jan = set(lago_jan.filter(pl.col("bill_date") < dt.date(2026, 2, 1))["contract_id"])
        planted = set(truth["contract_id"]) & scope & billed_jan
        assert planted and by_cause.get("price", set()) == planted  # every planted error, and only those
        assert cancelled & scope and by_cause["proration"] == cancelled & scope
        assert set(by_cause) <= {"price", "proration", "timing", "rounding"}, by_cause.keys()
        rounding = diffs.filter(
            pl.col("cause") == "rounding"
        )  # tax per line rounded down, per invoice half up
        assert (rounding["legacy_amount"] == rounding["new_amount"]).all() and (
            rounding["tax_delta"] == 1
        ).all()
        timing = diffs.filter(pl.col("cause") == "timing")
        assert (
            timing.height > 0 and timing["evidence"].str.contains("cycle 2026-02").all()
        )  # the 25th cut-off
        run(
            "cutover",
            "check",
            *w,
            "--config",
            str(config),
            "--hub-store",
            hub,
            *target,
            "--at",
            "2026-02-01",
            code=1,
        )

        # ---- the mapping is fixed: Lago bills the right prices from the next period on
        for contract in planted | (set(truth["contract_id"]) & scope):
            http.put(
                f"{base}/api/v1/subscriptions/{contract}",
                json={"subscription": {"plan_overrides": {"amount_cents": correct[contract]}}},
            ).raise_for_status()
        for cycle, day in (("2026-02", "2026-03-01"), ("2026-03", "2026-04-01")):
            clock(day)
            out = run(*rec, "--cycle", cycle)
            assert "accuracy" in out.stdout
        check = run(
            "cutover", "check", *w, "--config", str(config), "--hub-store", hub, *target, "--at", "2026-04-01"
        )
        assert "ready for cutover" in check.stdout

        # ---- cutover on 1 April, rollback on 20 April, both systems run to the end of May
        cut = ["--by", "J. Doe, billing ops", "--config", str(config), *w, *target]
        run(
            "cutover",
            "execute",
            *cut,
            "--reason",
            "parallel run clean",
            "--hub-store",
            hub,
            "--at",
            "2026-04-01",
        )
        flags = pl.read_parquet(legacy_dir / "MIGRFLAG.parquet")
        assert set(flags["STAT"]) == {"M"} and set(flags["BY_USR"]) == {"J. Doe, billing ops"}
        clock("2026-04-20")
        invoices_before = len(lago.store.invoices)
        run("cutover", "rollback", *cut, "--reason", "invoice layout rejected", "--at", "2026-04-20")
        assert len(lago.store.invoices) == invoices_before, "a terminated subscription was invoiced"
        again = run("cutover", "rollback", *cut, "--reason", "again", "--at", "2026-04-20", code=2)
        assert "no executed cutover" in again.stderr
        rolled_back = {
            c for c in scope if lago.store.subscriptions[c].terminated_at.date() == dt.date(2026, 4, 20)
        }
        assert ended_april & scope and not ended_april & rolled_back  # they had ended by themselves

        # ---- cutover again on 1 May: the subscriptions are re-created as <contract>~2
        clock("2026-05-01")
        check = run(
            "cutover", "check", *w, "--config", str(config), "--hub-store", hub, *target, "--at", "2026-05-01"
        )
        assert "ready for cutover" in check.stdout
        second = run(
            "cutover", "execute", *cut, "--reason", "layout fixed", "--hub-store", hub, "--at", "2026-05-01",
            "--rate", "2000",
        )  # fmt: skip
        assert "cutover 2 executed" in second.stdout, second.stdout
        recreated = {contract_of(k) for k in lago.store.subscriptions if k.endswith("~2")}
        assert recreated == rolled_back, recreated ^ rolled_back  # not the ended ones, not twice
        assert set(truth["contract_id"]) & recreated
        rerun = run(
            "cutover", "execute", *cut, "--reason", "again", "--hub-store", hub, "--at", "2026-05-01", code=2
        )
        assert "already executed" in rerun.stderr
        clock("2026-06-30")
        late = run("cutover", "rollback", *cut, "--reason", "late", "--at", "2026-06-30", code=1)
        assert "rollback window is over" in late.stderr

        # ---- record by record: from the first cutover on, every period billed once, by one system:
        # Lago from 1 to 20 April, the legacy system up to 1 May, Lago (the re-created subscriptions) after
        cutover, back, cut2, end = (
            dt.date(2026, 4, 1),
            dt.date(2026, 4, 20),
            dt.date(2026, 5, 1),
            dt.date(2026, 6, 30),
        )
        cycles = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07"]
        tables = read_tables(legacy_dir)
        legacy = bill(tables, cycles).filter(
            pl.col("contract_id").is_in(list(scope)) & (pl.col("bill_date") <= end)
        )
        expected = bill(as_if_never_migrated(tables), cycles).filter(
            pl.col("contract_id").is_in(list(scope))
            & (pl.col("bill_date") >= cutover)
            & (pl.col("bill_date") <= end)
        )
        lago_all = invoice_lines([i.extended_json() for i in lago.store.invoices.values()]).filter(
            pl.col("contract_id").is_in(list(scope))
        )
        assert lago_all.filter(pl.col("bill_date").is_between(back, cut2, closed="right")).height == 0, (
            "Lago billed between the rollback and the second cutover"
        )
        # A legacy line falls due on its period's end (a contract's last period: the day after its end); the
        # legacy run may bill a period that fell due before a cutover after it, never one due inside one
        # (the last period of a contract that ended on the second cutover's day is left to it: not a full one).
        full = pl.col("days") == pl.col("full_days")
        assert legacy.filter(pl.col("period_end").is_between(cutover, back)).height == 0, (
            "legacy billed in cutover 1"
        )
        assert legacy.filter(full & (pl.col("period_end") > cut2)).height == 0, "legacy billed in cutover 2"
        key = ["contract_id", "period_start"]
        lago_of_record = lago_all.filter(
            pl.col("bill_date").is_between(cutover, back) | (pl.col("bill_date") > cut2)
        )
        of_record = pl.concat(
            [
                legacy.filter(pl.col("bill_date") >= cutover).select(*key, pl.lit("legacy").alias("system")),
                lago_of_record.select(*key, pl.lit("lago").alias("system")),
            ]
        )
        assert of_record.height > 100 and set(of_record["system"]) == {"legacy", "lago"}
        twice = of_record.group_by(key).len().filter(pl.col("len") > 1)
        assert twice.height == 0, f"billed twice: {twice.head(5)}"
        missed = expected.select(key).join(of_record, on=key, how="anti")
        assert missed.height == 0, f"never billed: {missed.head(5)}"
        extra = of_record.join(expected.select(key), on=key, how="anti")
        assert extra.height == 0, f"billed but not due: {extra.head(5)}"
        assert (
            lago_all.group_by(key).len()["len"].max() == 1
        )  # no period twice in Lago, the parallel run and both cutovers included
        assert ended_april & set(
            lago_all.filter(pl.col("bill_date").is_between(cutover, back))["contract_id"]
        )
        # The re-created subscriptions bill the prices corrected in Lago, not the load's wrong mapping.
        full = expected.filter(pl.col("days") == pl.col("full_days")).select(*key, "amount")
        after = lago_all.filter(pl.col("bill_date") > cut2).join(full, on=key, suffix="_legacy")
        assert after.height > 100 and (after["amount"] == after["amount_legacy"]).all()
        assert set(truth["contract_id"]) & set(after["contract_id"])
    finally:
        cluster.stop()
