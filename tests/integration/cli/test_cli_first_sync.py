"""The operator's first runs on the shipped routes against the sandboxes, through the CLI: a first sync
that starts at "now" and bills no history, and `run --until-idle` saying what it did (the safety lag)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lead2cash.demo.environment import LeadToCash
from lead2cash.hub import Hub

SOURCE = "won-opportunity-to-billing:salesforce/Opportunity"


def _env(tmp_path: Path, store_url: str, **salesforce: Any) -> LeadToCash:
    env = LeadToCash(tmp_path / "l2c", seed=3, seed_size=60, store_url=store_url)
    env.hub.close()  # the CLI is the hub here
    config = json.loads(env.systems_file.read_text())
    config["systems"]["salesforce"].update(salesforce)
    env.systems_file.write_text(json.dumps(config))
    return env


def _cli(env: LeadToCash, *args: str) -> Any:
    files = [str(p) for p in env.config_files]
    command, rest = list(args[:2]), list(args[2:])
    if command[0] == "run":
        return CliRunner().invoke(app_(), ["run", *files, *args[1:]])
    return CliRunner().invoke(app_(), [*command, *[x for f in files for x in ("-c", f)], *rest])


def app_() -> Any:
    from lead2cash.cli import app

    return app


def _billed_deals(env: LeadToCash) -> set[str]:
    hub = Hub.from_files(env.config_files, configure_logs=False)
    try:
        return {
            json.loads(m.payload)["id"]
            for m in hub.store.delivered_since("won-opportunity-to-billing", 0, 10_000)
        }
    finally:
        hub.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_first_sync_started_now_bills_no_history_not_even_at_the_sweep(
    tmp_path: Path, store_url: str
) -> None:
    # A sweep every second: without the start's floor, the first sweep would bill every deal ever won.
    env = _env(tmp_path, store_url, safety_lag="1s", sweep_interval="1s")
    try:
        history = set(env.close_won(4))
        time.sleep(1.5)
        started = _cli(env, "checkpoint", "start", SOURCE, "--reason", "go-live: no history")
        assert started.exit_code == 0, started.output
        assert SOURCE in started.output and '"floor"' in started.output
        # Started once: a second start would skip records, so it needs --force.
        again = _cli(env, "checkpoint", "start", SOURCE)
        assert again.exit_code == 1 and "--force" in again.output

        new = set(env.close_won(3))
        time.sleep(1.5)
        first = _cli(env, "run", "--until-idle", "--timeout", "120")
        assert first.exit_code == 0, first.output
        time.sleep(1.5)  # past the sweep interval: the next read sweeps
        second = _cli(env, "run", "--until-idle", "--timeout", "120")
        assert second.exit_code == 0, second.output
        billed = _billed_deals(env)
        assert billed == new, (billed & history, first.output)
        shown = _cli(env, "checkpoint", "show", SOURCE, "--json")
        assert json.loads(shown.output)["history"][-1]["reason"] == "go-live: no history"
    finally:
        env.close()


def test_a_first_sync_can_start_at_a_date(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", safety_lag="1s")
    try:
        bad = _cli(env, "checkpoint", "start", SOURCE, "--at", "last tuesday")
        assert bad.exit_code == 2 and "expected now, a date" in bad.output
        started = _cli(env, "checkpoint", "start", SOURCE, "--at", "2026-12-01")
        assert started.exit_code == 0, started.output
        value = json.loads(json.loads(_cli(env, "checkpoint", "show", SOURCE, "--json").output)["value"])
        assert value["ts"] == value["floor"] == "2026-12-01T00:00:00.000Z"
        # A typed cursor is checked before it is stored: a malformed one would fail every later read.
        for bad_value in ('{"ts": "yesterday", "id": "006000000000001"}', '{"ts": null, "id": "x"}', "{"):
            refused = _cli(env, "checkpoint", "set", SOURCE, bad_value, "--reason", "typo")
            assert refused.exit_code == 1 and "not a Salesforce cursor" in refused.output, refused.output
        moved = _cli(
            env,
            "checkpoint",
            "set",
            SOURCE,
            '{"ts": "2026-12-02T00:00:00Z", "id": "006000000000001"}',
            "--reason",
            "x",
        )
        assert moved.exit_code == 0, moved.output
        value = json.loads(json.loads(_cli(env, "checkpoint", "show", SOURCE, "--json").output)["value"])
        assert value["ts"] == "2026-12-02T00:00:00.000Z" and value["id"] == "006000000000001"
    finally:
        env.close()


@pytest.mark.timeout(120)
def test_run_until_idle_says_what_it_did_and_what_the_safety_lag_left(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", safety_lag="60s", sweep_interval=None)
    try:
        started = _cli(env, "checkpoint", "start", SOURCE)
        assert started.exit_code == 0, started.output
        env.close_won(2)
        ran = _cli(env, "run", "--until-idle", "--timeout", "60")
        assert ran.exit_code == 0, ran.output
        assert (
            "won-opportunity-to-billing: read 0 (0 new), delivered 0, dead-lettered 0, pending 0"
            in ran.output
        )
        assert (
            "won-opportunity-to-billing: 2 record(s) newer than the safety lag (60 s) were left for the next run"
            in ran.output
        )
        assert ran.output.rstrip().splitlines()[-1] != ""
    finally:
        env.close()
