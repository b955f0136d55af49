"""``lead2cash sandbox --write-systems FILE``: the systems file ``make demo`` writes, usable from anywhere."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_written_systems_file_is_the_demos_and_checks_from_any_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
    ports = {name: _free_port() for name in ("salesforce", "lago", "sap", "hub")}
    stale = tmp_path / "work" / ".state" / "sandbox" / "hub.db"
    stale.parent.mkdir(parents=True)
    stale.write_text("a hub state left by sandboxes that no longer exist")
    cmd = [sys.executable, "-m", "lead2cash.cli", "sandbox", "--write-systems", "systems.sandbox.yaml"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path / "work", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    written = tmp_path / "work" / "systems.sandbox.yaml"

    def written_config() -> dict[str, Any] | None:
        # The file exists before it is complete: wait until it parses as a whole systems file.
        if proc.poll() is not None:
            raise AssertionError(f"the sandboxes exited: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
        if not written.exists():
            return None
        loaded = YAML(typ="safe").load(written.read_text())
        return loaded if isinstance(loaded, dict) and "web" in loaded and "systems" in loaded else None

    try:
        config = wait_until(written_config, 60, step=0.1, what=f"{written} written")
        systems = config["systems"]
        assert set(systems) == {"salesforce", "lago", "sap", "hub"}
        assert systems["hub"] == {"type": "hub"}
        for name in ("salesforce", "lago", "sap"):
            assert Path(systems[name]["ca_bundle"]).is_absolute()
            assert Path(systems[name]["ca_bundle"]).is_file()
        assert systems["lago"]["plan_table"] == "lago_plans"
        assert systems["lago"]["addon_table"] == "lago_add_ons"
        assert systems["sap"]["revenue_accounts"] == "sap_revenue_accounts"
        assert systems["sap"]["tax_codes"] == "sap_tax_codes"
        assert systems["salesforce"]["login_url"] == f"https://127.0.0.1:{ports['salesforce']}"
        assert config["web"]["port"] == ports["hub"]
        # A fresh hub state, beside the sandboxes' CA: the stale one is gone.
        assert config["state"]["url"] == f"sqlite:///{stale.resolve()}"
        assert not stale.exists()
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "lead2cash.cli",
                "check",
                str(written),
                str(ROOT / "config" / "mappings.yaml"),
                str(ROOT / "config" / "lead-to-cash.yaml"),
            ],
            cwd=tmp_path,  # not where the file was written: every path in it must hold from here too
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "ok: 4 system(s), 4 route(s)" in check.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
