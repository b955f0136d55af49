"""The accounting property at bench size: random sequences of Lago billing documents (every invoice
type, top-ups, prepaid credits, credit notes, voids before and after posting, payments by status, partial
payments recorded on invoices and returned, refunds declined, duplicates) checked for
balanced entries, accounts by product family and nature, and SAP receivable = Lago owed per customer.

    .venv/bin/python bench/accounting_sequences.py [--examples 10000] [--sandbox-examples 10000]

Runs the two property tests with hypothesis at the given sizes: through the shipped adapters and posting
rules (tests/unit/sap_adapter/test_accounting_properties.py), and through the router and the SAP sandbox
(tests/integration/connector_sap/test_sap_accounting_properties.py). Prints sequences checked, failures
and sequences per second side by side: the posting rules alone are the anchor for what the router, the
store and the sandbox's SOAP posting add per sequence. Exit status non-zero when a sequence fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = (
    (
        "posting rules alone",
        "tests/unit/sap_adapter/test_accounting_properties.py",
        "LEAD2CASH_ACCOUNTING_EXAMPLES",
    ),
    (
        "router + SAP sandbox",
        "tests/integration/connector_sap/test_sap_accounting_properties.py",
        "LEAD2CASH_ACCOUNTING_SANDBOX_EXAMPLES",
    ),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--sandbox-examples", type=int, default=10_000)
    args = parser.parse_args()
    sizes = (args.examples, args.sandbox_examples)
    print(f"{'run':<24} {'sequences':>10} {'passing':>8} {'failing':>8} {'seconds':>9} {'seq/s':>8}")
    status = 0
    for (label, test, variable), size in zip(RUNS, sizes, strict=True):
        if size <= 0:
            continue
        env = {**os.environ, variable: str(size)}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=0", test,
             "--hypothesis-show-statistics"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        counts = re.findall(r"(\d+) passing, (\d+) failing", done.stdout)
        passing = sum(int(p) for p, _ in counts)
        failing = sum(int(f) for _, f in counts)
        print(f"{label:<24} {size:>10} {passing:>8} {failing:>8} {seconds:>9.1f} {passing / seconds:>8.1f}")
        if done.returncode != 0:
            status = 1
            print(done.stdout[-3000:])
    return status


if __name__ == "__main__":
    sys.exit(main())
