"""Scenarios 1 (crash) and 2 (faulty systems) of the reliability suite, bigger than CI runs them.

    .venv/bin/python bench/chaos.py [--size small|large] [--backends sqlite,postgresql] [--pg-url URL]
                                    [--scenarios crash,faulty] [--workdir DIR] [--seed N]

small: the CI sizes (crash: 150 deals, 8 kills per backend; faulty: 16 deals); large: crash 10,000 deals
and 20 SIGKILLs per backend, faulty 300 deals. Sandboxes, hub and PostgreSQL are separate processes
(``tests/harness/processes.py``); the hub runs the shipped routes (crash) or the shipped routes with a
``rate_limit`` per route, a quicker retry policy and a 2 s poll (faulty). Each run ends with the checker:
per key, lost / duplicated / unexpected effects as Salesforce, Lago and SAP counted them, against what the
won deals and Lago's invoices ask for. Prints one row per scenario and backend:

    records (won deals), invoices (finalized in Lago), kills, faults injected (the sandboxes' own
    ``/__sandbox/faults`` counters), lost, duplicated, unexpected, max RSS of the hub process (psutil,
    sampled every 0.1 s over all its runs) and elapsed seconds.

PostgreSQL: ``--pg-url`` (default ``$LEAD2CASH_TEST_PG_URL`` or postgresql://postgres@127.0.0.1:5432/test);
each run gets its own schema, dropped afterwards. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the reliability harness (tests/harness)

from _l2c_support import pg_schema  # noqa: E402
from harness.processes import (  # noqa: E402
    CrashReport,
    FaultyReport,
    Figures,
    run_crash_scenario,
    run_faulty_scenario,
)

SIZES: dict[str, dict[str, Any]] = {
    "small": {
        "crash": {"deals": 150, "kills": 8, "delay_s": (1.0, 4.0), "advance_every": 3},
        "faulty": {"deals": 16},
    },
    "large": {
        # 500 deals closed per run of the hub, the billing clock moved every 4th run; each run lives
        # 5-20 s, so the kills land in the backlog's delivery, in start-up and in the invoices' flow.
        "crash": {"deals": 10_000, "kills": 20, "delay_s": (5.0, 20.0), "advance_every": 4},
        "faulty": {"deals": 300},
    },
}


@contextlib.contextmanager
def store_for(backend: str, workdir: Path, pg_url: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None  # the harness puts state.db in the workdir
    else:
        with pg_schema(pg_url, "chaos") as url:
            yield url


HEADER = (
    f"{'scenario':<15} {'backend':<10} {'records':>8} {'invoices':>8} {'kills':>5} {'faults':>7} "
    f"{'lost':>5} {'dup':>5} {'unexp':>5} {'max RSS MB':>10} {'elapsed s':>9}"
)


def row(f: Figures) -> str:
    return (
        f"{f.scenario:<15} {f.backend:<10} {f.records:>8} {f.invoices:>8} {f.kills:>5} {f.faults_injected:>7} "
        f"{f.lost:>5} {f.duplicated:>5} {f.unexpected:>5} {f.max_rss_mb:>10.1f} {f.elapsed_s:>9.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default="crash,faulty")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("LEAD2CASH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and state here")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=900,
        help="seconds to wait for a run to settle before checking",
    )
    parser.add_argument(
        "--lago-revoked-keys",
        action="store_true",
        help="faulty: expire Lago's API key too (each pauses route 1 for a minute)",
    )
    args = parser.parse_args()
    size = SIZES[args.size]
    backends = [b for b in args.backends.split(",") if b]
    scenarios = [s for s in args.scenarios.split(",") if s]
    base = args.workdir or Path(tempfile.mkdtemp(prefix="lead2cash-chaos-"))
    print(f"lead2cash chaos bench, size {args.size}; logs and state under {base}", flush=True)

    rows: list[Figures] = []
    failures: list[str] = []
    details: list[str] = []
    for scenario in scenarios:
        for backend in backends:
            workdir = base / f"{scenario}-{backend}"
            with store_for(backend, workdir, args.pg_url) as store_url:
                started = time.monotonic()
                print(f"... {scenario} on {backend}", flush=True)
                try:
                    if scenario == "crash":
                        crash: CrashReport = run_crash_scenario(
                            workdir,
                            store_url=store_url,
                            seed=args.seed,
                            settle_timeout=args.settle_timeout,
                            **size["crash"],
                        )
                        verdict, figures = crash.verdict, crash.figures
                        if not crash.settled:
                            failures.append(f"crash/{backend}: not settled; checked what there was")
                        details.append(
                            f"crash/{backend}: effects in doubt (sent, unconfirmed) right after each kill: "
                            f"{crash.in_doubt_at_kills}"
                        )
                    elif scenario == "faulty":
                        faulty: FaultyReport = run_faulty_scenario(
                            workdir,
                            store_url=store_url,
                            seed=args.seed,
                            settle_timeout=args.settle_timeout,
                            lago_revoked_keys=args.lago_revoked_keys,
                            **size["faulty"],
                        )
                        verdict, figures = faulty.verdict, faulty.figures
                        if not faulty.settled:
                            failures.append(f"faulty/{backend}: not settled; checked what there was")
                        details.append(f"faulty/{backend}: faults injected by kind {faulty.injected}")
                        details.append(
                            f"faulty/{backend}: resends after a Retry-After checked {faulty.retry_after_checked}, "
                            f"too early {len(faulty.retry_after_violations)}"
                        )
                        for name, rate in faulty.rates.items():
                            details.append(
                                f"faulty/{backend}: {name}: ceiling {rate.ceiling}/s, calls peak {rate.peak_1s} "
                                f"in 1 s and {rate.peak_5s} in 5 s, raw peak {rate.raw_peak_1s} in 1 s "
                                f"({'within' if rate.within else 'ABOVE'})"
                            )
                            if not rate.within:
                                failures.append(f"faulty/{backend}: {name} above its ceiling: {rate}")
                        failures.extend(f"faulty/{backend}: {v}" for v in faulty.retry_after_violations[:10])
                        if faulty.dead_letters:
                            failures.append(f"faulty/{backend}: dead letters: {faulty.dead_letters[:5]}")
                    else:
                        parser.error(f"unknown scenario {scenario!r}")
                except Exception as exc:  # a harness failure is a result too: report it and go on
                    failures.append(f"{scenario}/{backend}: {type(exc).__name__}: {exc}")
                    print(f"    failed after {time.monotonic() - started:.0f}s: {exc}", flush=True)
                    continue
                rows.append(figures)
                if verdict.dead_lettered:
                    details.append(
                        f"{scenario}/{backend}: dead-lettered as permanent: {verdict.dead_lettered}"
                    )
                failures.extend(f"{scenario}/{backend}: {p}" for p in verdict.problems[:20])
                print("    " + row(figures), flush=True)

    print()
    print(HEADER)
    for f in rows:
        print(row(f))
    print()
    for line in details:
        print(line)
    if failures:
        print("\nFAILED:")
        for line in failures:
            print(f"  {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
