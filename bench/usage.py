"""Usage metering throughput, NATS JetStream -> Lago sandbox: the hub beside a minimal script, one run.

    .venv/bin/python bench/usage.py [--events 20000] [--kills 2] [--customers 20] [--summary]

Each side drains the same backlog: ``--events`` usage records (call detail records and API-call records,
alternately) published to a fresh JetStream stream on a private ``nats-server -js`` before it starts.
The Lago sandbox runs in this process (its own thread and event loop; TLS on loopback). Each side is
SIGKILLed ``--kills`` times while it works and started again at once; JetStream redelivers what was not
acknowledged, and Lago's dedupe by transaction_id must leave every event stored exactly once.

- hub: ``lead2cash run`` on two routes (``usage.cdr``, ``usage.api_call`` -> ``send_usage``), SQLite state:
  every record through the inbox, the effect ledger and the outcome, acknowledged after the inbox commit.
- anchor: the same adapters and Lago payload, no state: 4 workers each pull 100 -> POST /events/batch ->
  ack (the ceiling a stateless consumer reaches on this machine).

Printed per side: events/s (first publish read to the last event stored in Lago), CPU seconds of the
consumer process per 1,000 events (every incarnation, sampled just before each kill), 0 lost / 0 duplicated
by transaction id, and the events resent (redelivered after a kill, deduplicated by Lago).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from lead2cash.sandbox.lago import LagoSandbox
from lead2cash.sandbox.server import SandboxCluster
from lead2cash.testing import usage_scenario as scenario
from lead2cash.testing.nats_server import NatsServer

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- anchor
async def anchor_worker(nats_url: str, lago_url: str, api_key: str, ca: str, workers: int) -> None:
    """pull 100 -> map -> POST /events/batch (dropping what Lago refuses by index) -> ack. No state."""
    import nats
    from nats.js import api

    from lead2cash.adapters.usage import api_call, call_detail_record
    from lead2cash.systems.lago.usage import lago_event

    nc = await nats.connect(servers=[nats_url], max_reconnect_attempts=-1)
    js = nc.jetstream()
    config = api.ConsumerConfig(ack_wait=3, max_ack_pending=20_000, max_deliver=-1)
    client = httpx.AsyncClient(
        base_url=lago_url,
        verify=ssl.create_default_context(cafile=ca),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )

    async def work() -> None:
        # One pull subscription per worker, all bound to the same durable consumer.
        sub = await js.pull_subscribe("usage.>", durable="anchor", stream=scenario.STREAM, config=config)
        while True:
            try:
                msgs = await sub.fetch(100, timeout=1)
            except Exception:
                continue
            events = []
            for m in msgs:
                try:
                    record = json.loads(m.data)
                    adapt = call_detail_record if m.subject == "usage.cdr" else api_call
                    events.append(lago_event(adapt(record, {})))
                except Exception:  # a bad record is dropped: the anchor keeps no dead letters
                    continue
            while events:
                r = await client.post("/events/batch", json={"events": events})
                if r.status_code == 422:
                    bad = {int(k) for k in r.json().get("error_details", {}) if k.isdigit()}
                    events = [e for i, e in enumerate(events) if i not in bad]
                    continue
                if r.status_code == 429:
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                r.raise_for_status()
                break
            for m in msgs:
                await m.ack()

    await asyncio.gather(*(work() for _ in range(workers)))


# ---------------------------------------------------------------------------------------------- driver
class Side:
    def __init__(self, name: str, cmd: list[str], log: Path) -> None:
        self.name, self.cmd, self.log = name, cmd, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu = 0.0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=out, cwd=ROOT)

    def _sample(self) -> None:
        assert self.proc is not None
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
            self.cpu += t.user + t.system
        except psutil.Error:
            pass

    def kill(self) -> None:
        assert self.proc is not None
        self._sample()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._sample()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_side(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sandbox = LagoSandbox(seed=9, seed_size=0)
    cluster = SandboxCluster(systems=[sandbox], state_dir=work / f"sandbox-{name}")
    cluster.start_in_thread()
    try:
        return _run_side(name, args, work, sandbox, cluster)
    finally:
        cluster.stop()


def _run_side(
    name: str, args: argparse.Namespace, work: Path, sandbox: LagoSandbox, cluster: SandboxCluster
) -> dict[str, Any]:
    client = httpx.Client(
        base_url=cluster.base_url("lago"),
        verify=ssl.create_default_context(cafile=str(cluster.ca_bundle)),
        headers={"Authorization": f"Bearer {sandbox.api_key}"},
        timeout=30,
    )
    period = scenario.set_up_lago(client, args.customers)
    records = scenario.make_records(args.events, args.customers, period, seed=11, bad=False)
    nats = NatsServer(work / f"nats-{name}")
    nats.start()
    try:
        asyncio.run(scenario.publish(nats.url, records.messages))
        lago = cluster.hub_config()["lago"]
        if name == "hub":
            state = f"sqlite:///{work / 'hub.db'}"
            config = work / "usage.json"
            hub_cfg = scenario.hub_config(state, nats.url, lago)
            hub_cfg["logging"]["level"] = "WARNING"
            if args.summary:  # the billing summary kept from the same deliveries (docs/usage.md)
                hub_cfg["billing_summary"] = {"lago": "lago"}
            config.write_text(json.dumps(hub_cfg))
            cmd = [sys.executable, "-m", "lead2cash.cli", "run", str(config)]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--anchor-worker", nats.url,
                   lago["base_url"], lago["api_key"], lago["ca_bundle"]]  # fmt: skip
        side = Side(name, cmd, work / f"{name}.log")

        def stored() -> int:
            return len(sandbox.store.usage.events)  # cheap: polled often, in the sandbox's process

        kill_at = [args.events * (k + 1) // (args.kills + 1) for k in range(args.kills)]
        started = time.monotonic()
        side.start()
        deadline = started + args.timeout
        for mark in kill_at:
            while stored() < mark and time.monotonic() < deadline:
                time.sleep(0.01)
            side.kill()
            side.start()
        while stored() < args.events and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        time.sleep(4)  # redeliveries after the last kill land (and must be deduplicated)
        side.stop()
    finally:
        nats.stop()
    count, per_tx = scenario.lago_counts(sandbox)
    received = sum(sandbox.store.usage.received[t] for t in records.transaction_ids)
    return {
        "side": name,
        "events": count,
        "seconds": elapsed,
        "events_per_s": count / elapsed,
        "cpu_ms_per_1000": side.cpu / max(count, 1) * 1_000_000,
        "lost": len(records.transaction_ids - set(per_tx)),
        "duplicated": sum(1 for n in per_tx.values() if n > 1),
        "resent": received - count,
        "kills": args.kills,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--anchor-worker":
        nats_url, lago_url, api_key, ca = sys.argv[2:6]
        asyncio.run(anchor_worker(nats_url, lago_url, api_key, ca, workers=4))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--summary", action="store_true", help="the hub keeps the billing summary too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="l2c-usage-bench-") as tmp:
        results = [run_side(name, args, Path(tmp)) for name in ("anchor", "hub")]
    print(
        f"\nusage: {args.events} events, JetStream -> Lago sandbox, {args.kills} SIGKILLs per side, {os.cpu_count()} cores"
    )
    print(
        f"{'side':8} {'events/s':>10} {'CPU ms/1000 ev':>15} {'lost':>5} {'dup':>5} {'resent':>7} {'seconds':>8}"
    )
    for r in results:
        print(f"{r['side']:8} {r['events_per_s']:10.0f} {r['cpu_ms_per_1000']:15.0f} {r['lost']:5d} "
              f"{r['duplicated']:5d} {r['resent']:7d} {r['seconds']:8.1f}")  # fmt: skip
    anchor, hub = results
    print(f"hub / anchor: {hub['events_per_s'] / anchor['events_per_s']:.2f} of the anchor's events/s, "
          f"{hub['cpu_ms_per_1000'] / anchor['cpu_ms_per_1000']:.1f}x its CPU per event")  # fmt: skip


if __name__ == "__main__":
    main()
