"""SAP calls per posted invoice in a backfill: ``.venv/bin/python bench/sap_posting.py``.

    .venv/bin/python bench/sap_posting.py [--invoices 2000] [--customers 100] [--concurrency 100]

A backlog of ``--invoices`` finalized canonical invoices of ``--customers`` customers (EUR and USD, so two
company codes) goes through the hub's posting route (``journal_entry.post``, ordering key the customer, as
shipped) to the SAP sandbox (in this process, its own thread and event loop, TLS on loopback). Every HTTP
request the hub makes to SAP is counted on the connectors (OData requests, CSRF fetches and $metadata
included; SOAP messages). Three runs, one line each:

- ``new customers``: none of the customers is in SAP yet; their partners are created in the run.
- ``known customers, fresh store``: the same customers, now in SAP, new invoices, a new store (another hub,
  or a store restored from an old backup): partners are found by search key, none created.
- ``one entry per message``: as the first run with ``soap.bulk_size: 1`` (how entries were posted before
  bulk messages), for comparison.

Goal (issue 21): <= 0.1 SAP calls per posted invoice in a backfill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit" / "sap_adapter")]

import doubles  # noqa: E402
import sap_factories as f  # noqa: E402

from lead2cash.hub import Hub  # noqa: E402
from lead2cash.sandbox.sap import SapSandbox  # noqa: E402
from lead2cash.sandbox.server import SandboxCluster  # noqa: E402


def _config(tmp: Path, cluster: SandboxCluster, concurrency: int, bulk_size: int) -> Path:
    sap = dict(cluster.hub_config()["sap"])
    sap["soap"] = {**sap.get("soap", {}), "bulk_size": bulk_size}
    route = {
        "name": "invoices-to-sap",
        "source": {"system": "mem", "object": "invoices", "trigger": {"type": "poll", "interval": "1s"}},
        "filter": "status == 'finalized'",
        "mapping": {"adapter": "canonical", "entity": "Invoice"},
        "target": {"system": "s4", "action": "journal_entry.post"},
        "idempotency_key": "invoice:{id}",
        "ordering_key": "{customer.id}",
        "batch_size": 1000,
        "concurrency": concurrency,
        "retry": {"attempts": 12, "initial_backoff": "50ms", "max_backoff": "2s", "jitter": "50ms"},
    }
    config = {
        "state": {"url": f"sqlite:///{tmp / 'state.db'}"},
        "logging": {"level": "WARNING"},
        "systems": {"mem": {"type": "python", "factory": "doubles:memory_system"}, "s4": sap},
        "routes": [route],
    }
    path = tmp / "sap-posting.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def _invoices(count: int, customers: int, prefix: str) -> list[dict[str, Any]]:
    out = []
    for n in range(1, count + 1):
        c = n % customers
        invoice = f.invoice(n, "EUR" if c % 2 else "USD", customer_n=c, number_prefix=prefix)
        out.append(invoice.model_dump(mode="json"))
    return out


def run(
    label: str, cluster: SandboxCluster, invoices: list[dict[str, Any]], concurrency: int, bulk_size: int
) -> dict[str, Any]:
    doubles.REGISTRY.clear()
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub.from_files([_config(Path(tmp), cluster, concurrency, bulk_size)], configure_logs=True)
        system = hub.routes["invoices-to-sap"].target.system  # type: ignore[attr-defined]
        doubles.REGISTRY["mem"].records.extend(invoices)
        started = time.perf_counter()
        try:
            assert asyncio.run(hub.run_until_idle(timeout=1800)), "the hub did not become idle"
            seconds = time.perf_counter() - started
            posted = sum(1 for i in invoices if hub.store.xref_get("Invoice", i["id"], "sap"))
            dead = hub.store.dlq_count()
        finally:
            hub.close()
    soap, odata = system.soap.calls, system.odata.calls
    result = {
        "run": label,
        "invoices": len(invoices),
        "posted": posted,
        "dead_letters": dead,
        "sap_calls": soap + odata,
        "soap_messages": soap,
        "odata_requests": odata,
        "partner_reads": system.partners.reads,
        "entries_per_message": posted / soap if soap else 0.0,
        "calls_per_invoice": (soap + odata) / posted if posted else float("inf"),
        "seconds": seconds,
    }
    print(
        f"  {label:<30} {posted:>5}/{len(invoices)} posted, {dead} dead letters; SAP calls {soap + odata} "
        f"({soap} SOAP messages, {odata} OData requests, of them {system.partners.reads} partner reads): "
        f"{result['calls_per_invoice']:.3f} calls per posted invoice, "
        f"{result['entries_per_message']:.1f} entries per message; {seconds:.1f} s, "
        f"{posted / seconds:.0f} invoices/s",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100, help="the posting route's concurrency")
    parser.add_argument("--bulk-size", type=int, default=100, help="soap.bulk_size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        cluster = SandboxCluster(systems=[SapSandbox(seed=21, seed_size=5)], state_dir=Path(state))
        cluster.start_in_thread()
        try:
            print(
                f"SAP posting backfill: {args.invoices} invoices of {args.customers} customers, route "
                f"concurrency {args.concurrency}, soap.bulk_size {args.bulk_size}"
            )
            results = [
                run("new customers", cluster, _invoices(args.invoices, args.customers, "BFA"),
                    args.concurrency, args.bulk_size),
                run("known customers, fresh store", cluster, _invoices(args.invoices, args.customers, "BFB"),
                    args.concurrency, args.bulk_size),
            ]  # fmt: skip
            # The same customers' partners exist now; a fresh sandbox makes them new again for the baseline.
            cluster.stop()
            cluster = SandboxCluster(systems=[SapSandbox(seed=21, seed_size=5)], state_dir=Path(state) / "b")
            cluster.start_in_thread()
            results.append(
                run("one entry per message", cluster, _invoices(args.invoices, args.customers, "BFC"),
                    args.concurrency, 1)
            )  # fmt: skip
        finally:
            cluster.stop()
    first = results[0]
    verdict = (
        "met" if first["calls_per_invoice"] <= 0.1 and results[1]["calls_per_invoice"] <= 0.1 else "MISSED"
    )
    print(
        f"goal <= 0.1 SAP calls per posted invoice: {verdict} "
        f"(new customers {first['calls_per_invoice']:.3f}, known {results[1]['calls_per_invoice']:.3f}; "
        f"one entry per message {results[2]['calls_per_invoice']:.3f})"
    )


if __name__ == "__main__":
    main()
