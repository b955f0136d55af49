"""The admin API as an operator and an intruder meet it, over a real socket on both store backends.

The listing shows dead letters' metadata only (no customer names, addresses or amounts); the payloads are
on the single-record endpoint, behind the same token; ``status=all`` lists every status, as ``dlq list
--status all`` does; a malformed ``Authorization`` header (non-ASCII, no scheme, bytes that are not UTF-8)
is a plain 401, and nothing about it is logged, by structlog or the standard library.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import doubles
import httpx
from reliability_support import captured_stdlib_logs, free_port

from lead2cash.hub import Hub
from lead2cash.observability import configure_logging

TOKEN = "admin-token-5d1e9c2b7a"
CUSTOMER = "Zoe Hamalainen-Customer"
STREET = "17 Rue des Rosiers"
LISTED = {"id", "route", "stage", "error_class", "key", "reason", "status", "attempts", "created", "trace_id"}


def _config(tmp_path: Path, store_url: str, port: int) -> Path:
    path = tmp_path / "admin.yaml"
    path.write_text(
        f"""
state: {{url: "{store_url}"}}
logging: {{level: DEBUG}}
web: {{enabled: true, port: {port}, admin_token: "{TOKEN}"}}
systems:
  mem: {{type: python, factory: "doubles:memory_system"}}
routes:
  - name: orders
    source: {{system: mem, object: orders}}
    mapping: {{adapter: canonical, entity: Order}}
    target: {{system: mem, action: bill}}
    idempotency_key: "order:{{id}}:v{{version}}"
    retry: {{attempts: 1}}
"""
    )
    return path


def _orders() -> list[dict[str, Any]]:
    from lead2cash.demo import sample_orders

    orders = sample_orders(3, seed=11)
    for order in orders:
        order["customer"]["name"] = CUSTOMER
        order["customer"]["billing_address"]["line1"] = STREET
    return orders


def test_admin_api_lists_metadata_shows_one_record_and_refuses_bad_headers(
    tmp_path: Path, store_url: str
) -> None:
    doubles.REGISTRY.clear()
    port = free_port()
    path = _config(tmp_path, store_url, port)
    orders = _orders()
    system = doubles.memory_system("mem", {})
    system.records.extend([*orders, {"id": "not an order"}])
    # Every order is refused for good by the target: delivery dead letters with canonical payloads.
    system.behaviour.permanent_keys = {f"order:{o['id']}:v1" for o in orders}
    structlog_out = io.StringIO()
    results: dict[str, Any] = {}

    async def scenario() -> None:
        hub = Hub.from_files([path], configure_logs=False)
        configure_logging("DEBUG", "json", stream=structlog_out)
        await hub.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as web:
                for _ in range(100):
                    try:
                        if (await web.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                for _ in range(200):
                    if hub.store.dlq_count() == len(orders) + 1:
                        break
                    await asyncio.sleep(0.05)
                auth = {"Authorization": f"Bearer {TOKEN}"}
                listing = await web.get("/admin/dead-letters", headers=auth)
                results["listing"] = (listing.status_code, listing.text)
                first = listing.json()[0]["id"] if listing.status_code == 200 else 1
                hub.store.dlq_mark(first, "discarded")
                for status in ("all", "open", "discarded", "replayed"):
                    answer = await web.get(f"/admin/dead-letters?status={status}", headers=auth)
                    results[f"status={status}"] = (answer.status_code, answer.json())
                results["status=bogus"] = (
                    await web.get("/admin/dead-letters?status=bogus", headers=auth)
                ).status_code
                delivery = next(d for d in hub.store.dlq_list(None, None) if d.stage == "delivery")
                one = await web.get(f"/admin/dead-letters/{delivery.id}", headers=auth)
                results["one"] = (one.status_code, one.json() if one.status_code == 200 else one.text)
                results["one_unauthorised"] = (
                    await web.get(f"/admin/dead-letters/{delivery.id}")
                ).status_code
                results["one_missing"] = (
                    await web.get("/admin/dead-letters/999999", headers=auth)
                ).status_code
                results["one_not_a_number"] = (
                    await web.get("/admin/dead-letters/abc", headers=auth)
                ).status_code
                # Malformed Authorization headers, as raw bytes on the wire.
                malformed = {
                    "non_ascii": "Bearer tökén".encode(),
                    "latin1": b"Bearer \xe9\xe8",
                    "not_utf8": b"Bearer \xff\xfe\xfd",
                    "token_with_non_ascii_tail": f"Bearer {TOKEN}é".encode(),
                    "no_scheme": TOKEN.encode(),
                    "empty": b"",
                }
                for name, value in malformed.items():
                    answer = await web.get("/admin/dead-letters", headers=[(b"Authorization", value)])
                    results[f"auth_{name}"] = answer.status_code
                    answer = await web.get(
                        f"/admin/dead-letters/{delivery.id}", headers=[(b"Authorization", value)]
                    )
                    results[f"auth_{name}_one"] = answer.status_code

                # A failure nobody expected (here the store's, quoting a secret): a 500, and its
                # traceback goes through structlog's redactor, not to uvicorn's logger.
                def broken(*_: Any, **__: Any) -> Any:
                    raise RuntimeError(f"store unreachable (password {TOKEN})")

                hub.store.dlq_list = broken  # type: ignore[method-assign]
                results["broken_store"] = (await web.get("/admin/dead-letters", headers=auth)).status_code
        finally:
            await hub.stop()
            hub.close()

    try:
        with captured_stdlib_logs(logging.DEBUG) as stdlib_lines:
            asyncio.run(scenario())
    finally:
        configure_logging("WARNING")

    status, text = results["listing"]
    assert status == 200, text
    listed = json.loads(text)
    assert len(listed) == len(orders) + 1
    assert {d["stage"] for d in listed} == {"mapping", "delivery"}
    for row in listed:
        assert set(row) == LISTED, row
        assert isinstance(row["attempts"], int) and row["created"].endswith("Z")
    # No business data in the listing: no name, no street, no amount of any order.
    assert CUSTOMER not in text and STREET not in text and "canonical_payload" not in text
    assert "original_payload" not in text
    for order in orders:
        for line in order["lines"]:
            assert line["unit_price"]["amount"] not in text

    code, everything = results["status=all"]
    assert code == 200 and len(everything) == len(orders) + 1, everything
    assert {d["status"] for d in everything} == {"open", "discarded"}
    assert results["status=open"][0] == 200 and len(results["status=open"][1]) == len(orders)
    assert [d["status"] for d in results["status=discarded"][1]] == ["discarded"]
    assert results["status=replayed"] == (200, [])
    assert results["status=bogus"] == 400

    code, one = results["one"]
    assert code == 200, one
    assert CUSTOMER in one["canonical_payload"] and STREET in one["original_payload"]
    assert one["stage"] == "delivery" and one["attempts"] and one["reason"]
    assert results["one_unauthorised"] == 401
    assert results["one_missing"] == 404
    assert results["one_not_a_number"] == 404

    auth_answers = {k: v for k, v in results.items() if k.startswith("auth_")}
    assert set(auth_answers.values()) == {401}, auth_answers
    assert results["broken_store"] == 500
    structlog_text, stdlib_text = structlog_out.getvalue(), "\n".join(stdlib_lines)
    failures = [json.loads(line) for line in structlog_text.splitlines() if "web request failed" in line]
    assert len(failures) == 1 and "RuntimeError: store unreachable (password ***)" in failures[0]["exception"]
    assert "Exception in ASGI" not in structlog_text, "the failure reached the server"
    assert "Traceback" not in stdlib_text and "Exception in ASGI" not in stdlib_text, stdlib_text[-3000:]
    assert TOKEN not in structlog_text + stdlib_text
