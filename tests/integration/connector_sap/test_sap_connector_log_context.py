"""A connector's own log line, written during a real delivery against the sandbox, carries the route,
idempotency key and trace id of the message it serves (the router's structlog contextvars, merged by the
hub's logging chain)."""

from __future__ import annotations

import asyncio
import io
import json

import doubles
import sap_factories as f
import structlog
from sap_hub_config import sap_system, write_config

from lead2cash.hub import Hub
from lead2cash.observability import configure_logging


def test_a_connector_log_line_carries_route_key_and_trace(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    hub = Hub.from_files([write_config(tmp_path, sap_system(sap_box))], configure_logs=False)
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)  # the hub's chain, into a buffer

    async def scenario() -> None:
        # A first delivery logs on to SAP (the CSRF token is cached); then SAP drops every session, so
        # the next new partner's write is refused and the connector logs as it fetches a fresh token.
        doubles.REGISTRY["mem"].records.append(
            f.invoice(1, "EUR", number_prefix="LOGCTX").model_dump(mode="json")
        )
        assert await hub.run_until_idle(timeout=30)
        assert sap_admin.post("/__sandbox/sap/sessions/expire").status_code == 200
        doubles.REGISTRY["mem"].records.append(
            f.invoice(2, "EUR", customer_n=2, number_prefix="LOGCTX").model_dump(mode="json")
        )
        assert await hub.run_until_idle(timeout=30)

    try:
        asyncio.run(scenario())
        traces = {
            m.idempotency_key: m.trace_id for m in hub.store.messages_for("invoices-to-sap", "delivered")
        }
    finally:
        structlog.configure(**saved)
        hub.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line["event"].startswith("CSRF token rejected")]
    assert rejected, [line["event"] for line in lines]
    (line,) = rejected
    assert line["route"] == "invoices-to-sap"
    assert line["key"] in traces and line["key"].startswith("invoice:") and line["key"].endswith(":v1")
    assert line["trace_id"] == traces[line["key"]] and len(line["trace_id"]) >= 16
