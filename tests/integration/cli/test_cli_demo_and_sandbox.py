"""The first minutes: the demo's options are documented, --keep-running hands over a working admin
request, a mistyped fault profile is one line, and Ctrl-C stops the demo and the sandboxes cleanly."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lead2cash.cli import app

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "lead2cash.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C reaches the whole process group, as from a terminal
    )


def _read_until(process: subprocess.Popen[bytes], pattern: str, timeout: float) -> tuple[re.Match[str], str]:
    """Read the process's stdout (raw, so nothing waits in a buffer the selector cannot see) until
    ``pattern`` shows up."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    seen = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if selector.select(timeout=0.5):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            found = re.search(pattern, seen.decode("utf-8", "replace"))
            if found:
                return found, seen.decode("utf-8", "replace")
    raise AssertionError(f"{pattern!r} not printed within {timeout}s:\n{seen.decode('utf-8', 'replace')}")


def _ctrl_c(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        raise AssertionError(f"did not stop on Ctrl-C:\n{stderr.decode()}") from None
    return process.returncode, stderr.decode("utf-8", "replace")


def test_the_demos_options_are_documented_in_its_help() -> None:
    shown = CliRunner().invoke(app, ["demo", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", shown.output).split())
    for option, meaning in (
        ("--workdir", "systems file it writes"),
        ("--advance-days", "subscription periods"),
        ("--faults", "flaky"),
        ("--keep-running", "admin token"),
        ("--minimal", "JSON Lines in, JSON Lines out"),
    ):
        assert option in text and meaning in text, option


@pytest.mark.parametrize("command", [["demo"], ["sandbox"]])
def test_an_unknown_fault_profile_is_one_line(command: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            *command,
            "--faults",
            "chaotic",
            "--workdir" if command == ["demo"] else "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "unknown fault profile 'chaotic'; known: none" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_keep_running_prints_a_working_admin_request_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    demo = _start(
        "demo",
        "--workdir",
        str(tmp_path / "demo"),
        "--deals",
        "2",
        "--advance-days",
        "0",
        "--keep-running",
        cwd=tmp_path,
    )
    try:
        found, printed = _read_until(
            demo,
            r"curl -s -H 'Authorization: Bearer (\S+)' '(http://127\.0\.0\.1:\d+/admin/dead-letters\?status=all)'",
            150,
        )
        token, url = found.group(1), found.group(2)
        assert f"admin token {token}" in printed
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200 and answer.json() == [], answer.text
        assert httpx.get(url, timeout=10).status_code == 401
    finally:
        code, stderr = _ctrl_c(demo)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


@pytest.mark.timeout(60)
def test_ctrl_c_stops_the_sandboxes_without_a_traceback(tmp_path: Path) -> None:
    ports = [str(_free_port()) for _ in range(3)]
    sandbox = _start(
        "sandbox", "--seed-size", "5", "--salesforce-port", ports[0], "--lago-port", ports[1], "--sap-port", ports[2],
        cwd=tmp_path,
    )  # fmt: skip
    try:
        _read_until(sandbox, r"hub config", 30)
        # Serving: the CA the sandbox wrote verifies its TLS.
        ca = tmp_path / ".state" / "sandbox" / "tls" / "ca.pem"
        end = time.monotonic() + 20
        while True:
            try:
                httpx.get(
                    f"https://127.0.0.1:{ports[1]}/health",
                    verify=ssl.create_default_context(cafile=ca),
                    timeout=5,
                )
                break
            except httpx.TransportError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
    finally:
        code, stderr = _ctrl_c(sandbox)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "sandboxes stopped" in stderr
