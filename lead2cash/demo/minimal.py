"""``make demo`` until the lead-to-cash flow ships: the smallest real route, end to end.

Orders (canonical JSON, some deliberately malformed) are written to a JSON Lines inbox; the hub polls it,
maps and validates each record, writes it to the state store with the checkpoint, and delivers it to an
outbox through the effect ledger. The summary proves nothing was lost or duplicated and totals agree.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lead2cash.canonical_model import Money, Order, sum_money

CONFIG = """\
# The smallest real route: JSON Lines inbox -> router (ledger, retries, dead letters) -> JSON Lines outbox.
state:
  url: sqlite:///state.db
logging:
  level: WARNING
systems:
  files:
    type: file
    directory: data
routes:
  - name: orders-to-outbox
    source: {system: files, object: inbox, trigger: {type: poll, interval: 1s}}
    filter: "status == 'won'"
    mapping: {adapter: canonical, entity: Order}
    target: {system: files, action: append, options: {object: outbox}}
    idempotency_key: "order:{id}:v{version}"
    ordering_key: "{customer.id}"
"""

PRODUCTS = [
    ("PLAT-BASE", "Platform subscription", "recurring", "499.00"),
    ("ONB-STD", "Onboarding", "one_time", "2500.00"),
    ("SEAT-ADD", "Additional seat", "recurring", "29.90"),
    ("TRN-DAY", "Training day", "one_time", "1200.00"),
]
CURRENCIES = {
    "USD": ("US", Decimal(1)),
    "EUR": ("DE", Decimal("0.92")),
    "JPY": ("JP", Decimal(150)),
    "KWD": ("KW", Decimal("0.307")),
}


def sample_orders(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        currency = rng.choice(sorted(CURRENCIES))
        country, rate = CURRENCIES[currency]
        lines = []
        for j, (code, name, kind, usd) in enumerate(rng.sample(PRODUCTS, rng.randint(1, 3))):
            price = Money.of(Decimal(usd) * rate, currency)
            line: dict[str, object] = {
                "id": f"ORD-{i:05d}-{j}",
                "product_code": code,
                "product_name": name,
                "kind": kind,
                "quantity": str(rng.randint(1, 20)),
                "unit_price": price.model_dump(mode="json"),
            }
            if kind == "recurring":
                line["billing_period"] = "monthly"
            lines.append(line)
        customer = {
            "id": f"CUST-{i % 97:03d}",
            "name": f"Customer {i % 97}",
            "currency": currency,
            "billing_address": {"line1": f"{i} Main Street", "country": country},
        }
        out.append(
            {
                "id": f"ORD-{i:05d}",
                "customer": customer,
                "currency": currency,
                "order_date": "2026-11-20",
                "lines": lines,
                "status": "won",
            }
        )
    return out


def run_minimal_demo(workdir: Path, records: int, console: Console) -> int:
    from lead2cash.hub import Hub

    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "data").mkdir(parents=True)
    (workdir / "demo.yaml").write_text(CONFIG)
    orders = sample_orders(records)
    with (workdir / "data" / "inbox.jsonl").open("w") as fh:
        for order in orders:
            fh.write(json.dumps(order) + "\n")
        fh.write(
            '{"id": "ORD-BROKEN-1", "status": "won", "currency": "USD", "lines": []}\n'
        )  # no customer, no lines
        fh.write("{not json at all\n")
        fh.write(json.dumps(orders[0]) + "\n")  # a duplicate delivery of the first order

    hub = Hub.from_files([workdir / "demo.yaml"])
    console.print(
        f"[bold]lead2cash demo[/bold]: {records} orders + 2 malformed + 1 duplicate -> route orders-to-outbox"
    )
    with console.status("routing..."):
        idle = asyncio.run(hub.run_until_idle(timeout=120))
    delivered = [json.loads(line) for line in (workdir / "data" / "outbox.jsonl").read_text().splitlines()]
    keys = Counter(d["key"] for d in delivered)
    dead = hub.store.dlq_list(status="open")

    def totals(items: list[dict[str, object]]) -> dict[str, Money]:
        by_ccy: dict[str, list[Money]] = {}
        for o in items:
            order = Order.model_validate(o)
            for line in order.lines:
                by_ccy.setdefault(order.currency, []).append(line.net_amount)
        return {c: sum_money(v, c) for c, v in by_ccy.items()}

    sent = totals(orders)
    received = totals([d["entity"] for d in delivered])
    table = Table("currency", "inbox total", "outbox total", "agree")
    for ccy in sorted(sent):
        table.add_row(
            ccy,
            str(sent[ccy].amount),
            str(received.get(ccy, Money.zero(ccy)).amount),
            "yes" if sent[ccy] == received.get(ccy) else "NO",
        )
    console.print(table)
    summary = Table("orders", "delivered", "duplicates", "dead letters", "idle")
    summary.add_row(
        str(records), str(len(keys)), str(sum(c - 1 for c in keys.values())), str(len(dead)), str(idle)
    )
    console.print(summary)
    for d in dead:
        console.print(f"  dead letter {d.id}: {d.error_message[:140]}", markup=False, highlight=False)
    console.print(f"state: {workdir / 'state.db'}; try: lead2cash dlq list -c {workdir / 'demo.yaml'}")
    hub.close()
    ok = (
        idle
        and len(keys) == records
        and all(c == 1 for c in keys.values())
        and len(dead) == 2
        and sent == received
    )
    console.print("[green]demo ok[/green]" if ok else "[red]demo FAILED[/red]")
    return 0 if ok else 1
