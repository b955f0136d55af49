"""Kill the hub (SIGKILL, a real subprocess) at random moments and restart it: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lead2cash.demo import sample_orders
from lead2cash.store import EffectState, Store

ROOT = Path(__file__).resolve().parents[3]

CONFIG = """
state: {{url: "{url}", worker_id: crash-test-worker}}
logging: {{level: WARNING}}
systems:
  files: {{type: python, factory: "doubles:file_backed_system", options: {{directory: "{dir}", delay: 0.002}}}}
routes:
  - name: crashy
    source: {{system: files, object: inbox, trigger: {{type: poll, interval: 1s}}}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: files, action: write}}
    idempotency_key: "order:{{id}}:v{{version}}"
    batch_size: 50
    retry: {{attempts: 5, initial_backoff: 1ms, max_backoff: 5ms, jitter: 1ms}}
"""


def _effects(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["key"] for line in path.read_text().splitlines() if line.endswith("}"))


@pytest.mark.slow
def test_sigkill_ten_times_during_a_2000_record_run(tmp_path: Path, store_url: str) -> None:
    records = 2000
    data = tmp_path / "data"
    data.mkdir()
    inbox = data / "inbox.jsonl"
    inbox.write_text("".join(json.dumps(o) + "\n" for o in sample_orders(records, seed=21)))
    config = tmp_path / "crash.yaml"
    config.write_text(CONFIG.format(url=store_url, dir=data))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, "-m", "lead2cash.cli", "run", str(config), "--until-idle", "--timeout", "120"]
    rng = random.Random(1234)
    kills = 0
    progress = []
    for _ in range(10):
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.6, 1.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        progress.append(sum(_effects(data / "effects.jsonl").values()))
    final = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, timeout=300, check=False)
    assert final.returncode == 0, final.stderr.decode()[-2000:]

    effects = _effects(data / "effects.jsonl")
    assert kills >= 5, f"the run finished before the kills could land ({kills} kills)"
    assert progress[0] < records, "the first kill should land mid-run"
    assert len(effects) == records, f"lost: {records - len(effects)}"
    duplicated = {k: c for k, c in effects.items() if c > 1}
    assert not duplicated, f"duplicated effects: {list(duplicated.items())[:5]}"

    store = Store(store_url, migrate=False)
    assert store.effects_in_state(EffectState.SENT) == 0
    assert store.effects_in_state(EffectState.RESERVED) == 0
    assert store.count_messages("crashy", "delivered") == records
    assert store.checkpoint_get("crashy:files/inbox") == str(inbox.stat().st_size)
    store.close()
