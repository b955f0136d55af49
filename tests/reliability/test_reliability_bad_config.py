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
import time
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


def _alias_bomb() -> str:
    """Billion laughs in YAML: nine levels of nine aliases, a few hundred bytes that expand to 9**9 values."""
    lines = [
        "# a config file that is an alias bomb",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join(f'*{prev}' for _ in range(9))}]")
    lines.append("routes: [*i]")
    return "\n".join(lines) + "\n"


HOSTILE_FILES: dict[str, tuple[bytes, int | None, str]] = {
    # name: (content, line the error names, what it says)
    "alias_bomb": (_alias_bomb().encode(), 7, "values once its aliases (*name) are expanded"),
    "oversized": (
        b"mappings:\n  big:\n" + b"".join(b"    k%d: v\n" % i for i in range(500_000)),
        None,
        "file is larger than 4 MiB",
    ),
    "deeply_nested": (b"routes: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", None, "nested too deeply"),
    "not_utf8": (b"web:\n  admin_token: caf\xe9\n", 2, "not UTF-8 text"),
}
MEMORY_LIMIT = 1536 * 2**20


def _limited_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_lead2cash_check_refuses_a_hostile_yaml_file_fast_and_in_bounded_memory(
    name: str, tmp_path: Path
) -> None:
    """`lead2cash check` in a child process under an address-space limit: a clear error naming the file
    (and the line where the expansion passes the bound), exit 1, no traceback, within seconds."""
    content, line, message = HOSTILE_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    if name == "alias_bomb":
        assert len(content) < 600, len(content)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", "check", str(path)],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limited_memory,
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert "Traceback" not in output and "MemoryError" not in output, output[-2000:]
    assert run.returncode == 1, output[-2000:]
    assert message in " ".join(output.split()), output[-2000:]
    assert f"{path}:{line}:" in output if line else f"{path}: " in output, output[-2000:]
    assert elapsed < 30, f"took {elapsed:.1f} s"


SIDECAR = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED-{name}").write_text("module code ran")

def make_system(name, options):
    pathlib.Path(__file__).with_name("CALLED-{name}").write_text("factory ran")
    raise SystemExit("a factory that ends the process")
"""
CODE_CONFIG = """
systems:
  side: {type: python, factory: "sidecar:make_system"}
  files: {type: file, directory: data}
routes:
  - name: from-code
    source: {system: side, object: things}
    mapping: {function: "pkgside.mapping:FUNCTION", entity: Order}
    target: {system: files, action: append, options: {object: out}}
    idempotency_key: "order:{id}"
"""


def _check(config: Path, cwd: Path, *flags: str) -> tuple[int, str]:
    run = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", "check", str(config), *flags],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return run.returncode, " ".join((run.stdout + run.stderr).split())


def test_lead2cash_check_finds_the_configs_code_without_running_it(tmp_path: Path) -> None:
    """A mapping function and a python system's factory next to the config: `check` finds the module files
    and the names by parsing them, and runs none of their code (not even a package's __init__); a missing
    name or module is an error with file and line. `--import-code` imports and calls them, as `run` does."""
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    (conf / "pkgside").mkdir(parents=True)
    elsewhere.mkdir()
    (conf / "sidecar.py").write_text(SIDECAR.format(name="sidecar"))
    (conf / "pkgside" / "__init__.py").write_text(SIDECAR.format(name="package"))
    (conf / "pkgside" / "mapping.py").write_text(
        SIDECAR.format(name="mapping") + "\ndef to_order(record):\n    return record\n"
    )
    config = conf / "hub.yaml"
    config.write_text(CODE_CONFIG.replace("FUNCTION", "to_order"))
    ran = lambda: sorted(p.name for p in conf.rglob("*") if p.name.startswith(("IMPORTED-", "CALLED-")))  # noqa: E731

    code, output = _check(config, elsewhere)
    assert code == 0, output
    assert "ok: 2 system(s), 1 route(s)" in output, output
    assert ran() == [], "check ran the config's code"

    config.write_text(CODE_CONFIG.replace("FUNCTION", "to_ordr"))
    code, output = _check(config, elsewhere)
    assert code == 1 and ran() == [], output
    assert f"{config}:8:" in output and "routes[0].mapping.function" in output, output
    assert f"{conf / 'pkgside' / 'mapping.py'} defines no top-level name 'to_ordr'" in output, output

    config.write_text(CODE_CONFIG.replace("sidecar:", "sidecra:").replace("FUNCTION", "to_order"))
    code, output = _check(config, elsewhere)
    assert code == 1 and ran() == [], output
    assert f"{config}:3:" in output and "systems.side.factory" in output, output
    assert "cannot find module 'sidecra' (installed, or next to the config files)" in output, output

    # Asked for: the modules are imported and the factory is called (this one ends the process).
    config.write_text(CODE_CONFIG.replace("FUNCTION", "to_order"))
    code, output = _check(config, elsewhere, "--import-code")
    assert "CALLED-sidecar" in ran() and "IMPORTED-sidecar" in ran(), output
