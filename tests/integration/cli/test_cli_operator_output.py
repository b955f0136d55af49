"""The operator's commands print what one must copy whole, payloads as JSON, errors for what is not there,
and `run --until-idle` says what it did and fails when a route is halted with work pending."""

from __future__ import annotations

import json
import re
import socket
from decimal import Decimal
from pathlib import Path

import doubles
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.demo import sample_orders
from lead2cash.hub import Hub

CONFIG = """
state: {{url: "{url}"}}
logging: {{level: ERROR}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
  files: {{type: file, directory: "{files}"}}
routes:
  - name: a-route-with-a-rather-long-name-for-billing-orders
    source: {{system: mem, object: orders}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}:with-a-long-suffix-that-a-narrow-terminal-would-cut"
    retry: {{attempts: 1}}
    on_failure: {on_failure}
  - name: from-file
    source: {{system: files, object: inbox}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: files, action: append, options: {{object: outbox}}}}
    idempotency_key: "order:{{id}}"
"""
ROUTE = "a-route-with-a-rather-long-name-for-billing-orders"


def _column(table: str, index: int) -> str:
    """A rich table's column read top to bottom, its folded lines joined."""
    cells = [re.split(r"[│┃]", line)[1:-1] for line in table.splitlines() if "│" in line]
    return "".join(row[index].strip() for row in cells if len(row) > index)


def _setup(tmp_path: Path, store_url: str, on_failure: str = "dead-letter") -> tuple[Path, list[dict]]:
    doubles.REGISTRY.clear()
    path = tmp_path / "ops.yaml"
    path.write_text(CONFIG.format(url=store_url, files=tmp_path / "files", on_failure=on_failure))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(3, seed=4)
    system.records.extend([*orders, {"id": "junk", "amount": 12.50}])
    system.behaviour.permanent_keys = {
        f"order:{orders[1]['id']}:v1:with-a-long-suffix-that-a-narrow-terminal-would-cut"
    }
    hub.close()
    return path, orders


def test_dlq_list_and_show_print_ids_keys_and_payloads_whole(tmp_path: Path, store_url: str) -> None:
    path, orders = _setup(tmp_path, store_url)
    runner = CliRunner()
    ran = runner.invoke(app, ["run", str(path), "--until-idle", "--timeout", "30"])
    assert ran.exit_code == 0, ran.output
    assert f"{ROUTE}: read 3 (3 new), delivered 2, dead-lettered 2, pending 0" in ran.output

    listed = runner.invoke(app, ["dlq", "list", "-c", str(path)], terminal_width=80)
    assert listed.exit_code == 0, listed.output
    assert "…" not in listed.output
    # Folded, never cut: each column, read down, holds the values whole.
    key = f"order:{orders[1]['id']}:v1:with-a-long-suffix-that-a-narrow-terminal-would-cut"
    assert key in _column(listed.output, 5) and ROUTE in _column(listed.output, 1)

    as_json = runner.invoke(app, ["dlq", "list", "-c", str(path), "--json"])
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert {r["stage"] for r in rows} == {"mapping", "delivery"}
    assert key in {r["key"] for r in rows}
    assert all("original_payload" not in r for r in rows)

    mapping = next(r for r in rows if r["stage"] == "mapping")
    shown = runner.invoke(app, ["dlq", "show", "-c", str(path), str(mapping["id"])])
    record = json.loads(shown.output, parse_float=Decimal)
    # An object, not a JSON string inside the JSON; the amount digit for digit.
    assert record["original_payload"] == {"id": "junk", "amount": Decimal("12.5")}
    assert '"amount": 12.5' in shown.output
    delivery = next(r for r in rows if r["stage"] == "delivery")
    shown = json.loads(runner.invoke(app, ["dlq", "show", "-c", str(path), str(delivery["id"])]).output)
    assert shown["canonical_payload"]["id"] == orders[1]["id"]
    assert isinstance(shown["original_payload"], dict) and shown["error_class"] == "permanent"


def test_checkpoint_show_and_set_refuse_what_is_not_there_or_malformed(
    tmp_path: Path, store_url: str
) -> None:
    path, _ = _setup(tmp_path, store_url)
    runner = CliRunner()
    source = f"{ROUTE}:mem/orders"
    assert runner.invoke(app, ["run", str(path), "--until-idle"]).exit_code == 0

    unknown = runner.invoke(app, ["checkpoint", "show", "-c", str(path), "nope"])
    assert unknown.exit_code == 1 and "unknown source 'nope'" in unknown.output and source in unknown.output
    everything = json.loads(runner.invoke(app, ["checkpoint", "show", "-c", str(path), "--json"]).output)
    assert everything == {source: "4", "from-file:files/inbox": "0"}
    wide = runner.invoke(app, ["checkpoint", "show", "-c", str(path)], terminal_width=60)
    assert "…" not in wide.output and source in _column(wide.output, 0)

    bad = runner.invoke(
        app, ["checkpoint", "set", "-c", str(path), "from-file:files/inbox", "ten", "--reason", "x"]
    )
    assert bad.exit_code == 1 and "not a line offset: 'ten'" in bad.output
    good = runner.invoke(
        app, ["checkpoint", "set", "-c", str(path), "from-file:files/inbox", "10", "--reason", "skip"]
    )
    assert good.exit_code == 0, good.output
    one = json.loads(
        runner.invoke(app, ["checkpoint", "show", "-c", str(path), "from-file:files/inbox", "--json"]).output
    )
    assert one["value"] == "10" and one["history"][0]["reason"] == "skip"


def test_run_until_idle_fails_when_a_route_is_halted_with_work_pending(
    tmp_path: Path, store_url: str
) -> None:
    path, _ = _setup(tmp_path, store_url, on_failure="halt-route")
    ran = CliRunner().invoke(app, ["run", str(path), "--until-idle", "--timeout", "30"])
    assert ran.exit_code == 3, ran.output
    assert "HALTED" in ran.output and f"halted with messages pending: {ROUTE}" in ran.output
    assert "route resume" in ran.output


UNREACHABLE = """
state: {{url: "sqlite:///{db}"}}
logging: {{level: ERROR}}
systems:
  crm:
    type: salesforce
    login_url: https://127.0.0.1:{port}
    auth: {{grant_type: client_credentials, client_id: cid, client_secret: s3cret}}
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: won
    source: {{system: crm, object: Opportunity}}
    mapping: {{adapter: salesforce.opportunity, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
"""


def test_run_until_idle_fails_when_a_source_cannot_be_read(tmp_path: Path) -> None:
    doubles.REGISTRY.clear()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "unreachable.yaml"
    path.write_text(UNREACHABLE.format(db=tmp_path / "s.db", port=port))
    ran = CliRunner().invoke(app, ["run", str(path), "--until-idle", "--timeout", "30"])
    assert ran.exit_code == 4, ran.output
    assert "won: read 0 (0 new), delivered 0, dead-lettered 0, pending 0, SOURCE NOT READ:" in ran.output
    assert "source(s) not read: won" in ran.output and "idle" not in ran.output.splitlines()
    assert "s3cret" not in ran.output
