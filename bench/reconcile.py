"""Parallel-run reconciliation, side by side: ``lead2cash reconcile billing`` against datacompy's Polars
comparison on one generated pair of invoice-line exports with planted differences, in one run.

Each tool runs in a child process of its own from reading the Parquet files to writing its mismatched rows;
wall time, CPU time (user + system) and peak RSS (``wait4``'s ru_maxrss) are the whole process's. The tools
run ``--repeat`` times, interleaved, and the medians are printed (the machine may be shared: the load average
is printed too, and CPU time is the figure least disturbed by other work). One untimed run of each comes first:
a freshly made datacompy environment's first runs pay for reading its libraries from disk (1.9-2.2 s against
1.3 s warm), which would flatter lead2cash. datacompy compares the same columns
(plan, currency, quantity, unit price, amount, tax rate, tax, bill date, cycle) joined on the same key
(contract, period start) with the same tolerance (``abs_tol`` = the tolerance in minor units, 0 by default).

datacompy 1.1 requires Polars < 1.45 and lead2cash runs on Polars 2, so datacompy cannot share the project's
environment: it runs in a virtualenv of its own (made on first use under ``.state/bench/datacompy-venv`` from
the package index, or ``--datacompy-python``).

    .venv/bin/python bench/reconcile.py --lines 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lead2cash.reconcile.synthetic import pair  # noqa: E402

COLUMNS = ["plan", "currency", "quantity", "unit_price", "amount", "tax_rate_bp", "tax", "bill_date", "cycle"]
DATACOMPY = """
import sys, time
import polars as pl, datacompy
t0 = time.perf_counter()
legacy, new, out, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cols = {cols!r}
key = ["contract_id", "period_start"]
a = pl.read_parquet(legacy, columns=key + cols)
b = pl.read_parquet(new, columns=key + cols)
cmp = datacompy.PolarsCompare(a, b, join_columns=key, abs_tol=tol, rel_tol=0)
keys = pl.concat([cmp.all_mismatch().select(key), cmp.df1_unq_rows.select(key), cmp.df2_unq_rows.select(key)])
keys.write_parquet(out)
print(time.perf_counter() - t0)
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Wall seconds and peak RSS (MiB) of a child process, and its exit code (its CPU seconds in
    ``timed.cpu``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    timed.stdout = proc.stdout.read().decode()  # type: ignore[attr-defined]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    timed.cpu = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def datacompy_python(given: str | None) -> str:
    if given:
        return given
    venv = ROOT / ".state" / "bench" / "datacompy-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "datacompy>=1.1,<2", "pyarrow"], check=True
        )
    return str(python)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=0.002, help="share of lines planted per cause (9 causes)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--tolerance", type=int, default=0, help="minor units, every currency")
    ap.add_argument("--datacompy-python", help="a Python with datacompy (default: a venv of its own)")
    ap.add_argument(
        "--repeat", type=int, default=5, help="runs of each tool, interleaved; medians are printed"
    )
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        legacy, new, truth = pair(args.lines, seed=args.seed, rate=args.rate)
        legacy.write_parquet(Path(args.generate) / "legacy.parquet")
        new.write_parquet(Path(args.generate) / "new.parquet")
        truth.write_parquet(Path(args.generate) / "truth.parquet")
        return
    dc_python = datacompy_python(args.datacompy_python)
    with tempfile.TemporaryDirectory(prefix="l2c-reconcile-") as tmp:
        work = Path(tmp)
        # The pair is made in a child: a parent's peak RSS would be inherited by the measured children.
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--generate", str(work), "--lines", str(args.lines),
             "--seed", str(args.seed), "--rate", str(args.rate)],
            check=True,
        )  # fmt: skip
        gen_s = time.perf_counter() - t0
        truth = pl.read_parquet(work / "truth.parquet")
        heights = [
            pl.scan_parquet(work / f).select(pl.len()).collect().item()
            for f in ("legacy.parquet", "new.parquet")
        ]
        print(
            f"pair: {heights[0]:,} legacy lines, {heights[1]:,} new lines, {truth.height:,} planted "
            f"differences ({args.rate:.2%} per cause), generated in {gen_s:.1f} s"
        )
        (work / "reconcile.yaml").write_text(
            f'billing: {{threshold: "0.9", tolerance: {{"*": {args.tolerance}}}}}\n'
        )
        script = work / "dc.py"
        script.write_text(DATACOMPY.replace("{cols!r}", repr(COLUMNS)))
        l2c_cmd = [
            sys.executable, "-m", "lead2cash.cli", "reconcile", "billing", "--cycle", "2026-01",
            "--workdir", str(work / "l2c"), "--config", str(work / "reconcile.yaml"),
            "--legacy-lines", str(work / "legacy.parquet"), "--new-lines", str(work / "new.parquet"),
            "--all-contracts",
        ]  # fmt: skip
        dc_cmd = [dc_python, str(script), str(work / "legacy.parquet"), str(work / "new.parquet"),
                  str(work / "dc_keys.parquet"), str(args.tolerance)]  # fmt: skip
        load = os.getloadavg()[0]
        l2c: list[tuple[float, float, float, float]] = []
        dc: list[tuple[float, float, float, float]] = []
        phases: list[dict[str, float]] = []
        for cmd in (l2c_cmd, dc_cmd):  # warm-up, untimed: both tools' libraries in the page cache
            timed(cmd, env={**os.environ, "COLUMNS": "120"})
        for _ in range(args.repeat):  # interleaved: the machine may be shared
            s, mib, code = timed(l2c_cmd, env={**os.environ, "COLUMNS": "120"})
            summary = json.loads(
                (work / "l2c" / "reconcile" / "billing-2026-01" / "summary.json").read_text()
            )
            l2c.append((s, float(summary["seconds"]), mib, timed.cpu))  # type: ignore[attr-defined]
            phases.append(summary.get("phases", {}))
            s, mib, _ = timed(dc_cmd)
            dc_work = float(timed.stdout.strip().splitlines()[-1])  # type: ignore[attr-defined]
            dc.append((s, dc_work, mib, timed.cpu))  # type: ignore[attr-defined]
        starts = [
            timed([sys.executable, "-m", "lead2cash.cli", "reconcile", "billing", "--help"])[0]
            for _ in range(5)
        ]
        startup = statistics.median(starts)
        l2c_s, l2c_work, l2c_mib, l2c_cpu = (statistics.median(x[i] for x in l2c) for i in range(4))
        dc_s, dc_work, dc_mib, dc_cpu = (statistics.median(x[i] for x in dc) for i in range(4))
        load = max(load, os.getloadavg()[0])
        ours = pl.read_parquet(work / "l2c" / "reconcile" / "billing-2026-01" / "differences.parquet")
        theirs = pl.read_parquet(work / "dc_keys.parquet")
        key = ["contract_id", "period_start"]
        a = set(ours.select(key).iter_rows())
        b = set(theirs.select(key).iter_rows())
        found = truth.join(ours.select(*key, pl.col("cause").alias("found")), on=key, how="left")
        recall = found["found"].is_not_null().mean()
        right = (found["found"] == found["cause"]).sum() / max(found["found"].is_not_null().sum(), 1)
        precision = len(a & set(truth.select(key).iter_rows())) / max(len(a), 1)
        steps = ", ".join(
            f"{name} {statistics.median(p.get(name, 0.0) for p in phases):.3f}" for name in phases[-1]
        )
        print(f"{args.repeat} runs of each, interleaved, medians; load average (1 min) up to {load:.2f} on "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(
            f"lead2cash reconcile billing: {l2c_s:.2f} s process ({l2c_work:.2f} s reading to report), "
            f"CPU {l2c_cpu:.2f} s, peak RSS {l2c_mib:,.0f} MiB (exit {code}); the CLI's start-up alone "
            f"(lead2cash reconcile billing --help) {startup:.2f} s"
        )
        print(f"  steps (s): {steps}")
        print(
            f"datacompy PolarsCompare:     {dc_s:.2f} s process ({dc_work:.2f} s reading to mismatches written), "
            f"CPU {dc_cpu:.2f} s, peak RSS {dc_mib:,.0f} MiB"
        )
        print(
            f"ratio: process {dc_s / l2c_s:.2f}x, work {dc_work / l2c_work:.2f}x as fast, "
            f"CPU {dc_cpu / l2c_cpu:.2f}x less; {dc_mib / l2c_mib:.2f}x less memory"
        )
        print("  per run (s, process): lead2cash " + " ".join(f"{x[0]:.2f}" for x in l2c)
              + "; datacompy " + " ".join(f"{x[0]:.2f}" for x in dc))  # fmt: skip
        print(
            f"mismatched rows: lead2cash {len(a):,}, datacompy {len(b):,}; identical sets: {a == b}"
            + ("" if a == b else f" (only lead2cash {len(a - b):,}, only datacompy {len(b - a):,})")
        )
        print(
            f"against the planted truth: recall {recall:.4f}, precision {precision:.4f}, "
            f"classified to the right cause {right:.4f}"
        )
        per = (
            found.group_by("cause")
            .agg(
                pl.col("found").is_not_null().mean().alias("recall"),
                (pl.col("found") == pl.col("cause")).mean().alias("right"),
            )
            .sort("cause")
        )
        for cause, r, ok in per.iter_rows():
            print(f"  {cause:15} recall {r:.4f}  right cause {ok:.4f}")


if __name__ == "__main__":
    main()
