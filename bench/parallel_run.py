"""The migration program end to end on the sandboxes, as `lead2cash demo --migration` runs it, with its
figures: load rate, parallel run accuracy per cycle, planted mapping errors found, and record by record
from the first cutover to the end of June the periods due, billed twice and missed.

    .venv/bin/python bench/parallel_run.py --customers 2000 [--rate 2000] [--workdir .state/bench/parallel-run]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from lead2cash.demo.migration import run_migration_demo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--rate", type=float, default=2000.0, help="Lago requests/s of the load and re-creation")
    ap.add_argument("--workdir", type=Path, default=Path(".state/bench/parallel-run"))
    args = ap.parse_args()
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    code = run_migration_demo(
        args.workdir, Console(), customers=args.customers, seed=args.seed, rate=args.rate, figures=figures
    )
    total = time.perf_counter() - started
    load = figures.get("load", {})
    print(f"\n--- figures, {args.customers:,} legacy customers, seed {args.seed} ({total:.0f} s in all)")
    if load:
        rate = load["customers"] / load["seconds"] if load["seconds"] else 0.0
        print(
            f"load: {load['customers']:,} customers, {load['subscriptions']:,} subscriptions in "
            f"{load['seconds']:.1f} s: {rate:.1f} customers/s, {load['lago_calls'] / max(load['customers'], 1):.2f} "
            f"Lago calls per customer (--rate {args.rate:g})"
        )
    for cycle, acc in figures.get("accuracy", {}).items():
        print(f"parallel run {cycle}: accuracy {float(acc):.4%}")
        read = figures.get("lago_read", {}).get(cycle)
        if read:
            ops = ", ".join(f"{k} {v:,}" for k, v in sorted(read["by_operation"].items()))
            print(
                f"  read from Lago: {read['lines']:,} lines in {read['calls']:,} calls ({ops}), {read['seconds']:.2f} s"
            )
    if "planted" in figures:
        planted, found, other = figures["planted"]
        print(
            f"planted mapping errors billed in January: {planted}, found as price: {found} "
            f"(recall {found / max(planted, 1):.2%}), other contracts flagged as price: {other}"
        )
    rec = figures.get("figures")
    if rec:
        print(
            f"record by record, 1 April to 30 June: periods due {rec['due']:,}, billed by the system of record "
            f"{rec['billed']:,}, billed twice {rec['billed_twice']}, missed {rec['missed']}, billed but not due "
            f"{rec['not_due']}, twice in Lago {rec['lago_twice']}"
        )
    for name, seconds in figures.get("seconds", {}).items():
        print(f"  {name:<36} {seconds:8.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
