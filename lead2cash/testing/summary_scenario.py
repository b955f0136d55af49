"""The billing summary end to end, shared by its integration test and ``bench/billing_summary.py``: the
usage routes of ``usage_scenario``, a route carrying every state of Lago's invoices, the summary with
its Salesforce Account fields, and the admin API."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from lead2cash.testing import usage_scenario

ADMIN_TOKEN = "summary-admin-token"  # noqa: S105 - a test token of the local admin API


def hub_config(
    state_url: str,
    nats_url: str,
    systems: dict[str, Any],
    out_dir: Path,
    web_port: int,
    interval: float,
    *,
    invoice_poll: str = "0.3s",
) -> dict[str, Any]:
    config = usage_scenario.hub_config(state_url, nats_url, systems["lago"])
    config["systems"]["salesforce"] = systems["salesforce"]
    config["systems"]["files"] = {"type": "file", "directory": str(out_dir)}
    config["routes"].append(
        {
            "name": "invoice-states",
            "source": {
                "system": "lago",
                "object": "invoices",
                "trigger": {"type": "poll", "interval": invoice_poll},
                "options": {"consumer": "summary"},
            },
            "filter": "invoice.status != 'draft'",
            "mapping": {"adapter": "lago.invoice", "entity": "Invoice"},
            "target": {"system": "files", "action": "append", "options": {"object": "invoices"}},
            "idempotency_key": "invoice-state:{id}:v{version}",
            "ordering_key": "{id}",
        }
    )
    config["web"] = {"enabled": True, "port": web_port, "admin_token": ADMIN_TOKEN}
    config["billing_summary"] = {
        "lago": "lago",
        "poll": "0.2s",
        "salesforce": {"system": "salesforce", "match_field": "Lead2Cash_Key__c", "interval": f"{interval}s"},
    }
    return config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
