"""The near-real-time billing summary against the sandboxes, over real sockets.

A randomized run: usage records on NATS JetStream (into the Lago sandbox by the hub), one-off invoices with
taxes issued in Lago, payments succeeding, failing and succeeding again, an invoice voided. The hub
(``lead2cash run`` in a child process) keeps each customer's summary from what it delivers and writes it
to the Salesforce sandbox's Account. Then:

- ``lead2cash summary rebuild --check`` recomputes every summary from Lago and finds no difference;
- the admin API serves the summary, exact to the minor unit;
- each Account carries the summary's figures in its custom fields, written in collections, at most once
  per interval per customer;
- a summary altered in the store is caught by the check (exit 1, the customer listed).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_process import HubProcess
from sqlalchemy import update
from waiting import wait_until

from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.salesforce import SalesforceSandbox
from lead2cash.store import Store
from lead2cash.store.schema import billing_summaries
from lead2cash.testing import summary_scenario
from lead2cash.testing import usage_scenario as scenario
from lead2cash.testing.nats_server import NatsServer

CUSTOMERS = 6
RECORDS = int(os.environ.get("LEAD2CASH_SUMMARY_RECORDS", "600"))
INTERVAL = 1.0  # Salesforce write interval per customer


def rebuild_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", "summary", "rebuild", "--check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def random_billing(lago: httpx.Client, rng: random.Random) -> int:
    """One-off invoices (taxed) and their payments, in random order: succeeded, failed, succeeded after
    failing; one voided. Returns the number of invoices issued."""
    issued: list[str] = []
    for i in range(CUSTOMERS * 2):
        customer = f"usage-cust-{rng.randrange(CUSTOMERS)}"
        fees = [
            {"add_on_code": "SETUP", "units": str(rng.randint(1, 3)), "tax_codes": ["VAT19"]},
            {"add_on_code": "TRAINING", "unit_amount_cents": rng.randint(1, 99999)},
        ]
        r = lago.post("/api/v1/invoices", json={"invoice": {"external_customer_id": customer, "currency": "EUR",
                      "fees": fees[: rng.randint(1, 2)]}})  # fmt: skip
        r.raise_for_status()
        issued.append(r.json()["invoice"]["lago_id"])
        if i % 3 == 0:
            time.sleep(0.3)  # some invoices are seen before their payment, some after
    for lago_id in issued:
        for status in rng.choice(
            [[], ["succeeded"], ["failed"], ["failed", "succeeded"], ["succeeded", "failed"]]
        ):
            lago.put(
                f"/api/v1/invoices/{lago_id}", json={"invoice": {"payment_status": status}}
            ).raise_for_status()
    lago.post(f"/api/v1/invoices/{issued[-1]}/void").raise_for_status()
    return len(issued)


@pytest.mark.slow
def test_incremental_summary_equals_the_batch_recompute_and_reaches_salesforce(
    tmp_path: Path, nats_server: NatsServer, start_sandboxes: Any
) -> None:
    lago_sandbox = LagoSandbox(seed=4, seed_size=0)
    sf_sandbox = SalesforceSandbox(seed=4, seed_size=0)
    cluster = start_sandboxes(lago_sandbox, sf_sandbox)
    systems = cluster.hub_config()
    verify = ssl.create_default_context(cafile=str(cluster.ca_bundle))
    lago = httpx.Client(
        base_url=cluster.base_url("lago"),
        verify=verify,
        headers={"Authorization": f"Bearer {lago_sandbox.api_key}"},
        timeout=30,
    )
    period = scenario.set_up_lago(lago, CUSTOMERS)
    lago_sandbox.store.add_tax("VAT19", "VAT", Decimal("19"))
    lago_sandbox.store.add_add_on("SETUP", "Setup", 15000, "EUR")
    lago_sandbox.store.add_add_on("TRAINING", "Training", 50000, "EUR")
    accounts = {}
    for i in range(CUSTOMERS):
        key = f"usage-cust-{i}"
        accounts[key] = sf_sandbox.store.create(
            "Account", {"Name": f"Customer {i}", "Lead2Cash_Key__c": key}, datetime.now(UTC)
        )

    rng = random.Random(int(os.environ.get("LEAD2CASH_SUMMARY_SEED", "20")))
    records = scenario.make_records(RECORDS, CUSTOMERS, period, seed=rng.randrange(1000), bad=False)
    asyncio.run(scenario.publish(nats_server.url, records.messages[: RECORDS // 2]))

    port = summary_scenario.free_port()
    config = tmp_path / "summary.yaml"
    state = f"sqlite:///{tmp_path / 'hub.db'}"
    config.write_text(
        json.dumps(
            summary_scenario.hub_config(state, nats_server.url, systems, tmp_path / "out", port, INTERVAL)
        )
    )
    hub = HubProcess(config, tmp_path / "hub.log")
    # Every write of an Account, as the Salesforce sandbox stores it (sampled every 20 ms).
    writes: dict[str, list[float]] = {key: [] for key in accounts}
    sampling = threading.Event()

    def sample() -> None:
        last: dict[str, object] = {}
        while not sampling.is_set():
            for key, account_id in accounts.items():
                stamp = (sf_sandbox.store.get(account_id) or {}).get("Billing_Summary_Updated__c")
                if stamp is not None and stamp != last.get(key):
                    writes[key].append(time.monotonic())
                    last[key] = stamp
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        hub.start()
        issued = random_billing(lago, rng)
        asyncio.run(scenario.publish(nats_server.url, records.messages[RECORDS // 2 :]))
        wait_until(
            lambda: len(lago_sandbox.store.usage.events) >= RECORDS, 240, what="every usage event in Lago"
        )
        admin = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {summary_scenario.ADMIN_TOKEN}"},
            timeout=10,
        )

        def settled() -> bool:
            # Every customer's summary shows its usage as Lago counts it, and the invoices' last states.
            for i, sub in enumerate(scenario.subscription_ids(CUSTOMERS)):
                r = admin.get(f"/admin/customers/usage-cust-{i}/billing-summary")
                if r.status_code != 200:
                    return False
                usage = sum(scenario.expected_cents(records, sub).values())
                if r.json()["summaries"][0]["minor_units"]["usage_charges"] != usage:
                    return False
            return True

        wait_until(settled, 120, step=0.3, what="every summary current")
        out = tmp_path / "out" / "invoices.jsonl"
        wait_until(
            lambda: out.exists() and len(out.read_text().splitlines()) >= issued,
            60,
            what="the invoices' states",
        )
        time.sleep(3)  # the last payment states and the Salesforce writes settle
        assert (
            admin.get(
                "/admin/customers/usage-cust-0/billing-summary", headers={"Authorization": "x"}
            ).status_code
            == 401
        )
        assert admin.get("/admin/customers/nobody/billing-summary").status_code == 404
        served = {
            i: admin.get(f"/admin/customers/usage-cust-{i}/billing-summary").json() for i in range(CUSTOMERS)
        }

        def on_accounts() -> bool:
            for i, body in served.items():
                s = body["summaries"][0]
                account = sf_sandbox.store.get(accounts[f"usage-cust-{i}"]) or {}
                if (
                    account.get("Billing_Usage_Charges__c") != Decimal(s["amounts"]["usage_charges"])
                    or account.get("Billing_Amount_Due__c") != Decimal(s["amounts"]["amount_due"])
                    or account.get("Billing_Payments_Received__c")
                    != Decimal(s["amounts"]["payments_received"])
                    or account.get("Billing_Last_Invoice_Number__c") != s["last_invoice_number"]
                    or str(account.get("Billing_Next_Bill_Date__c")) != s["next_bill_date"]
                ):
                    return False
            return True

        wait_until(on_accounts, 30, step=0.3, what="every Account showing its summary")
        # Exact money: the served figures in minor units and as decimal strings.
        for body in served.values():
            s = body["summaries"][0]
            assert (s["currency"], s["period_start"]) == ("EUR", period.isoformat())
            assert Decimal(s["amounts"]["amount_due"]) == Decimal(s["minor_units"]["amount_due"]) / 100
        assert any(b["summaries"][0]["last_invoice_number"] for b in served.values())
        assert any(b["summaries"][0]["minor_units"]["payments_received"] for b in served.values())

        # The period ends: Lago bills the usage; every summary moves to the next period.
        next_month = (period.replace(day=28) + timedelta(days=4)).replace(day=1)
        to = f"{next_month + timedelta(days=1)}T00:00:00Z"
        lago.post("/__sandbox/lago/clock", json={"to": to}).raise_for_status()

        def rolled() -> bool:
            for i in range(CUSTOMERS):
                s = admin.get(f"/admin/customers/usage-cust-{i}/billing-summary").json()["summaries"][0]
                if s["period_start"] != next_month.isoformat() or s["minor_units"]["usage_charges"] != 0:
                    return False
            return True

        wait_until(rolled, 60, step=0.3, what="every summary in the next period")
        time.sleep(2)
    finally:
        sampling.set()
        hub.stop()
    # Coalesced: however busy a customer, its Account is written at most once per interval.
    gaps = [b - a for stamps in writes.values() for a, b in itertools.pairwise(stamps)]
    assert sum(len(w) for w in writes.values()) > CUSTOMERS and gaps
    assert min(gaps) >= INTERVAL * 0.9, sorted(gaps)[:5]

    done = rebuild_check(config)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 customer(s) differ" in done.stdout

    # A wrong incremental summary is caught, and its customer named.
    store = Store(state)
    with store.engine.begin() as conn:
        row = conn.execute(
            billing_summaries.select().where(billing_summaries.c.customer == "usage-cust-2")
        ).one()
        doc = json.loads(row.doc)
        doc["usage_charges"] += 1
        conn.execute(
            update(billing_summaries)
            .where(billing_summaries.c.customer == "usage-cust-2")
            .values(doc=json.dumps(doc, sort_keys=True))
        )
    store.close()
    done = rebuild_check(config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "usage-cust-2 EUR" in done.stdout and "usage_charges" in done.stdout
