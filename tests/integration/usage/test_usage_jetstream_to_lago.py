"""Usage from NATS JetStream into the Lago sandbox, exactly once, through a SIGKILL of the hub and an
outage of NATS.

Real processes and sockets: a private ``nats-server -js`` (its own port and store, so it can be stopped),
the Lago sandbox over HTTPS, the hub as ``lead2cash run`` in a child process. The records (call detail
records and API-call records, three of them bad) are published first; the hub is killed once it has sent
a part of them and started again; NATS is stopped and started while the restarted hub works. Then: every
valid record is in Lago exactly once (0 lost, 0 duplicated), each customer's current usage is the exact
amount the records make, and the three bad records are dead letters with their reasons, alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_process import HubProcess
from waiting import wait_until

from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.store import Store
from lead2cash.testing import usage_scenario as scenario
from lead2cash.testing.nats_server import NatsServer

RECORDS = int(os.environ.get("LEAD2CASH_USAGE_RECORDS", "3000"))
CUSTOMERS = 7


@pytest.mark.slow
def test_usage_reaches_lago_exactly_once_through_a_sigkill_and_a_nats_outage(
    tmp_path: Path, nats_server: NatsServer, start_sandboxes: Any
) -> None:
    sandbox = LagoSandbox(seed=3, seed_size=0)
    cluster = start_sandboxes(sandbox)
    lago_cfg = cluster.hub_config()["lago"]
    client = httpx.Client(
        base_url=cluster.base_url("lago"),
        verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        timeout=30,
    )
    period = scenario.set_up_lago(client, CUSTOMERS)
    records = scenario.make_records(RECORDS, CUSTOMERS, period, seed=5)
    asyncio.run(scenario.publish(nats_server.url, records.messages))

    state = f"sqlite:///{tmp_path / 'hub.db'}"
    config = tmp_path / "usage.yaml"
    config.write_text(json.dumps(scenario.hub_config(state, nats_server.url, lago_cfg)))
    hub = HubProcess(config, tmp_path / "hub.log")

    def stored() -> int:
        return len(sandbox.store.usage.events)  # cheap: polled often, in the sandbox's process

    try:
        hub.start()
        wait_until(lambda: stored() >= RECORDS // 4, 180, step=0.02, what="a quarter of the events in Lago")
        hub.kill()
        at_kill = stored()
        assert at_kill < RECORDS, "the kill landed after the run: nothing was in flight"
        hub.start()
        wait_until(
            lambda: stored() >= at_kill + RECORDS // 4, 180, step=0.05, what="progress after the restart"
        )
        # The restarted hub may progress from its inbox alone: the outage must hit a live connection.
        wait_until(lambda: nats_server.connections() >= 1, 60, what="the restarted hub connected to NATS")
        nats_server.stop()  # an outage mid-run: the hub waits, logs, and resumes
        time.sleep(2)
        nats_server.start()
        wait_until(lambda: stored() >= RECORDS, 300, what="every event in Lago")
        # What was redelivered after the kill or the outage has been taken in again by now.
        time.sleep(4)
    finally:
        hub.stop()

    count, per_tx = scenario.lago_counts(sandbox)
    lost = records.transaction_ids - set(per_tx)
    duplicated = {t for t, n in per_tx.items() if n > 1}
    unexpected = set(per_tx) - records.transaction_ids
    assert (len(lost), len(duplicated), len(unexpected)) == (0, 0, 0), (
        sorted(lost)[:5],
        sorted(unexpected)[:5],
    )
    assert count == RECORDS
    for tx in list(records.transaction_ids)[:200]:
        assert sandbox.effects.count("event.create", tx) == 1
    resent = sum(sandbox.store.usage.received[t] for t in records.transaction_ids) - RECORDS

    usage = scenario.usage_by_sub(client, CUSTOMERS)
    for sub in scenario.subscription_ids(CUSTOMERS):
        assert usage[sub] == scenario.expected_cents(records, sub), sub

    store = Store(state)
    try:
        reasons = [d.error_message for d in store.dlq_list()]
    finally:
        store.close()
    assert len(reasons) == 3, reasons
    for why in records.bad.values():
        assert sum(why in r for r in reasons) == 1, (why, reasons)
    log = (tmp_path / "hub.log").read_text()
    assert "NATS" in log and "reconnect" in log.lower(), "the outage was logged"
    print(f"\nusage: {RECORDS} events, kill at {at_kill}, {resent} resent (deduplicated by Lago)")
