"""Operators' commands on a real store: checkpoints and dead letters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import doubles
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.demo import sample_orders
from lead2cash.hub import Hub

CONFIG = """
state: {{url: "sqlite:///{db}"}}
logging: {{level: WARNING}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: ops
    source: {{system: mem, object: orders}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
    retry: {{attempts: 1}}
"""


def test_checkpoint_and_dead_letter_commands(tmp_path: Path) -> None:
    doubles.REGISTRY.clear()
    path = tmp_path / "ops.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "s.db"))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    orders = sample_orders(4, seed=8)
    system.records.extend([*orders, {"id": "junk"}])
    system.behaviour.permanent_keys = {f"order:{orders[1]['id']}:v1"}
    asyncio.run(hub.run_until_idle(timeout=30))
    hub.close()
    runner = CliRunner()

    shown = runner.invoke(app, ["checkpoint", "show", "-c", str(path), "ops:mem/orders"])
    assert shown.exit_code == 0 and "5" in shown.output
    moved = runner.invoke(
        app, ["checkpoint", "set", "-c", str(path), "ops:mem/orders", "2", "--reason", "re-read after fix"]
    )
    assert moved.exit_code == 0, moved.output
    history = runner.invoke(app, ["checkpoint", "show", "-c", str(path), "ops:mem/orders"])
    assert "re-read after fix" in history.output
    assert (
        runner.invoke(app, ["checkpoint", "set", "-c", str(path), "nope", "1", "--reason", "x"]).exit_code
        == 1
    )

    listed = runner.invoke(app, ["dlq", "list", "-c", str(path)])
    assert listed.exit_code == 0 and "mapping" in listed.output and "delivery" in listed.output
    check = Hub.from_files([path], configure_logs=False)
    dead = {d.stage: d for d in check.store.dlq_list("ops")}
    check.close()
    show = runner.invoke(app, ["dlq", "show", "-c", str(path), str(dead["delivery"].id)])
    assert json.loads(show.output)["error_class"] == "permanent"
    discard = runner.invoke(app, ["dlq", "discard", "-c", str(path), str(dead["mapping"].id)])
    assert discard.exit_code == 0
    again = runner.invoke(app, ["dlq", "discard", "-c", str(path), str(dead["mapping"].id)])
    assert again.exit_code == 1 and "not open" in again.output
    # Re-reading from checkpoint 2 re-offers orders 2..4; the idempotent consumer adds nothing new.
    hub = Hub.from_files([path], configure_logs=False)
    asyncio.run(hub.run_until_idle(timeout=30))
    assert hub.store.count_messages("ops") == 4
    assert len(system.targets["bill"].effects) == 3
    hub.close()


def test_replay_of_a_mapping_dead_letter_says_when_the_source_cannot_reread(tmp_path: Path) -> None:
    """An in-memory (or JSON Lines) source cannot read one record again: its stored payload is replayed,
    and the command says so."""
    doubles.REGISTRY.clear()
    path = tmp_path / "ops.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "s.db"))
    hub = Hub.from_files([path], configure_logs=False)
    system = doubles.REGISTRY["mem"]
    [order] = sample_orders(1, seed=9)
    broken = {**order, "currency": "XXZ"}
    system.records.append(broken)
    asyncio.run(hub.run_until_idle(timeout=30))
    [dead] = hub.store.dlq_list("ops")
    hub.close()
    replayed = CliRunner().invoke(app, ["dlq", "replay", "-c", str(path), str(dead.id)])
    said = " ".join(replayed.output.split())
    assert "from its stored payload: mem/orders cannot re-read a record" in said
    assert replayed.exit_code == 1 and "fails mapping again" in said
