"""Scenario 7, secrets: the lead-to-cash flow on the shipped routes with faults on all three systems (429/503,
connection resets, lost responses, expired sessions, so every connector re-authenticates), DEBUG logging
captured (structlog and the standard library's loggers: httpx, urllib3, zeep, uvicorn, apscheduler), some
records dead-lettered. Then every configured secret and every token the sandboxes issued during the run
(Salesforce access tokens, SAP session ids and CSRF tokens) is looked for in: the logs, the whole state
store (dead-letter reasons, payloads and attempt histories, messages' last errors, everything), ``/metrics``,
the admin API's dead-letter listing, and the messages of errors raised by the hub's connectors.
Pass criterion: zero occurrences.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from reliability_support import captured_stdlib_logs, report, secret_hits, size

from lead2cash.demo.environment import LeadToCash
from lead2cash.errors import DeliveryError
from lead2cash.observability import configure_logging

DEALS = size(8, 100)
ADMIN_TOKEN = "admin-token-3c9f1e7a5b2d"
# Lago has no sessions (a static API key: its 401 means a wrong key and pauses the route), so sessions
# expire on Salesforce and SAP only.
FAULTS = {
    name: {
        "*": {
            "error_rate": 0.15,
            "retry_after_s": 0,
            "reset_rate": 0.03,
            "commit_then_drop_rate": 0.08,
            "expire_session_rate": 0.0 if name == "lago" else 0.15,
        }
    }
    for name in ("salesforce", "lago", "sap")
}


class DebugLeadToCash(LeadToCash):
    """The demo environment with DEBUG logs and an admin token, as an operator investigating would run."""

    def systems_config(self, safety_lag: str, log_level: str) -> dict[str, Any]:
        config = super().systems_config(safety_lag, "DEBUG")
        config["web"]["admin_token"] = ADMIN_TOKEN
        return config


class TokenWatch:
    """Collects every token the sandboxes hand out while the run goes on (expired ones are forgotten by
    the sandboxes, so they are sampled as they appear, and Salesforce's issuer is wrapped)."""

    def __init__(self, env: LeadToCash) -> None:
        self.env = env
        self.tokens: dict[str, str] = {}
        self._stop = threading.Event()
        issue = env.salesforce.issue_token

        def issue_and_remember(request: Any) -> dict[str, Any]:
            answer = issue(request)
            self.tokens[f"salesforce access token #{len(self.tokens)}"] = str(answer["access_token"])
            return answer

        env.salesforce.issue_token = issue_and_remember  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        auth = self.env.sap.auth
        while not self._stop.is_set():
            for sid, session in list(auth.sessions.items()):
                self.tokens.setdefault(f"sap session {sid[:6]}", sid)
                if session.csrf_token:
                    self.tokens.setdefault(f"sap csrf {session.csrf_token[:6]}", session.csrf_token)
            for token in list(auth.tokens):
                self.tokens.setdefault(f"sap bearer {token[:6]}", token)
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _store_dump(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


def test_no_secret_or_token_anywhere_after_a_faulty_debug_run(tmp_path: Path) -> None:
    env = DebugLeadToCash(tmp_path / "l2c", seed=12, seed_size=DEALS + 20)
    structlog_out = io.StringIO()
    raised: list[str] = []
    texts: dict[str, str] = {}
    watch = TokenWatch(env)
    try:
        configure_logging("DEBUG", "json", stream=structlog_out)
        cfg = env.hub.config.systems
        secrets = {
            "salesforce client secret": env.salesforce.client_secret,
            "salesforce password": env.salesforce.password,
            "lago api key": env.lago.api_key,
            "lago hmac key": env.lago.signer.hmac_key,
            "sap password": env.sap.password,
            "admin token": ADMIN_TOKEN,
        }
        assert cfg["lago"].api_key.get_secret_value() == env.lago.api_key  # type: ignore[union-attr]

        async def scenario() -> None:
            await env.start()
            env.set_faults(FAULTS)
            env.close_won(DEALS)
            await env.wait_settled(timeout=150)
            env.advance_billing(35)
            await env.wait_settled(timeout=150)
            # Records that cannot be mapped: dead letters with reasons, next to the faults' retries.
            route = env.hub.routes["won-opportunity-to-billing"]
            route.submit([{"Id": "006Dx00000BADREC1", "CurrencyIsoCode": "USD"}, {"Name": "no id"}])
            # Errors raised by the connectors themselves, as an operator's script would see them.
            lago = env.hub.systems["lago"].client  # type: ignore[attr-defined]
            calls: list[Callable[[], Awaitable[Any]]] = [
                lambda: lago.request("GET", "/invoices/not-a-real-id", "invoices.get"),
                lambda: lago.request("POST", "/customers", "customers.create", body={"customer": {}}),
            ]
            for call in calls:
                try:
                    await call()
                except DeliveryError as exc:
                    raised.extend([str(exc), exc.describe(), repr(exc)])
                except Exception as exc:
                    raised.extend([str(exc), repr(exc)])
            env.set_faults({})
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env.web_port}", timeout=10) as web:
                texts["/metrics"] = (await web.get("/metrics")).text
                listing = await web.get(
                    "/admin/dead-letters", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
                assert listing.status_code == 200
                texts["/admin/dead-letters"] = listing.text
                refused = await web.get("/admin/dead-letters", headers={"Authorization": "Bearer wrong"})
                assert refused.status_code == 401
            await env.stop()

        with captured_stdlib_logs(logging.DEBUG) as stdlib_lines:
            asyncio.run(scenario())
        watch.stop()
        progress = env.progress()
        texts["structlog (DEBUG)"] = structlog_out.getvalue()
        texts["stdlib logging (DEBUG)"] = "\n".join(stdlib_lines)
        texts["state store (every table)"] = _store_dump(tmp_path / "l2c" / "state.db")
        texts["raised errors"] = "\n".join(raised)
        texts["dead letters (reasons, payloads, attempts)"] = "\n".join(
            f"{d.error_message}\n{d.original_payload}\n{d.canonical_payload}\n{d.attempts}"
            for d in env.hub.store.dlq_list(None, None, 10_000)
        )

        tokens = dict(watch.tokens)
        assert any(k.startswith("salesforce access token") for k in tokens), "no Salesforce token was issued"
        assert len([k for k in tokens if k.startswith("salesforce")]) >= 2, "sessions never expired"
        assert progress.retries > 0, "the faults were not felt"
        assert progress.dead_letters >= 2
        assert raised, "the connector calls raised nothing"
        # The scan covers the error paths: route retries and connector repeats (the DEBUG level) were logged.
        events = texts["structlog (DEBUG)"]
        assert '"event": "retrying"' in events and '"event": "repeating a call"' in events, events[-2000:]
        assert len(events) > 5_000 and len(texts["stdlib logging (DEBUG)"]) > 1_000

        hits = secret_hits({**secrets, **tokens}, texts)
        assert hits == [], hits[:20]
        report(
            "7-secrets",
            deals=DEALS,
            faults=FAULTS["salesforce"]["*"],
            retries=progress.retries,
            dead_letters=progress.dead_letters,
            dead_letter_reasons=sorted(
                {d.error_message[:120] for d in env.hub.store.dlq_list(None, None, 100)}
            ),
            secrets_checked=len(secrets),
            tokens_checked=len(tokens),
            log_bytes=sum(len(t) for t in texts.values()),
            occurrences=0,
        )
    finally:
        watch.stop()
        configure_logging("WARNING")
        env.close()
