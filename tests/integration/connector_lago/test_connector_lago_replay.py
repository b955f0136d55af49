"""Replaying a mapping dead letter of a Lago route reads the invoice again (GET /invoices/{lago_id}): the
invoice as Lago holds it now is mapped, not the event that was dead-lettered. Both store backends."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from lago_connector_env import LagoTestEnv, run_hub
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.hub import Hub


def _config(tmp_path: Path, store_url: str, system: dict[str, Any]) -> Path:
    path = tmp_path / "replay.yaml"
    path.write_text(
        f"""
state: {{url: "{store_url}"}}
logging: {{level: WARNING}}
systems:
  lago: {json.dumps(system)}
  files: {{type: file, directory: out}}
mappings:
  settled_statuses: {{succeeded: succeeded, failed: failed}}
routes:
  - name: settled
    source: {{system: lago, object: invoices, options: {{consumer: settled}}, trigger: {{type: poll, interval: 1h}}}}
    mapping: {{adapter: lago.payment, entity: Payment, value_maps: {{status: settled_statuses}}}}
    target: {{system: files, action: append, options: {{object: settled}}}}
    idempotency_key: "payment:{{id}}:v{{version}}"
"""
    )
    return path


def _outbox(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "out" / "settled.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_replay_maps_the_invoice_as_lago_holds_it_now(
    lago: LagoTestEnv, tmp_path: Path, store_url: str
) -> None:
    path = _config(tmp_path, store_url, lago.system_config())
    customer = lago.api.post("/customers", json={"customer": {"external_id": f"RPL-{uuid.uuid4().hex[:6]}",
                             "name": "Replay", "currency": "USD", "country": "US"}}).json()["customer"]  # fmt: skip
    fee = {"add_on_code": "TRN-DAY", "units": "1", "unit_amount_cents": 120000}
    invoice = lago.api.post("/invoices", json={"invoice": {"external_customer_id": customer["external_id"],
                            "currency": "USD", "fees": [fee]}}).json()["invoice"]  # fmt: skip
    hub = Hub.from_files([path], configure_logs=False)
    assert run_hub(hub, timeout=60)
    dead = [
        d
        for d in hub.store.dlq_list("settled")
        if json.loads(d.original_payload)["invoice"]["lago_id"] == invoice["lago_id"]
    ]
    assert len(dead) == 1 and "settled_statuses" in dead[0].error_message
    hub.close()

    # The payment arrives in Lago; the stale event still says "pending".
    lago.api.put(f"/invoices/{invoice['lago_id']}", json={"invoice": {"payment_status": "succeeded"}})
    replayed = CliRunner().invoke(app, ["dlq", "replay", "-c", str(path), str(dead[0].id)])
    assert replayed.exit_code == 0, replayed.output
    paid = [p for p in _outbox(tmp_path) if p["entity"]["invoice_ids"] == [invoice["lago_id"]]]
    assert [p["entity"]["status"] for p in paid] == ["succeeded"]
    assert "re-read from lago/settled" in " ".join(replayed.output.split())
    check = Hub.from_files([path], configure_logs=False)
    kept = check.store.dlq_get(dead[0].id)
    assert kept is not None and kept.status == "replayed"
    assert json.loads(kept.original_payload)["invoice"]["payment_status"] == "pending"  # the evidence
    check.close()
