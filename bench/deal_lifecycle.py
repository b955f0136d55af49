"""Deal-lifecycle sequences in bulk: ``python bench/deal_lifecycle.py --sequences 5000``.

The property test's driver and oracle (lead2cash/testing/deal_lifecycle.py) over many random sequences,
one deal each, on the shipped routes against the sandboxes: one hub run per tick of the billing calendar
advances every deal. Prints the figures (sequences, hub runs, time, fees checked, discrepancies) beside
the anchor of settling each sequence on its own (one hub run per tick per sequence).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lead2cash.demo.environment import LeadToCash
from lead2cash.testing.deal_lifecycle import calendar_ticks, first_of_next_month, random_plan, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--store-url", default=None, help="default: SQLite in a temporary directory")
    parser.add_argument("--show", type=int, default=5, help="discrepancies printed in full")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    today = datetime.now(UTC).date()
    d0 = first_of_next_month(first_of_next_month(today)) + timedelta(days=3)
    ticks, _ = calendar_ticks(d0)
    plans = [random_plan(rng, len(ticks)) for _ in range(args.sequences)]
    with tempfile.TemporaryDirectory() as tmp:
        env = LeadToCash(Path(tmp) / "l2c", seed=args.seed, seed_size=4, store_url=args.store_url)
        started = time.monotonic()
        try:

            async def scenario():  # type: ignore[no-untyped-def]
                try:
                    return await run(env, plans, d0, on_tick=lambda i, day: print(f"tick {i} {day} done"))
                finally:
                    await env.hub.aclose_systems()

            outcome = asyncio.run(scenario())
        finally:
            env.close()
        elapsed = time.monotonic() - started
    print(f"sequences            {outcome.deals}")
    print(f"ticks                {outcome.ticks}")
    print(
        f"hub runs             {outcome.hub_runs}   (anchor, each sequence settled alone: {outcome.deals * outcome.hub_runs})"
    )
    print(
        f"wall time            {elapsed:.1f} s   ({1000 * elapsed / max(outcome.deals, 1):.1f} ms per sequence)"
    )
    print(f"time in the hub      {outcome.seconds_in_hub:.1f} s")
    print(f"fees checked         {outcome.fees_checked}")
    print(f"billing dead letters {outcome.dead_letters}")
    print(f"discrepancies        {len(outcome.problems)}")
    for problem in outcome.problems[: args.show]:
        print(f"  {problem[:2000]}")


if __name__ == "__main__":
    main()
