"""A worker that stalls past its lease (a GC pause, a VM stall, SIGSTOP) while another worker takes its
message over must not deliver that message again when it resumes: ownership is re-checked against the
message's fencing token right before the target is called, and its outcome is not recorded."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from pathlib import Path

from lead2cash.demo import sample_orders
from lead2cash.hub import Hub
from lead2cash.routes.route import Outcome

CONFIG = """
state: {{url: "{url}", lease: 1s, worker_id: "{worker}"}}
logging: {{level: ERROR}}
systems:
  files: {{type: file, directory: "{files}"}}
routes:
  - name: orders
    source: {{system: files, object: inbox}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: files, action: append, options: {{object: outbox}}}}
    idempotency_key: "order:{{id}}"
"""


def _hub(tmp_path: Path, store_url: str, worker: str) -> Hub:
    path = tmp_path / f"{worker}.yaml"
    path.write_text(CONFIG.format(url=store_url, worker=worker, files=tmp_path / "files"))
    return Hub.from_files([path], configure_logs=False)


def test_a_stalled_worker_does_not_deliver_what_another_took_over(tmp_path: Path, store_url: str) -> None:
    files = tmp_path / "files"
    files.mkdir()
    order = sample_orders(1, seed=5)[0]
    (files / "inbox.jsonl").write_text(json.dumps(order) + "\n")
    hub_a, hub_b = _hub(tmp_path, store_url, "A"), _hub(tmp_path, store_url, "B")
    route_a = hub_a.routes["orders"]

    async def scenario() -> list[Outcome]:
        assert await hub_a.ingest("orders") == 1
        in_flight: dict[asyncio.Task[Outcome], int] = {}
        started = route_a._claim_and_start("A", 10, in_flight)
        if inspect.isawaitable(started):
            await started
        assert len(in_flight) == 1  # claimed, marked sent, its delivery task created but not yet run
        # A stalls with the loop blocked, as a stopped process would, until its lease has run out...
        time.sleep(route_a.lease_s * 2.5)
        # ...while B, on a loop of its own as another process would, takes the message over and delivers.
        taken = threading.Thread(target=lambda: asyncio.run(hub_b.routes["orders"].deliver_once("B")))
        taken.start()
        taken.join()
        return list(await asyncio.gather(*in_flight))  # A resumes where it stopped

    outcomes = asyncio.run(scenario())
    route_a._unrecorded.extend(outcomes)
    route_a._flush()

    lines = [json.loads(line) for line in (files / "outbox.jsonl").read_text().splitlines()]
    keys = [line["key"] for line in lines]
    assert keys == [f"order:{order['id']}"], f"delivered {len(keys)} times: {keys}"
    [outcome] = outcomes
    assert outcome.status == "superseded"
    [message] = hub_a.store.messages_for("orders")
    assert message.status == "delivered" and message.target_ref == "line:1"
    hub_a.close()
    hub_b.close()
