"""Scenario 6, resource limits, with the hub's memory measured (resident set size sampled every 5 ms by
``psutil`` while the load is on; the hub runs in this process, senders and sandboxes do not allocate for it):

- a 50 MB webhook body, to ``/webhooks/lago`` and to a generic webhook route, declared (Content-Length) and
  streamed (chunked, no length): 413 without buffering it. Bound: RSS growth < 30 MB.
- SOAP answers from a hostile SAP (billion laughs, an endless body) through the hub's ledger route: a clean
  transient error (dead letter "exhausted" after the configured attempts) and RSS growth < 50 MB.
- one Salesforce query page of 2,000 wide records (a 4,000-character Description each at CI size, 32,000
  at large size) read by the hub from a Salesforce sandbox running in its own process: all 2,000 in the
  inbox, and RSS growth < 6x the page's JSON size + 40 MB.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from harness.sandboxes import SandboxesProcess
from hostile_soap import hostile_soap
from reliability_support import (
    PeakRss,
    free_port,
    hmac_b64,
    inbox_census,
    report,
    size,
)

from lead2cash.demo.environment import CONFIG_DIR, LeadToCash
from lead2cash.hub import Hub

BODY_MB = 50
WEBHOOK_BOUND_MB = 30
SOAP_BOUND_MB = 50


# ---------------------------------------------------------------------------------------------- 50 MB bodies
def _send_huge(port: int, path: str, total: int, declared: bool, headers: dict[str, str]) -> tuple[int, int]:
    """POST ``total`` bytes from a plain socket (one 1 MB chunk reused, so the sender holds 1 MB), reading
    the answer as soon as the server sends one. Returns (status, bytes the server took before answering)."""
    chunk = b"x" * 2**20
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {total}" if declared else "Transfer-Encoding: chunked")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.settimeout(0.0)
        answer = b""
        try:
            while sent < total:
                try:
                    answer += sock.recv(65536)
                    if b"\r\n\r\n" in answer:
                        break
                except BlockingIOError:
                    pass
                piece = chunk[: min(len(chunk), total - sent)]
                frame = piece if declared else f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                sock.settimeout(30)
                sock.sendall(frame)
                sock.settimeout(0.0)
                sent += len(piece)
            if sent >= total and not declared:
                sock.settimeout(30)
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        sock.settimeout(30)
        while b"\r\n\r\n" not in answer:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def test_a_50mb_webhook_body_is_refused_without_being_buffered(tmp_path: Path) -> None:
    port = free_port()
    secret = "generic-webhook-secret-7f3a"
    config = tmp_path / "hooks.yaml"
    config.write_text(
        json.dumps(
            {
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "logging": {"level": "WARNING"},
                "web": {"enabled": True, "host": "127.0.0.1", "port": port},
                "systems": {
                    "lago": {
                        "type": "lago",
                        "base_url": "https://lago.example.invalid/api/v1",
                        "api_key": "lago-api-key-for-limits",
                        "webhook": {"signature": "hmac", "hmac_key": "lago-hmac-key-for-limits"},
                    },
                    "files": {"type": "file", "directory": "out"},
                },
                "routes": [
                    {
                        "name": "invoices",
                        "source": {"system": "lago", "object": "invoices", "trigger": {"type": "webhook"}},
                        "mapping": {"adapter": "lago.invoice", "entity": "Invoice"},
                        "target": {"system": "files", "action": "append", "options": {"object": "invoices"}},
                        "idempotency_key": "invoice:{invoice_number}",
                    },
                    {
                        "name": "generic",
                        "source": {
                            "system": "files",
                            "object": "events",
                            "trigger": {"type": "webhook", "secret": secret},
                        },
                        "mapping": {"adapter": "canonical", "entity": "Order"},
                        "target": {"system": "files", "action": "append", "options": {"object": "orders"}},
                        "idempotency_key": "order:{id}:v{version}",
                    },
                ],
            }
        )
    )
    total = BODY_MB * 2**20
    signature = {"X-Lago-Signature": "AAAA", "X-Signature": "AAAA", "X-Lago-Unique-Key": "huge"}
    results: dict[str, tuple[int, int, float]] = {}

    async def scenario() -> None:
        hub = Hub.from_files([config], configure_logs=False)
        await hub.start()
        try:
            async with httpx.AsyncClient(timeout=5, trust_env=False) as client:

                async def up() -> bool:
                    try:
                        return (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
                    except httpx.TransportError:
                        return False

                for _ in range(200):
                    if await up():
                        break
                    await asyncio.sleep(0.05)
                before = inbox_census(hub.store)
                for path in ("/webhooks/lago", "/webhooks/generic"):
                    for declared in (True, False):
                        with PeakRss() as rss:
                            status, sent = await asyncio.to_thread(
                                _send_huge, port, path, total, declared, signature
                            )
                        results[f"{path} {'declared' if declared else 'chunked'}"] = (
                            status,
                            sent,
                            round(rss.growth_mb, 1),
                        )
                # Still serving, nothing stored.
                assert await up()
                body = b'{"id": "x"}'
                ok = await client.post(
                    f"http://127.0.0.1:{port}/webhooks/generic",
                    content=body,
                    headers={"X-Signature": hmac_b64(secret, body)},
                )
                assert ok.status_code in (202, 200), ok.text
                assert inbox_census(hub.store)["messages"] == before["messages"]
        finally:
            await hub.stop()
            hub.close()

    asyncio.run(scenario())
    for name, (status, sent, growth) in results.items():
        assert status == 413, (name, status)
        assert growth < WEBHOOK_BOUND_MB, (name, f"{growth} MB")
        assert sent < total or "chunked" not in name or status == 413
    report(
        "6-webhook-50mb",
        body_mb=BODY_MB,
        bound_mb=WEBHOOK_BOUND_MB,
        **{
            k: {"status": s, "sent_mb": round(n / 2**20, 1), "rss_growth_mb": g}
            for k, (s, n, g) in results.items()
        },
    )


# ---------------------------------------------------------------------------------------------- hostile SOAP
def test_billion_laughs_and_endless_soap_answers_through_the_ledger_route(tmp_path: Path) -> None:
    env = LeadToCash(tmp_path / "l2c", seed=9, seed_size=20)
    paths = ["/laughs", "/endless"]
    try:

        async def bill() -> None:
            env.close_won(6)
            assert await env.hub.run_until_idle(timeout=120, routes=["won-opportunity-to-billing"])
            await env.hub.aclose_systems()

        asyncio.run(bill())
        invoice = next(i for i in env.lago_invoices(detailed=True) if i["status"] == "finalized")
        template = json.loads(env.systems_file.read_text())
        template["state"]["url"] = f"sqlite:///{tmp_path / 'soap.db'}"
        template["web"]["enabled"] = False
        with hostile_soap() as base:
            routes = []
            for p in paths:
                name = p.strip("/")
                sap = json.loads(json.dumps(template["systems"]["sap"]))
                sap["soap"] = {"journal_entry_post": f"{base}{p}", "timeout": "10s"}
                template["systems"][f"sap_{name}"] = sap
                routes.append(
                    {
                        "name": f"ledger-{name}",
                        "source": {
                            "system": "lago",
                            "object": "invoices",
                            "trigger": {"type": "webhook"},
                            "options": {"consumer": name},
                        },
                        "mapping": {"adapter": "lago.invoice", "entity": "Invoice"},
                        "target": {"system": f"sap_{name}", "action": "journal_entry.post"},
                        "idempotency_key": "invoice:{invoice_number}",
                        "retry": {
                            "attempts": 2,
                            "initial_backoff": "10ms",
                            "max_backoff": "20ms",
                            "jitter": "0s",
                        },
                    }
                )
            systems = tmp_path / "systems.yaml"
            systems.write_text(json.dumps(template))
            route_file = tmp_path / "routes.yaml"
            route_file.write_text(json.dumps({"routes": routes}))
            hub = Hub.from_files([systems, CONFIG_DIR / "mappings.yaml", route_file], configure_logs=False)
            growth: dict[str, float] = {}
            elapsed: dict[str, float] = {}
            try:

                async def run() -> None:
                    record = {"webhook_type": "invoice.created", "object_type": "invoice", "invoice": invoice}
                    for p in paths:
                        name = f"ledger-{p.strip('/')}"
                        hub.routes[name].submit([record])
                        started = time.monotonic()
                        with PeakRss() as rss:
                            assert await hub.run_until_idle(timeout=60, routes=[name])
                        growth[p] = round(rss.growth_mb, 1)
                        elapsed[p] = round(time.monotonic() - started, 2)
                    await hub.aclose_systems()

                asyncio.run(run())
                letters = {d.route: d for d in hub.store.dlq_list(None, None, 10)}
            finally:
                hub.close()
        for p in paths:
            letter = letters[f"ledger-{p.strip('/')}"]
            assert letter.error_class == "exhausted", (p, letter.error_class, letter.error_message)
            expected = {"/laughs": "DTD", "/endless": "exceeds"}[p]
            assert expected in letter.error_message, letter.error_message
            assert "lollol" not in letter.error_message
            assert growth[p] < SOAP_BOUND_MB, (p, growth[p])
        report("6-hostile-soap", bound_mb=SOAP_BOUND_MB, rss_growth_mb=growth, seconds=elapsed, lost=0)
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------- wide page
RECORDS = 2000
DESCRIPTION = size(4_000, 32_000)


def _create_wide_opportunities(base: str, ca: str, count: int) -> int:
    """``count`` won opportunities with a full Description and one line item each, through the REST API
    (sObject Collections, 200 a call). Returns the bytes of one page of them as the API serves it."""
    ctx = ssl.create_default_context(cafile=ca)
    with httpx.Client(base_url=base, verify=ctx, timeout=120, trust_env=False) as http:
        token = http.post(
            "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "lead2cash-sandbox-client",
                "client_secret": "lead2cash-sandbox-secret",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        api = "/services/data/v62.0"

        def query(q: str) -> list[dict[str, Any]]:
            return list(http.get(f"{api}/query", params={"q": q}, headers=headers).json()["records"])

        account = query("SELECT Id FROM Account LIMIT 1")[0]["Id"]
        entry = query(
            "SELECT Id, Pricebook2Id, UnitPrice FROM PricebookEntry WHERE CurrencyIsoCode = 'USD' "
            "AND Product2.Billing_Type__c = 'One-Time' LIMIT 1"
        )[0]
        ids: list[str] = []
        for start in range(0, count, 200):
            batch = [
                {
                    "attributes": {"type": "Opportunity"},
                    "Name": f"Wide deal {n:05d}",
                    "AccountId": account,
                    "StageName": "Closed Won",
                    "CloseDate": "2026-01-15",
                    "CurrencyIsoCode": "USD",
                    "Pricebook2Id": entry["Pricebook2Id"],
                    "Description": (f"{n:05d} " + "lorem ipsum dolor sit amet " * 2000)[:DESCRIPTION],
                }
                for n in range(start, min(count, start + 200))
            ]
            r = http.post(
                f"{api}/composite/sobjects", json={"allOrNone": True, "records": batch}, headers=headers
            )
            r.raise_for_status()
            ids.extend(item["id"] for item in r.json())
        for start in range(0, len(ids), 200):
            lines = [
                {
                    "attributes": {"type": "OpportunityLineItem"},
                    "OpportunityId": opp,
                    "PricebookEntryId": entry["Id"],
                    "Quantity": 1,
                    "UnitPrice": entry["UnitPrice"],
                }
                for opp in ids[start : start + 200]
            ]
            r = http.post(
                f"{api}/composite/sobjects", json={"allOrNone": True, "records": lines}, headers=headers
            )
            r.raise_for_status()
        return len(json.dumps({"records": [{"Description": "x" * DESCRIPTION, "pad": "y" * 1500}] * count}))


def test_a_page_of_2000_wide_salesforce_records_is_read_with_bounded_memory(tmp_path: Path) -> None:
    sandbox = SandboxesProcess.start(tmp_path / "sandbox", seed_size=4, only=["salesforce"])
    try:
        sf = dict(sandbox.printed["salesforce"])
        page_bytes = _create_wide_opportunities(sf["instance_url"], sf["ca_bundle"], RECORDS)
        time.sleep(2.0)  # the org clock the hub reads (HTTP Date) has whole seconds: let it pass the writes
        fields = ["Name", "Description", "StageName", "CloseDate", "IsClosed", "IsWon", "Amount", "AccountId"]
        config = tmp_path / "wide.yaml"
        config.write_text(
            json.dumps(
                {
                    "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                    "logging": {"level": "WARNING"},
                    "systems": {
                        "salesforce": {**sf, "safety_lag": "0s", "sweep_interval": None, "page_size": 2000},
                        "files": {"type": "file", "directory": "out"},
                    },
                    "routes": [
                        {
                            "name": "wide",
                            "source": {
                                "system": "salesforce",
                                "object": "Opportunity",
                                "trigger": {"type": "poll", "interval": "1h"},
                                "options": {"fields": fields, "filters": {"IsWon": True}},
                            },
                            "mapping": {"adapter": "salesforce.opportunity", "entity": "Order"},
                            "target": {
                                "system": "files",
                                "action": "append",
                                "options": {"object": "orders"},
                            },
                            "idempotency_key": "order:{id}:v{version}",
                            "batch_size": 2000,
                        }
                    ],
                }
            )
        )
        hub = Hub.from_files([config], configure_logs=False)
        try:
            route = hub.routes["wide"]

            async def read() -> tuple[int, PeakRss, list[int]]:
                pages: list[int] = []
                original = route.source.read  # type: ignore[union-attr]

                async def counted(checkpoint: str | None, limit: int) -> Any:
                    batch = await original(checkpoint, limit)
                    pages.append(len(batch.records))
                    return batch

                route.source.read = counted  # type: ignore[union-attr,method-assign]
                with PeakRss() as rss:
                    count = await route.ingest_once()
                return count, rss, pages

            count, rss, pages = asyncio.run(read())
            hub.close()
        except BaseException:
            hub.close()
            raise
        bound = 6 * page_bytes / 2**20 + 40
        assert count >= RECORDS, count
        assert max(pages) >= RECORDS, f"expected one page of {RECORDS}: {pages}"
        assert rss.growth_mb < bound, f"{rss.growth_mb:.1f} MB for a {page_bytes / 2**20:.1f} MB page"
        report(
            "6-wide-salesforce-page",
            records=count,
            description_chars=DESCRIPTION,
            page_mb=round(page_bytes / 2**20, 1),
            rss_growth_mb=round(rss.growth_mb, 1),
            bound_mb=round(bound, 1),
            pages=pages,
        )
    finally:
        sandbox.stop()
