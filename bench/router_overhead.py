"""Records per second through the router with a no-op target, on SQLite and PostgreSQL.

    .venv/bin/python bench/router_overhead.py [--records 5000] [--repeats 3] [--pg postgresql://...]

Measures the whole route path: map + validate + key + inbox write with the checkpoint (ingest), then
claim + effect ledger (reserved, sent, confirmed) + no-op call + completion (deliver). Prints medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lead2cash.canonical_model import ENTITY_TYPES, Order
from lead2cash.demo import sample_orders
from lead2cash.routes.interfaces import SourceBatch
from lead2cash.routes.mapping import KeyTemplate, build_mapper
from lead2cash.routes.route import RouteRuntime
from lead2cash.store import Store


class NoopTarget:
    name = "noop"

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        return None

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return None


class ListSource:
    name = "bench"

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        start = int(checkpoint or 0)
        chunk = self.records[start : start + limit]
        return SourceBatch(chunk, str(start + len(chunk)), more=start + len(chunk) < len(self.records))


def run_once(url: str, records: list[dict[str, Any]]) -> tuple[float, float]:
    store = Store(url)
    route = RouteRuntime(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        store=store,
        target=NoopTarget(),
        mapper=build_mapper(lambda r: r, Order),
        key_fn=KeyTemplate("order:{id}:v{version}").for_entities(),
        entity_types=ENTITY_TYPES,
        source=ListSource(records),
        batch_size=500,
        concurrency=64,
    )

    async def go() -> tuple[float, float]:
        t0 = time.perf_counter()
        await route.ingest_once()
        t1 = time.perf_counter()
        while await route.deliver_once("bench"):
            pass
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    ingest, deliver = asyncio.run(go())
    assert store.count_messages(route.name, "delivered") == len(records)
    store.close()
    return ingest, deliver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    records = sample_orders(args.records, seed=1)
    backends = {"sqlite": lambda: f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"}
    try:
        import psycopg

        psycopg.connect(args.pg, connect_timeout=3).close()
        backends["postgresql"] = lambda: args.pg
    except Exception as exc:
        print(f"postgresql skipped: {exc}")
    print(f"router overhead, no-op target, {args.records} orders, median of {args.repeats}")
    print(f"{'backend':<12}{'ingest rec/s':>14}{'deliver rec/s':>15}{'end-to-end rec/s':>18}")
    for name, url in backends.items():
        runs = [run_once(url(), records) for _ in range(args.repeats)]
        ingest = statistics.median(args.records / i for i, _ in runs)
        deliver = statistics.median(args.records / d for _, d in runs)
        total = statistics.median(args.records / (i + d) for i, d in runs)
        print(f"{name:<12}{ingest:>14,.0f}{deliver:>15,.0f}{total:>18,.0f}")


if __name__ == "__main__":
    main()
