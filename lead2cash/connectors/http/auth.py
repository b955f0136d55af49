"""Logons as ``httpx.Auth`` flows over one ``TokenCache``: OAuth 2.0 client credentials
(``ClientCredentials``) and SAP Gateway's CSRF handshake on top of a logon (``SapAuth``).

A flow sends its own token requests through the client it is attached to (same TLS, pool and transport),
so a connector only says which logon it uses; the cache keeps one token per token endpoint and client id,
fetched by one request at a time however many calls wait for it.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass

import httpx
import structlog

from lead2cash.connectors.http.retry_after import retry_after_of
from lead2cash.connectors.http.session import LoopLock
from lead2cash.connectors.http.status import StatusTable
from lead2cash.errors import PermanentError, TransientError
from lead2cash.observability import REDACTOR

log = structlog.get_logger("lead2cash.connectors.http")

JSON = "application/json"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class _Entry:
    value: str
    expires: float  # monotonic; inf for a token that lasts until refused


class TokenCache:
    """Tokens by key until they expire or are refused; one fetch per key at a time (``lock``)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], _Entry] = {}
        self._locks: dict[tuple[str, ...], LoopLock] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() >= entry.expires:
            return None
        return entry.value

    def put(self, key: tuple[str, ...], value: str, lifetime: float | None = None) -> None:
        expires = float("inf") if lifetime is None else time.monotonic() + lifetime
        self._entries[key] = _Entry(value, expires)
        REDACTOR.add_issued(value)  # an issued token is a secret in every log line from now on

    def invalidate(self, key: tuple[str, ...], value: str | None = None) -> None:
        """Forget the token, unless ``value`` is given and another call has already replaced it."""
        entry = self._entries.get(key)
        if entry is not None and (value is None or entry.value == value):
            self._entries.pop(key, None)  # SOAP's worker threads may invalidate the same token at once

    def lock(self, key: tuple[str, ...]) -> LoopLock:
        return self._locks.setdefault(key, LoopLock())


TOKENS = TokenCache()  # the hub's: two connectors with the same client id share one token


def oauth_key(token_url: str, client_id: str, client_secret: str, scope: str | None) -> tuple[str, ...]:
    """The cache key of a client-credentials token; the secret's digest too, so other credentials for the
    same client id never get this token."""
    digest = hashlib.sha256(client_secret.encode()).hexdigest()[:16]
    return ("oauth", token_url, client_id, scope or "", digest)


def token_lifetime(body: dict[str, object], margin_s: float = 30.0) -> float:
    """How long to use a token: ``expires_in`` (300 s if absent) less a margin, at least 10 s."""
    return max(10.0, float(str(body.get("expires_in") or 300)) - margin_s)


async def _next(
    flow: AsyncGenerator[httpx.Request, httpx.Response], response: httpx.Response
) -> httpx.Request | None:
    try:
        return await flow.asend(response)
    except StopAsyncIteration:
        return None


class ClientCredentials(httpx.Auth):
    """OAuth 2.0 client credentials (RFC 6749 §4.4; the client authenticates with HTTP Basic, §2.3.1): a
    token fetched once, refreshed shortly before it expires or when a call is answered 401 (then the call
    is sent once more). A refused grant (400/401/403) is permanent; other failures follow ``table``."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        system: str = "OAuth",
        table: StatusTable | None = None,
        cache: TokenCache = TOKENS,
        margin_s: float = 30.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.system = system
        self.table = table or StatusTable(system)
        self.cache = cache
        self.margin_s = margin_s
        self.key = oauth_key(token_url, client_id, client_secret, scope)
        self.fetches = 0

    def __repr__(self) -> str:  # never print the secret
        return f"ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials", **({"scope": self.scope} if self.scope else {})}
        basic = httpx.BasicAuth(self.client_id, self._secret)
        request = httpx.Request("POST", self.token_url, data=form, headers={"accept": JSON})
        return next(basic.auth_flow(request))

    def accept(self, response: httpx.Response) -> str:
        """The token of a token response, cached; the error for a failed one."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        if status in (400, 401, 403):
            raise PermanentError(
                f"{self.system} OAuth token request was refused",
                details={"status": status, "error": str(body.get("error", ""))[:100]},
            )
        if status != 200:
            raise self.table.error(
                status,
                f"{self.system} OAuth token request failed ({status})",
                retry_after=retry_after_of(response.headers),
                details={"status": status},
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TransientError(f"{self.system} OAuth token response carried no access_token")
        self.cache.put(self.key, token, token_lifetime(body, self.margin_s))
        self.fetches += 1
        return token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ClientCredentials serves async clients only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self.cache.get(self.key)
        for refreshed in (False, True):
            if token is None:
                async with self.cache.lock(self.key).get():
                    token = self.cache.get(self.key)  # another call may have fetched it meanwhile
                    if token is None:
                        answer = yield self.token_request()
                        await answer.aread()
                        token = self.accept(answer)
            request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            if response.status_code != 401 or refreshed:
                return
            # Revoked or expired early: forget it (unless another call already has) and send once more.
            self.cache.invalidate(self.key, token)
            token = None


_csrf_ids = itertools.count(1)


class SapAuth(httpx.Auth):
    """SAP Gateway: ``logon`` (Basic or ``ClientCredentials``) on every request, and on a modifying one the
    ``X-CSRF-Token`` fetched with ``GET`` + ``x-csrf-token: Fetch``. The token is bound to the session cookie
    the fetch answers, so that cookie is applied with the token (the client's jar has it only for requests
    built after the fetch, not for those that waited on it); on ``403`` with ``x-csrf-token: Required``
    (the session expired) the token is fetched again and the request sent once more.

    One instance per httpx client: the token belongs to that client's session. The fetch goes to the URL
    in the request's ``sap_csrf_url`` extension (the service root), else to the request's own URL."""

    def __init__(self, logon: httpx.Auth, *, cache: TokenCache = TOKENS) -> None:
        self.logon = logon
        self.cache = cache
        self.key = ("sap-csrf", str(next(_csrf_ids)))
        self.cookies: dict[str, str] = {}  # the session the token is bound to
        self.fetches = 0

    def forget(self, token: str | None = None) -> None:
        self.cache.invalidate(self.key, token)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("SapAuth serves async clients only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if request.method in SAFE_METHODS:
            flow = self.logon.async_auth_flow(request)
            try:
                outgoing: httpx.Request | None = await flow.__anext__()
                while outgoing is not None:
                    outgoing = await _next(flow, (yield outgoing))
            finally:
                await flow.aclose()
            return
        for refreshed in (False, True):
            token = self.cache.get(self.key)
            if token is None:
                async with self.cache.lock(self.key).get():
                    token = self.cache.get(self.key)
                    if token is None:
                        url = request.extensions.get("sap_csrf_url") or str(request.url)
                        fetch = httpx.Request("GET", url, headers={"x-csrf-token": "Fetch", "accept": JSON})
                        flow = self.logon.async_auth_flow(fetch)
                        try:
                            outgoing = await flow.__anext__()
                            while outgoing is not None:
                                answer = yield outgoing
                                outgoing = await _next(flow, answer)
                        finally:
                            await flow.aclose()
                        token = await self._accept(answer)
            request.headers["x-csrf-token"] = token
            # Every write carries the token's session, also those built before the fetch answered.
            _apply_cookies(self.cookies, request)
            flow = self.logon.async_auth_flow(request)
            try:
                outgoing = await flow.__anext__()
                while outgoing is not None:
                    response = yield outgoing
                    outgoing = await _next(flow, response)
            finally:
                await flow.aclose()
            if refreshed or response.status_code != 403:
                return
            await response.aread()  # SAP may say it in the body only
            if not csrf_refused(response):
                return
            self.forget(token)
            log.info("CSRF token rejected; fetching a fresh one", path=request.url.path)

    async def _accept(self, answer: httpx.Response) -> str:
        if answer.status_code >= 400:
            await answer.aread()
            # The caller classifies it like any answer of SAP's: raised with the response attached.
            raise CsrfFetchFailed(answer)
        token = str(answer.headers.get("x-csrf-token") or "")
        if not token or token.lower() == "required":
            raise TransientError("SAP did not return a CSRF token", details={"status": answer.status_code})
        jar = httpx.Cookies()
        jar.extract_cookies(answer)
        self.cookies = {cookie.name: cookie.value or "" for cookie in jar.jar}
        self.cache.put(self.key, token)
        self.fetches += 1
        return token


class CsrfFetchFailed(Exception):
    """The CSRF fetch was answered with an error; the connector classifies ``response`` as SAP's answer."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"CSRF token fetch answered {response.status_code}")
        self.response = response


def csrf_refused(response: httpx.Response) -> bool:
    """SAP's ``403`` for a CSRF token it does not accept (header ``Required``, or the message in the body)."""
    if response.status_code != 403:
        return False
    if response.headers.get("x-csrf-token", "").lower() == "required":
        return True
    try:
        content = response.content
    except httpx.ResponseNotRead:
        return False
    return b"CSRF token validation failed" in content[:1000]


def _apply_cookies(cookies: dict[str, str], request: httpx.Request) -> None:
    """``cookies`` merged into ``request``'s Cookie header (over the client jar's, which may be older)."""
    if not cookies:
        return
    pairs = dict(part.split("=", 1) for part in request.headers.get("cookie", "").split("; ") if "=" in part)
    pairs.update(cookies)
    request.headers["cookie"] = "; ".join(f"{name}={value}" for name, value in pairs.items())
