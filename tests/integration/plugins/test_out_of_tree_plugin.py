"""A system type from a package outside lead2cash (tests/plugins/acme) is found through its entry point
and is then a system like the built-ins: in ``config schema`` and ``config docs``, checked by ``check``
(options typed, errors with file and line), and a route over it delivers a signed webhook exactly once.

The package is installed the way pip leaves it, a ``.dist-info`` with its ``entry_points.txt`` on the
path, with the entry point read from the plugin's own pyproject.toml. Everything runs in subprocesses:
the registry is read once per process, at start, as in production.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "acme"
SECRET = "acme-s3cret"

DRIVER = """
import asyncio, hashlib, hmac, json, sys
import httpx
from lead2cash.hub import Hub

async def main(config, port, secret):
    hub = Hub.from_files([config], configure_logs=False)
    await hub.start()
    out = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(100):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            body = json.dumps({"id": "C-1", "name": "Acme GmbH", "region": "eu"}).encode()
            sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-Acme-Signature": sig, "X-Acme-Delivery": "d-1"}
            out["first"] = (await client.post("/webhooks/acme", content=body, headers=headers)).status_code
            out["again"] = (await client.post("/webhooks/acme", content=body, headers=headers)).status_code
            forged = {"X-Acme-Signature": "0" * 64, "X-Acme-Delivery": "d-2"}
            out["forged"] = (await client.post("/webhooks/acme", content=body, headers=forged)).status_code
        for _ in range(200):
            if hub.store.count_messages("acme-orders", "delivered") >= 1:
                break
            await asyncio.sleep(0.05)
        out["delivered"] = hub.store.count_messages("acme-orders", "delivered")
    finally:
        await hub.stop()
        hub.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _install(site: Path) -> None:
    """What ``pip install tests/plugins/acme`` leaves behind, without a build: metadata naming the
    entry points, and the package on the path."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, points in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in points.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    _install(site)
    path = os.pathsep.join([str(site), str(PLUGIN), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _config(tmp_path: Path, port: int, target_options: str = "{journal: sales}") -> Path:
    path = tmp_path / "acme.yaml"
    path.write_text(
        f"""state: {{url: "sqlite:///{tmp_path / "state.db"}"}}
logging: {{level: WARNING}}
web: {{enabled: true, port: {port}}}
systems:
  acme: {{type: acme, directory: ledger, webhook_secret: "{SECRET}", timeout: 2s}}
routes:
  - name: acme-orders
    source: {{system: acme, object: orders, options: {{region: eu}}, trigger: {{type: webhook}}}}
    mapping: {{adapter: acme.order, entity: Customer}}
    target: {{system: acme, action: post, options: {target_options}}}
    idempotency_key: "customer:{{id}}:v{{version}}"
"""
    )
    return path


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lead2cash.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_the_plugin_is_in_the_schema_and_the_docs(env: dict[str, str]) -> None:
    schema = _cli(env, "config", "schema")
    assert schema.returncode == 0, schema.stderr
    assert "AcmeConfig" in json.loads(schema.stdout)["$defs"]
    docs = _cli(env, "config", "docs")
    assert docs.returncode == 0, docs.stderr
    assert "## System type `acme`" in docs.stdout and "| `webhook_secret` | secret |" in docs.stdout
    assert "- Target action `post`" in docs.stdout and "`POST /webhooks/acme`" in docs.stdout


def test_the_plugin_is_absent_without_its_entry_point(tmp_path: Path) -> None:
    # The proof above depends on the entry point, not on anything inside lead2cash.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}
    schema = _cli(env, "config", "schema")
    assert schema.returncode == 0 and "AcmeConfig" not in schema.stdout


def test_check_validates_the_plugins_typed_options(tmp_path: Path, env: dict[str, str]) -> None:
    good = _cli(env, "check", str(_config(tmp_path, _free_port())))
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _cli(env, "check", str(_config(tmp_path, _free_port(), "{jornal: sales}")))
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "acme.yaml:10" in text and "jornal" in text and "journal" in text, text


def test_a_signed_webhook_over_the_plugin_is_delivered_once(tmp_path: Path, env: dict[str, str]) -> None:
    port = _free_port()
    config = _config(tmp_path, port)
    driver = tmp_path / "drive.py"
    driver.write_text(DRIVER)
    run = subprocess.run(
        [sys.executable, str(driver), str(config), str(port), SECRET],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"first": 202, "again": 200, "forged": 401, "delivered": 1}, result
    posted = (tmp_path / "ledger" / "posted.jsonl").read_text().splitlines()
    assert len(posted) == 1
    assert json.loads(posted[0])["journal"] == "sales" and json.loads(posted[0])["id"] == "C-1"
