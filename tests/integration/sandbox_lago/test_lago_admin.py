"""Sandbox controls that need a private instance: the enforced rate limit and reset to the seed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from lead2cash.sandbox.lago import LagoSandbox


def run(sandbox: LagoSandbox, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=sandbox.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="https://lago.test") as client:
            return await scenario(client)

    return asyncio.run(main())


def test_enforced_rate_limit_answers_429_with_lago_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lead2cash.sandbox.lago.app.monotonic", lambda: 1000.0)  # one rate window
    sandbox = LagoSandbox(seed=5, seed_size=1, rate_limit_per_s=3)
    auth = {"Authorization": f"Bearer {sandbox.api_key}"}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get("/api/v1/plans", headers=auth) for _ in range(4)]

    responses = run(sandbox, scenario)
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert responses[0].headers["X-RateLimit-Limit"] == "3"
    assert responses[3].headers["Retry-After"] == "1"
    assert responses[3].json() == {"status": 429, "error": "Too Many Requests", "code": "too_many_requests"}


def test_reset_restores_the_seeded_state() -> None:
    sandbox = LagoSandbox(seed=5, seed_size=2)
    auth = {"Authorization": f"Bearer {sandbox.api_key}"}

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, ...]:
        seeded = (await client.get("/api/v1/customers", headers=auth)).json()["customers"]
        await client.post("/api/v1/customers", headers=auth, json={"customer": {"external_id": "extra"}})
        await client.post("/__sandbox/lago/clock", json={"days": 40})
        grown = (await client.get("/api/v1/customers", headers=auth)).json()["meta"]["total_count"]
        reset = await client.post("/__sandbox/reset")
        after = (await client.get("/api/v1/customers", headers=auth)).json()["customers"]
        clock = (await client.get("/__sandbox/lago/clock")).json()
        return seeded, grown, reset.status_code, after, clock

    seeded, grown, reset_status, after, clock = run(sandbox, scenario)
    assert grown == 3 and reset_status == 200
    assert after == seeded  # same ids, same data: the seed is deterministic
    assert clock["today"] == "2026-01-01"
