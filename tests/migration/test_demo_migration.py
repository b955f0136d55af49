"""``lead2cash demo --migration`` end to end on the sandboxes, as a user runs it (not on a terminal: one
line per step): the gates fail then pass, the load, the parallel run under then over the threshold, cutover,
rollback, cutover again, and record by record nothing billed twice or missed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_migration(tmp_path: Path) -> None:
    demo = ["demo", "--migration", "--customers", "200", "--workdir", str(tmp_path / "demo")]
    result = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", *demo],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    lines = {line[:34].strip(): line[34:] for line in out.splitlines()}
    assert lines["quality gates on the raw extract"].lstrip().startswith("FAIL (expected)")
    assert lines["cleanse, quality gates again"].lstrip().startswith("pass")
    assert "FAIL (expected)" in lines["parallel run 2026-01"] and "price" in lines["parallel run 2026-01"]
    assert "pass" in lines["parallel run 2026-03"]
    assert "re-created as <contract>~2" in lines["cutover again 1 May"]
    assert "billed twice 0, missed 0, twice in Lago 0" in lines["record by record to 30 June"]
    assert out.splitlines()[-1].startswith("done: state in ")
