"""The OData client's edge cases against respx: CSRF retry, error bodies, classification, paging, OAuth."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import pytest
import respx

from lead2cash.connectors.sap.odata import BasicCredentials, OAuthClientCredentials, ODataClient, eq
from lead2cash.errors import PermanentError, ThrottledError, TransientError

BASE = "https://s4.example.com"
BP = "/sap/opu/odata/sap/API_BUSINESS_PARTNER"


def _client(**kw) -> ODataClient:  # type: ignore[no-untyped-def]
    return ODataClient(
        BASE,
        kw.pop("creds", BasicCredentials("U", "secret-pw")),
        use_aiohttp=False,
        sap_client="100",
        page_size=2,
        **kw,
    )


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def sap_error(status: int, message: str, details=()) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = {
        "error": {
            "code": "R11/124",
            "message": {"lang": "en", "value": message},
            "innererror": {
                "errordetails": [
                    {"code": c, "message": m, "target": t, "severity": "error"} for c, m, t in details
                ]
            },
        }
    }
    return httpx.Response(status, json=body)


@respx.mock
def test_csrf_token_is_fetched_once_and_refreshed_on_validation_failure() -> None:
    tokens = iter(["tok-1", "tok-2"])
    fetch = respx.get(f"{BASE}{BP}/").mock(
        side_effect=lambda req: httpx.Response(
            200,
            json={"d": {}},
            headers={"x-csrf-token": next(tokens), "set-cookie": "SAP_SESSIONID_S4H_100=abc; path=/"},
        )
    )
    seen: list[str] = []

    def create(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-csrf-token"])
        assert request.url.params["sap-client"] == "100"
        assert "SAP_SESSIONID_S4H_100=abc" in request.headers.get("cookie", "")
        if len(seen) == 2:
            return httpx.Response(
                403, text="CSRF token validation failed", headers={"x-csrf-token": "Required"}
            )
        return httpx.Response(201, json={"d": {"BusinessPartner": f"100000{len(seen)}"}})

    respx.post(f"{BASE}{BP}/A_BusinessPartner").mock(side_effect=create)

    async def go() -> list[str]:
        client = _client()
        out = [(await client.create(BP, "A_BusinessPartner", {"X": 1}))["BusinessPartner"] for _ in range(2)]
        await client.aclose()
        return out

    assert run(go()) == ["1000001", "1000003"]
    assert seen == ["tok-1", "tok-1", "tok-2"]
    assert fetch.call_count == 2
    assert fetch.calls[0].request.headers["x-csrf-token"] == "Fetch"
    assert fetch.calls[0].request.headers["authorization"].startswith("Basic ")


@respx.mock
def test_csrf_failure_twice_is_not_retried_forever() -> None:
    respx.get(f"{BASE}{BP}/").mock(return_value=httpx.Response(200, headers={"x-csrf-token": "t"}))
    post = respx.post(f"{BASE}{BP}/A_BusinessPartner").mock(
        return_value=httpx.Response(
            403, text="CSRF token validation failed", headers={"x-csrf-token": "Required"}
        )
    )
    # Twice in a row: the session went away in between; transient, so the route retries with backoff.
    with pytest.raises(TransientError, match="CSRF token validation failed"):
        run(_client().create(BP, "A_BusinessPartner", {}))
    assert post.call_count == 2


@respx.mock
def test_sap_error_body_gives_message_and_details() -> None:
    respx.get(f"{BASE}{BP}/").mock(return_value=httpx.Response(200, headers={"x-csrf-token": "t"}))
    respx.post(f"{BASE}{BP}/A_BusinessPartner").mock(
        return_value=sap_error(
            400,
            "Enter a reconciliation account",
            [
                ("F2/414", "Enter a reconciliation account", "ReconciliationAccount"),
                ("R11/999", "Other detail", ""),
            ],
        )
    )
    with pytest.raises(PermanentError) as info:
        run(_client().create(BP, "A_BusinessPartner", {}))
    text = info.value.describe()
    assert info.value.message == "SAP create A_BusinessPartner failed: Enter a reconciliation account"
    assert (
        "sap_code=R11/124" in text
        and "fields=ReconciliationAccount" in text
        and "R11/999: Other detail" in text
    )
    assert "secret-pw" not in text


@pytest.mark.parametrize(
    ("response", "error", "retry_after"),
    [
        (httpx.Response(429, headers={"retry-after": "7"}, text="slow down"), ThrottledError, 7.0),
        (
            httpx.Response(
                503,
                headers={"retry-after": "2"},
                json={"error": {"code": "/IWFND/CM_BEC/026", "message": {"value": "Service unavailable"}}},
            ),
            TransientError,
            2.0,
        ),
        (httpx.Response(500, text="<html><body>Internal Server Error</body></html>"), TransientError, None),
        (
            httpx.Response(
                404,
                text='<?xml version="1.0"?><error><code>/IWBEP/CM_MGW_RT/020</code><message xml:lang="en">Resource not found</message></error>',
            ),
            PermanentError,
            None,
        ),
        (httpx.Response(401, text="Logon failed"), PermanentError, None),
    ],
)
@respx.mock
def test_classification(response, error, retry_after) -> None:  # type: ignore[no-untyped-def]
    respx.get(f"{BASE}{BP}/A_BusinessPartner").mock(return_value=response)
    with pytest.raises(error) as info:
        run(_client(retries=0).query(BP, "A_BusinessPartner", filter=eq("SearchTerm1", "X")))
    assert type(info.value) is error
    assert info.value.retry_after == retry_after
    if response.status_code == 404:
        assert (
            "Resource not found" in info.value.message
            and info.value.details["sap_code"] == "/IWBEP/CM_MGW_RT/020"
        )


@respx.mock
def test_timeouts_and_resets_are_transient() -> None:
    respx.get(f"{BASE}{BP}/A_BusinessPartner").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError, match="timed out"):
        run(_client(retries=0).query(BP, "A_BusinessPartner"))
    respx.get(f"{BASE}{BP}/A_BusinessPartner").mock(side_effect=httpx.RemoteProtocolError("reset"))
    with pytest.raises(TransientError, match="RemoteProtocolError"):
        run(_client(retries=0).query(BP, "A_BusinessPartner"))


UNAVAILABLE = {"error": {"code": "/IWFND/CM_BEC/026", "message": {"value": "Service unavailable"}}}


@respx.mock
def test_reads_are_repeated_quickly_on_transient_errors_writes_only_on_429() -> None:
    read = respx.get(f"{BASE}{BP}/A_BusinessPartner").mock(
        side_effect=[
            httpx.Response(503, json=UNAVAILABLE),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json={"d": {"results": [{"BusinessPartner": "1000001"}]}}),
        ]
    )
    rows = run(_client(retries=2).query(BP, "A_BusinessPartner", filter=eq("SearchTerm1", "X")))
    assert rows == [{"BusinessPartner": "1000001"}] and read.call_count == 3

    # One more failure than the retries allow goes up to the route.
    read.reset()
    read.mock(side_effect=[httpx.Response(503, json=UNAVAILABLE)] * 3)
    with pytest.raises(TransientError, match="Service unavailable"):
        run(_client(retries=2).query(BP, "A_BusinessPartner"))
    assert read.call_count == 3

    # A Retry-After beyond max_inline_wait is the route's to honour (it pauses), not slept through here.
    read.reset()
    read.mock(return_value=httpx.Response(429, headers={"retry-after": "30"}, text="slow down"))
    with pytest.raises(ThrottledError):
        run(_client(retries=4, max_inline_wait=5).query(BP, "A_BusinessPartner"))
    assert read.call_count == 1

    respx.get(f"{BASE}{BP}/").mock(return_value=httpx.Response(200, headers={"x-csrf-token": "t"}))
    write = respx.post(f"{BASE}{BP}/A_BusinessPartner").mock(
        return_value=httpx.Response(503, json=UNAVAILABLE)
    )
    # A failed write may have been applied: it goes up at once, for the route to look it up first.
    with pytest.raises(TransientError):
        run(_client(retries=4).create(BP, "A_BusinessPartner", {"BusinessPartnerCategory": "2"}))
    assert write.call_count == 1
    # A 429 is answered before any work, so a write is repeated on it.
    write.reset()
    write.mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "0"}, text="slow down"),
            httpx.Response(201, json={"d": {"BusinessPartner": "1000002"}}),
        ]
    )
    created = run(_client(retries=4).create(BP, "A_BusinessPartner", {"BusinessPartnerCategory": "2"}))
    assert created == {"BusinessPartner": "1000002"} and write.call_count == 2


@respx.mock
def test_paging_follows_next_links_and_skip_top() -> None:
    calls: list[dict[str, str]] = []

    def page(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        skip = int(params.get("$skip", "0")) + int(params.get("$skiptoken", "0"))
        rows = [{"BusinessPartner": str(i), "Amount": "1.10"} for i in range(skip, min(skip + 1, 5))]
        d: dict = {"results": rows}
        # The server pages at 1 inside our $top=2 with a __next link.
        if "$skiptoken" not in params and skip + 1 < 5:
            d["__next"] = (
                f"{BASE}{BP}/A_BusinessPartner?$top=2&$skip={params['$skip']}&$skiptoken=1&sap-client=100"
            )
        return httpx.Response(200, content=json.dumps({"d": d}))

    respx.get(f"{BASE}{BP}/A_BusinessPartner").mock(side_effect=page)
    rows = run(
        _client().query(BP, "A_BusinessPartner", filter=eq("SearchTerm1", "O'X"), select=["BusinessPartner"])
    )
    assert [r["BusinessPartner"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["Amount"] == "1.10"
    assert calls[0]["$filter"] == "SearchTerm1 eq 'O''X'" and calls[0]["$top"] == "2"
    assert [c.get("$skip") for c in calls if "$skiptoken" not in c] == ["0", "2", "4"]
    limited = run(_client().query(BP, "A_BusinessPartner", limit=1))
    assert len(limited) == 1


@respx.mock
def test_oauth_token_is_cached_and_refreshed_after_401() -> None:
    issued = iter(["a1", "a2"])
    token = respx.post("https://auth.example.com/token").mock(
        side_effect=lambda req: httpx.Response(200, json={"access_token": next(issued), "expires_in": 3600})
    )
    seen: list[str] = []

    def read(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if len(seen) == 2:
            return httpx.Response(401, text="expired")
        return httpx.Response(200, json={"d": {"BusinessPartner": "1"}})

    respx.get(url__regex=rf"{BASE}{BP}/A_BusinessPartner\(.*").mock(side_effect=read)
    creds = OAuthClientCredentials("https://auth.example.com/token", "cid", "csecret")

    async def go() -> None:
        client = _client(creds=creds)
        for _ in range(3):
            assert await client.get_entity(BP, "A_BusinessPartner", {"BusinessPartner": "1"}) == {
                "BusinessPartner": "1"
            }

    run(go())
    assert seen == ["Bearer a1", "Bearer a1", "Bearer a2", "Bearer a2"]
    assert token.call_count == 2
    form = token.calls[0].request.content.decode()
    assert "grant_type=client_credentials" in form and "csecret" not in form  # secret in the Basic header


@respx.mock
def test_refused_client_credentials_are_permanent() -> None:
    respx.post("https://auth.example.com/token").mock(
        return_value=httpx.Response(401, json={"error": "invalid_client"})
    )
    creds = OAuthClientCredentials("https://auth.example.com/token", "cid", "bad")
    with pytest.raises(PermanentError, match="refused") as info:
        run(_client(creds=creds).query(BP, "A_BusinessPartner"))
    assert info.value.details["error"] == "invalid_client"


@respx.mock
def test_missing_entity_is_none_and_decimals_stay_exact() -> None:
    respx.get(url__regex=rf"{BASE}{BP}/A_CustomerCompany\(Customer='1',CompanyCode='1010'\).*").mock(
        return_value=httpx.Response(404, json={"error": {"code": "x", "message": {"value": "not found"}}})
    )
    respx.get(url__regex=rf"{BASE}{BP}/A_CustomerCompany\(Customer='2',CompanyCode='1010'\).*").mock(
        return_value=httpx.Response(200, content=b'{"d": {"Amount": 0.1}}')
    )
    client = _client()
    assert run(client.get_entity(BP, "A_CustomerCompany", {"Customer": "1", "CompanyCode": "1010"})) is None
    row = run(client.get_entity(BP, "A_CustomerCompany", {"Customer": "2", "CompanyCode": "1010"}))
    assert row == {"Amount": Decimal("0.1")}
