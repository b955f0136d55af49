"""Scenario 5, bad config: every file of ``corpus/config`` is a complete hub config (the shipped routes'
shape, all three systems) with one thing broken. Each must fail with an error naming the file, the line and
the field, raised by ``Hub.from_files`` before anything starts: no state file created, no port bound, no
thread left behind, and no secret echoed in the message.

Each corpus file says what it expects on its second line: ``# expect: line=N field=F message=M``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from reliability_support import CORPUS, report

from lead2cash.config import ConfigError
from lead2cash.hub import Hub

CASES = sorted(p for p in (CORPUS / "config").glob("*.yaml") if not p.name.startswith("_"))
EXPECT = re.compile(r"^# expect: line=(\d+) field=(\S+) message=(.+)$")
SECRET_AS_NUMBER = "s3cr3t-not-a-number-777"
CONFIG_SECRETS = (
    "corpus-client-secret-0001",
    "corpus-lago-api-key-0001",
    "corpus-lago-hmac-key-0001",
    "corpus-sap-password-0001",
    "corpus-admin-token-0001",
    SECRET_AS_NUMBER,
)


def _listening() -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)


def test_the_corpus_base_builds(tmp_path: Path) -> None:
    """The broken files differ from a config that works: the base builds (and creates its state file)."""
    path = tmp_path / "valid.yaml"
    shutil.copy(CORPUS / "config" / "_valid.yaml", path)
    hub = Hub.from_files([path], configure_logs=False)
    try:
        assert set(hub.routes) == {"won-opportunity-to-billing", "posted-invoice-to-ledger"}
        assert (tmp_path / "state.db").exists()
    finally:
        hub.close()


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_each_broken_config_fails_before_anything_starts(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    match = EXPECT.match(case.read_text().splitlines()[1])
    assert match, f"{case.name}: second line must be '# expect: line=N field=F message=M'"
    line, field, message = int(match[1]), match[2], match[3]
    monkeypatch.delenv("L2C_RELIABILITY_UNSET_LAGO_KEY", raising=False)
    monkeypatch.setenv("L2C_RELIABILITY_SECRET_AS_NUMBER", SECRET_AS_NUMBER)
    path = tmp_path / case.name
    shutil.copy(case, path)
    threads = {t.ident for t in threading.enumerate()}
    listening = _listening()

    with pytest.raises(ConfigError) as info:
        Hub.from_files([path], configure_logs=False)

    issues = [i for i in info.value.issues if message in i.message]
    assert issues, f"{case.name}: no issue mentions {message!r}: {info.value}"
    issue = issues[0]
    assert issue.file == str(path)
    assert issue.line == line, f"{case.name}: {issue}"
    assert (issue.field or "-") == field, f"{case.name}: {issue}"
    text = str(info.value)
    assert f"{path}:{line}" in text, text
    for secret in CONFIG_SECRETS:
        assert secret not in text, f"{case.name}: the error echoes a secret"
    # Nothing started: no state file, no socket listening, no new thread.
    assert sorted(p.name for p in tmp_path.iterdir()) == [case.name]
    assert _listening() == listening
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= threads


def test_lead2cash_run_refuses_a_broken_config_and_starts_nothing(tmp_path: Path) -> None:
    """The CLI as an operator runs it: non-zero exit, file:line:field on stderr, no state file."""
    path = tmp_path / "broken.yaml"
    shutil.copy(CORPUS / "config" / "missing_plan_table.yaml", path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2C_")}
    run = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", "run", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert f"{path}:44" in output and "routes[0].target" in output, output[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml"]
    assert "Traceback" not in output, "a config error is not a crash"
    report("5-bad-config", files=len(CASES), rejected=len(CASES), half_started=0)
