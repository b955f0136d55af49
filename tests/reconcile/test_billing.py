"""Billing reconciliation: each cause of difference is classified with its evidence; accuracy, the history
file and the exit code under the threshold."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from lead2cash.reconcile.billing import LINES, BillingConfig, reconcile
from lead2cash.reconcile.synthetic import PLANTS, pair

ROOT = Path(__file__).resolve().parents[2]


def line(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "invoice_id": "INV1",
        "customer_id": "C1",
        "contract_id": "K1",
        "segment": "DE",
        "plan": "PLAT-BASE",
        "currency": "EUR",
        "period_start": dt.date(2025, 12, 10),
        "period_end": dt.date(2026, 1, 10),
        "bill_date": dt.date(2026, 1, 10),
        "cycle": "2026-01",
        "quantity": 1,
        "unit_price": 45900,
        "amount": 45900,
        "tax_rate_bp": 1900,
        "tax": 8721,
        "days": 31,
        "full_days": 31,
    }
    return {**base, **kw}


def frame(*rows: dict[str, object]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=LINES)


CASES = {
    "agree": ({}, None),
    "currency": ({"currency": "USD"}, "legacy in EUR, new in USD"),
    "quantity": ({"quantity": 2, "amount": 91800}, "quantity legacy 1, new 2"),
    "price": (
        {"unit_price": 51000, "amount": 51000, "tax": 9690},
        "unit price legacy 459.00 EUR new 510.00 EUR",
    ),
    "price_plan": ({"plan": "PLAT-PRO"}, "plan legacy PLAT-BASE new PLAT-PRO"),
    "tax": (
        {"tax_rate_bp": 1600, "tax": 7344},
        "tax rate legacy 19.00%, new 16.00%: tax 87.21 EUR against 73.44 EUR",
    ),
    "rounding": (
        {"tax": 8722},
        "same rate 19.00% on 459.00 EUR: tax legacy 87.21 EUR (per line, rounded down), new 87.22 EUR",
    ),
    "timing": ({"bill_date": dt.date(2026, 1, 27), "cycle": "2026-01"}, "billed legacy 2026-01-10"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_cause_is_classified_with_its_evidence(case: str) -> None:
    change, evidence = CASES[case]
    result = reconcile(frame(line()), frame(line(**change)), "2026-01", BillingConfig())
    if evidence is None:
        assert result.differences.height == 0 and result.accuracy == Decimal(1)
        return
    (row,) = result.differences.to_dicts()
    assert row["cause"] == case.split("_")[0]
    assert evidence in row["evidence"], row["evidence"]


def test_proration_missing_extra_and_timing_across_the_cut_off() -> None:
    legacy = frame(
        # 30-day months: 45900 x 12 / 30 = 18360; Lago by actual days: 45900 x 12 / 31 = 17768
        line(
            contract_id="K1", days=12, full_days=31, amount=18360, tax=3488, period_end=dt.date(2025, 12, 22)
        ),
        line(contract_id="K2"),
        # the legacy cut-off (25th) puts a bill date of the 27th into the next cycle
        line(contract_id="K3", bill_date=dt.date(2026, 1, 27), cycle="2026-02"),
    )
    new = frame(
        line(
            contract_id="K1",
            days=12,
            full_days=None,
            amount=17768,
            tax=3376,
            period_end=dt.date(2025, 12, 22),
        ),
        line(contract_id="K3", bill_date=dt.date(2026, 1, 27), cycle="2026-01"),
        line(contract_id="K4"),
    )
    result = reconcile(legacy, new, "2026-01", BillingConfig())
    got = {r["contract_id"]: (r["cause"], r["evidence"]) for r in result.differences.to_dicts()}
    assert got["K1"][0] == "proration" and "legacy 183.60 EUR for 12 of 31 days" in got["K1"][1]
    assert got["K2"][0] == "missing_in_new" and "the new engine has no line" in got["K2"][1]
    assert got["K3"][0] == "timing" and "(cycle 2026-02)" in got["K3"][1]
    assert got["K4"][0] == "extra_in_new"
    # proration and timing are explained by the engines' rules: 2 of 4 lines count as accurate
    assert result.compared == 4 and result.accuracy == Decimal("0.5") and result.match_rate == Decimal(0)


def test_a_period_billed_twice_is_an_extra_line_and_tolerance_is_per_currency() -> None:
    legacy = frame(
        line(contract_id="K1"), line(contract_id="K2", currency="JPY", amount=72000, unit_price=72000)
    )
    new = frame(
        line(contract_id="K1"),
        line(contract_id="K1", invoice_id="INV2"),
        line(contract_id="K2", currency="JPY", amount=72001, unit_price=72001),
    )
    cfg = BillingConfig(tolerance={"*": 0, "JPY": 1})
    result = reconcile(legacy, new, "2026-01", cfg)
    assert result.differences.select("contract_id", "cause").rows() == [("K1", "extra_in_new")]


def test_lines_of_a_key_meet_in_order_and_an_agreeing_line_counts_in_a_segment_either_side_names() -> None:
    """A key billed twice on both sides pairs first with first, second with second (two same lines in
    another order are two differences); a line that agrees counts in the legacy line's segment, or the new
    one's when the legacy has none; lines of another cycle are not compared."""
    legacy = frame(
        line(contract_id="K1"),
        line(contract_id="K1", invoice_id="INV2", unit_price=50000, amount=50000),
        line(contract_id="K2", segment=None),
        line(contract_id="K3", segment="US"),
        line(contract_id="K4", cycle="2025-12", bill_date=dt.date(2025, 12, 10)),
    )
    new = frame(
        line(contract_id="K1", invoice_id="INV2", unit_price=50000, amount=50000),
        line(contract_id="K1"),
        line(contract_id="K2", segment="GB"),
        line(contract_id="K3", segment="FR"),
        line(contract_id="K4", cycle="2025-12", bill_date=dt.date(2025, 12, 10)),
    )
    result = reconcile(legacy, new, "2026-01", BillingConfig())
    assert result.differences.select("contract_id", "cause").rows() == [("K1", "price"), ("K1", "price")]
    assert {s["segment"]: s["compared"] for s in result.by_segment} == {"DE": 2, "GB": 1, "US": 1}
    assert result.compared == 4 and result.agreeing == 2


def test_generated_pair_every_planted_difference_found_with_its_cause() -> None:
    legacy, new, truth = pair(30_000, seed=5, rate=0.004)
    result = reconcile(legacy, new, "2026-01", BillingConfig())
    got = result.differences.select("contract_id", "period_start", pl.col("cause").alias("found"))
    joined = truth.join(got, on=["contract_id", "period_start"], how="full", coalesce=True)
    assert joined.filter(pl.col("cause").ne_missing(pl.col("found"))).height == 0
    assert set(truth["cause"]) == set(PLANTS)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", "reconcile", "billing", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_cli_exit_code_history_and_outputs(tmp_path: Path) -> None:
    legacy, new, _ = pair(5_000, seed=3, rate=0.002)
    legacy.write_parquet(tmp_path / "legacy.parquet")
    new.write_parquet(tmp_path / "new.parquet")
    common = ["--cycle", "2026-01", "--workdir", str(tmp_path / "w"), "--all-contracts"]
    files = ["--legacy-lines", str(tmp_path / "legacy.parquet")]
    failing = cli(*common, *files, "--new-lines", str(tmp_path / "new.parquet"))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "under the threshold" in failing.stderr
    report = tmp_path / "w" / "reconcile" / "billing-2026-01" / "report.html"
    failed = report.read_text()
    # trend, causes, and the largest customers of each currency with differences (amounts in major units)
    assert failed.count("<svg") >= 3 and "<h3>JPY</h3>" in failed and " JPY</text>" in failed
    passing = cli(*common, *files, "--new-lines", str(tmp_path / "legacy.parquet"))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "trend: 2026-01" in passing.stdout
    runs = [json.loads(x) for x in (tmp_path / "w" / "reconcile" / "history.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["cycle"], r["passed"], r["threshold"]) for r in runs] == [
        ("billing", "2026-01", False, "0.995"),
        ("billing", "2026-01", True, "0.995"),
    ]
    assert Decimal(runs[0]["accuracy"]) < Decimal("0.995") and Decimal(runs[1]["accuracy"]) == 1
    assert runs[0]["differences"] > 0 and runs[1]["differences"] == 0
    out = tmp_path / "w" / "reconcile" / "billing-2026-01"
    assert (out / "differences.csv").exists() and (out / "differences.parquet").exists()
    assert "no differences" in report.read_text()
    bad = cli("--cycle", "2026-13", "--workdir", str(tmp_path / "w"))
    assert bad.returncode == 2


# The canonical model's currency table is light; its entities (and pydantic under them) are not.
HEAVY = ("lead2cash.hub", "lead2cash.config", "lead2cash.store", "lead2cash.routes", "lead2cash.connectors",
         "lead2cash.canonical_model.base", "lead2cash.sandbox", "pydantic", "sqlalchemy", "alembic", "httpx",
         "pandas")  # fmt: skip
IMPORTED = """
import json, sys
from lead2cash.cli import main
sys.argv = ["lead2cash", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_cli_reconcile_billing_imports_only_what_it_needs(tmp_path: Path) -> None:
    """The CLI's start-up is paid on every run: ``reconcile billing`` on Parquet files must not import the
    hub, the config models, the canonical entities (pydantic), the store (SQLAlchemy, Alembic), the connectors
    (httpx) or the sandboxes."""
    legacy, new, _ = pair(500, seed=5, rate=0.01)
    legacy.write_parquet(tmp_path / "legacy.parquet")
    new.write_parquet(tmp_path / "new.parquet")
    args = ["reconcile", "billing", "--cycle", "2026-01", "--workdir", str(tmp_path / "w"), "--all-contracts",
            "--legacy-lines", str(tmp_path / "legacy.parquet"), "--new-lines", str(tmp_path / "new.parquet")]  # fmt: skip
    for argv in (args, ["reconcile", "billing", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", IMPORTED, *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["code"] in (0, 1, None), done.stdout + done.stderr
        heavy = [m for m in seen["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
        assert not heavy, f"{argv[:3]} imported {heavy}"


def test_evidence_states_amounts_in_the_currency_major_unit_and_no_delta_across_currencies() -> None:
    legacy = frame(
        line(contract_id="K1", currency="KWD", unit_price=406300, amount=406300, tax=0, tax_rate_bp=0),
        line(contract_id="K2", currency="JPY", unit_price=72000, amount=72000, tax=7200, tax_rate_bp=1000),
        line(contract_id="K3", currency="EUR", amount=5, unit_price=5, tax=0),
    )
    new = frame(
        line(contract_id="K2", currency="JPY", unit_price=72000, amount=72000, tax=8000, tax_rate_bp=1111),
        line(contract_id="K3", currency="USD", amount=7, unit_price=7, tax=0),
    )
    rows = {
        r["contract_id"]: r for r in reconcile(legacy, new, "2026-01", BillingConfig()).differences.to_dicts()
    }
    assert "billed 406.300 KWD on 2026-01-10" in rows["K1"]["evidence"], rows["K1"]["evidence"]
    assert rows["K1"]["delta"] == -406300  # minor units in the export, exact
    assert rows["K2"]["evidence"] == "tax rate legacy 10.00%, new 11.11%: tax 7200 JPY against 8000 JPY"
    assert (
        rows["K3"]["cause"] == "currency" and rows["K3"]["delta"] is None and rows["K3"]["tax_delta"] is None
    )
