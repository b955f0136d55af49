"""The HTTP kit's client slot and auth flows over a MockTransport: one client per loop, one token for many
calls and connectors, refresh on expiry and on 401, SAP's CSRF fetch with its cookie applied."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from lead2cash.connectors.http import ClientCredentials, ClientSlot, SapAuth, TokenCache
from lead2cash.errors import PermanentError

TOKEN_URL = "https://auth.example.com/token"


def test_slot_keeps_one_client_per_loop_and_replaces_a_finished_loops() -> None:
    slot = ClientSlot(lambda: httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))))

    async def use() -> httpx.AsyncClient:
        first = await slot.get()
        assert await slot.get() is first  # one client for the loop's life
        assert (await first.get("http://x/")).status_code == 204
        return first

    a = asyncio.run(use())
    assert a.is_closed  # the loop that made it closed it as it ended
    b = asyncio.run(use())  # so the next loop gets a client of its own
    assert a is not b and slot.made == 2

    async def hub_shutdown() -> None:
        client = await slot.get()
        await slot.aclose()
        assert client.is_closed and slot.current is None

    asyncio.run(hub_shutdown())


def oauth_server(
    log: list[str], *, reject: set[str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    issued = iter(f"t{i}" for i in range(1, 100))

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            assert request.headers["authorization"].startswith("Basic ")  # client auth, not in the form
            assert b"secret" not in request.content
            token = next(issued)
            log.append(f"issue {token}")
            return httpx.Response(200, json={"access_token": token, "expires_in": 3600})
        bearer = request.headers["authorization"].removeprefix("Bearer ")
        log.append(f"call {bearer}")
        return httpx.Response(401 if bearer in (reject or set()) else 200)

    return handle


def test_client_credentials_fetch_once_refresh_on_401_and_share_the_cache() -> None:
    log: list[str] = []
    cache = TokenCache()
    handler = oauth_server(log, reject={"t1"})

    async def go() -> list[int]:
        transport = httpx.MockTransport(handler)
        one = httpx.AsyncClient(
            transport=transport, auth=ClientCredentials(TOKEN_URL, "cid", "secret", cache=cache)
        )
        two = httpx.AsyncClient(
            transport=transport, auth=ClientCredentials(TOKEN_URL, "cid", "secret", cache=cache)
        )
        # Five concurrent calls wait for one token request, not five.
        first = await asyncio.gather(*(one.get("https://api.example.com/a") for _ in range(5)))
        second = await two.get("https://api.example.com/b")
        return [r.status_code for r in [*first, second]]

    assert asyncio.run(go()) == [200] * 6
    # t1 was refused (401): each call sent once more with t2, fetched once; the second client reuses t2.
    assert (
        log.count("issue t1") == 1
        and log.count("issue t2") == 1
        and len([x for x in log if "issue" in x]) == 2
    )
    assert log[-1] == "call t2"


def test_client_credentials_refresh_on_expiry_and_refused_grant_is_permanent() -> None:
    log: list[str] = []

    async def go() -> None:
        auth = ClientCredentials(TOKEN_URL, "cid", "secret", cache=TokenCache())
        client = httpx.AsyncClient(transport=httpx.MockTransport(oauth_server(log)), auth=auth)
        auth.cache.put(auth.key, "stale", lifetime=-1)  # a token past its lifetime is never sent
        await client.get("https://api.example.com/a")

        refused = httpx.MockTransport(lambda r: httpx.Response(401, json={"error": "invalid_client"}))
        bad = httpx.AsyncClient(
            transport=refused, auth=ClientCredentials(TOKEN_URL, "cid", "x", cache=TokenCache())
        )
        with pytest.raises(PermanentError, match="refused") as info:
            await bad.get("https://api.example.com/a")
        assert info.value.details["error"] == "invalid_client"

    asyncio.run(go())
    assert log == ["issue t1", "call t1"]


def test_sap_auth_fetches_csrf_applies_its_cookie_and_refreshes_on_required() -> None:
    seen: list[tuple[str, str, str]] = []
    fetched = iter(["c1", "c2"])

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(
            (request.method, request.headers.get("x-csrf-token", ""), request.headers.get("cookie", ""))
        )
        assert request.headers["authorization"].startswith("Basic ")
        if request.method == "GET":
            await asyncio.sleep(0.01)  # the other write is built and waits meanwhile
            token = next(fetched)
            return httpx.Response(
                200, headers={"x-csrf-token": token, "set-cookie": f"SAP_SESSION={token}; path=/"}
            )
        if len([s for s in seen if s[0] == "POST"]) == 3:  # the session expired after two writes
            return httpx.Response(403, headers={"x-csrf-token": "Required"})
        return httpx.Response(201)

    async def go() -> list[int]:
        client = httpx.AsyncClient(
            transport=httpx.MockTransport(handle),
            auth=SapAuth(httpx.BasicAuth("U", "pw"), cache=TokenCache()),
        )
        root = {"sap_csrf_url": "https://s4.example.com/sap/opu/odata/sap/API/"}

        async def write() -> int:
            url = "https://s4.example.com/sap/opu/odata/sap/API/Set"
            return (await client.post(url, extensions=root)).status_code

        both = await asyncio.gather(write(), write())  # the second waits on the first one's fetch
        return [*both, await write()]

    assert asyncio.run(go()) == [201, 201, 201]
    assert seen == [
        ("GET", "Fetch", ""),
        # The fetch's session cookie on both, though both were built before it answered.
        ("POST", "c1", "SAP_SESSION=c1"),
        ("POST", "c1", "SAP_SESSION=c1"),
        ("POST", "c1", "SAP_SESSION=c1"),
        ("GET", "Fetch", ""),  # a fresh session: the fetch does not send the expired one
        ("POST", "c2", "SAP_SESSION=c2"),
    ]
