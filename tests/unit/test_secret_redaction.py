"""No configured secret appears in captured logs, dead letters or exception messages."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import doubles
import structlog

from lead2cash.hub import Hub
from lead2cash.observability import ISSUED_KEPT, SecretRedactor, configure_logging

SECRET = "tok-9f8e7d6c5b4a"


def test_redactor_replaces_secrets_everywhere_in_an_event() -> None:
    redact = SecretRedactor([SECRET, "pw"])  # too short to be treated as a secret
    event = redact(
        None, "info", {"event": f"calling with {SECRET}", "nested": {"h": [f"Bearer {SECRET}"]}, "n": 1}
    )
    assert SECRET not in json.dumps(event)
    assert event["nested"]["h"] == ["Bearer ***"] and event["n"] == 1


def test_issued_tokens_are_redacted_and_only_the_latest_are_kept() -> None:
    redact = SecretRedactor([SECRET])
    tokens = [f"00Dx0000000abc!AQ{i:04d}.issued-token" for i in range(ISSUED_KEPT + 5)]
    for token in tokens:
        redact.add_issued(token)
    redact.add_issued(tokens[-1])  # a token seen again is not kept twice
    event = redact(None, "info", {"event": f"Authorization: Bearer {tokens[-1]}", "secret": SECRET})
    assert tokens[-1] not in json.dumps(event) and SECRET not in json.dumps(event)
    # Expired tokens drop out (they no longer open anything); configured secrets never do.
    assert redact.redact(tokens[0]) == tokens[0]
    assert redact.redact(tokens[-ISSUED_KEPT]) == "***"


def test_hub_logs_and_dead_letters_never_carry_a_secret(tmp_path: Path) -> None:
    doubles.REGISTRY.clear()
    (tmp_path / "secret.txt").write_text(SECRET)
    path = tmp_path / "c.yaml"
    path.write_text(
        f"""
state: {{url: "sqlite:///{tmp_path / "s.db"}"}}
logging: {{level: DEBUG}}
systems:
  mem: {{type: python, factory: "doubles:memory_system", secrets: {{token: "${{file:secret.txt}}"}}}}
routes:
  - name: r
    source: {{system: mem, object: o}}
    mapping: {{adapter: canonical, entity: Customer}}
    target: {{system: mem, action: a}}
    idempotency_key: "c:{{id}}"
    retry: {{attempts: 2, initial_backoff: 1ms, max_backoff: 1ms, jitter: 0s}}
"""
    )
    hub = Hub.from_files([path], configure_logs=False)
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    system = doubles.REGISTRY["mem"]
    # The secret leaks into data and errors: a record name, a target error, a mapping failure.
    system.records.extend([{"id": "1", "name": f"leaky {SECRET}"}, {"id": "2", "nam": SECRET}])
    target = system.target("a", {})

    async def failing(entity, key):  # type: ignore[no-untyped-def]
        raise doubles.TransientError(f"401 for token {SECRET}")

    target.deliver = failing  # type: ignore[method-assign]
    structlog.get_logger("test").info("header", authorization=f"Bearer {SECRET}")
    asyncio.run(hub.run_until_idle(timeout=30))
    logs = stream.getvalue()
    assert "retrying" in logs and "dead-lettered" in logs, logs[:500]
    assert SECRET not in logs
    for d in hub.store.dlq_list("r"):
        assert SECRET not in d.error_message
    hub.close()
