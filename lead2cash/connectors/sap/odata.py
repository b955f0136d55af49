"""SAP OData V2 over httpx: Basic or OAuth 2.0 client-credentials logon, the CSRF token handshake, escaped
``$filter`` literals, paging and SAP Gateway error bodies classified into the hub's error classes.

CSRF and logon are the HTTP kit's ``SapAuth`` flow (``connectors/http/auth.py``) on the client: SAP Gateway
binds the token to the session cookie; it is fetched with ``GET <service>/`` and ``x-csrf-token: Fetch``,
and on ``403 CSRF token validation failed`` a fresh one is fetched and the write sent once more (sessions
expire, and SAP answers that way when they do). OAuth tokens come from the kit's ``ClientCredentials``.
The httpx client lives as long as the hub (``ClientSlot``).

``$batch`` is not used: the hub's writes are one deep insert per new business partner, and journal entries go
in bulk SOAP messages; partner reads are gathered into one query (``or`` of search keys) instead.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import structlog

from lead2cash.connectors.http import (
    SAP_ODATA,
    ClientCredentials,
    ClientSlot,
    SapAuth,
    csrf_refused,
    retry_after_of,
)
from lead2cash.connectors.http.auth import CsrfFetchFailed
from lead2cash.connectors.quick_retry import quick_retry
from lead2cash.errors import DeliveryError, TransientError

log = structlog.get_logger("lead2cash.connectors.sap.odata")

JSON = "application/json"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}(/[A-Za-z_][A-Za-z0-9_]{0,127})*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_ERROR_TEXT = 500


# ---------------------------------------------------------------------------------------------- literals
class ODataLiteralError(ValueError):
    """A value that cannot be written as an OData V2 literal (the query is never sent)."""


def odata_literal(value: Any) -> str:
    """``value`` as an OData V2 URI literal: strings quoted with ``'`` doubled, typed prefixes for datetime
    and guid, ``M`` for decimals. The only way data gets into a ``$filter`` in this package."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L" if abs(value) > 2**31 - 1 else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ODataLiteralError(f"cannot write {value} as an OData decimal")
        return f"{format(value, 'f')}M"
    if isinstance(value, float):
        raise ODataLiteralError("floats are not accepted in filters; use Decimal")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return f"datetimeoffset'{value.isoformat()}'"
        return f"datetime'{value.strftime('%Y-%m-%dT%H:%M:%S')}'"
    if isinstance(value, date):
        return f"datetime'{value.isoformat()}T00:00:00'"
    if isinstance(value, uuid.UUID):
        return f"guid'{value}'"
    if isinstance(value, str):
        # Control characters have no place in a key and some gateways cut the URL at them.
        if _CONTROL.search(value):
            raise ODataLiteralError("string literal contains control characters")
        return "'" + value.replace("'", "''") + "'"
    raise ODataLiteralError(f"unsupported literal type {type(value).__name__}")


def odata_property(name: str) -> str:
    """A property path checked to be an identifier (``A/B`` for navigation paths)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ODataLiteralError(f"not an OData property name: {name!r}")
    return name


def eq(name: str, value: Any) -> str:
    return f"{odata_property(name)} eq {odata_literal(value)}"


def and_(*clauses: str) -> str:
    parts = [c for c in clauses if c]
    return " and ".join(f"({c})" if " or " in c else c for c in parts)


def key_predicate(keys: Mapping[str, Any]) -> str:
    """``('1000001')`` or ``(Customer='1',CompanyCode='1010')`` with escaped literals."""
    if len(keys) == 1:
        return f"({odata_literal(next(iter(keys.values())))})"
    return "(" + ",".join(f"{odata_property(k)}={odata_literal(v)}" for k, v in keys.items()) + ")"


# ---------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class SapError:
    status: int
    code: str | None
    message: str
    details: tuple[tuple[str, str, str], ...] = ()  # (code, message, target)


def parse_error(response: httpx.Response) -> SapError:
    """SAP Gateway's JSON (or XML, or plain text) error body as code, message and inner details."""
    code: str | None = None
    message = ""
    details: list[tuple[str, str, str]] = []
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or "") or None
        msg = error.get("message")
        message = str(msg.get("value", "")) if isinstance(msg, dict) else str(msg or "")
        inner = error.get("innererror")
        if isinstance(inner, dict):
            for d in inner.get("errordetails") or []:
                if isinstance(d, dict):
                    details.append(
                        (str(d.get("code") or ""), str(d.get("message") or ""), str(d.get("target") or ""))
                    )
    else:
        text = response.text if response.content else ""
        match = re.search(r"<message[^>]*>(.*?)</message>", text, re.S)
        if match:
            message = match.group(1).strip()
            code_match = re.search(r"<code>(.*?)</code>", text, re.S)
            code = code_match.group(1).strip() if code_match else None
        else:
            message = re.sub(r"<[^>]+>", " ", text)
            message = " ".join(message.split())
    message = message[:MAX_ERROR_TEXT] or response.reason_phrase or f"HTTP {response.status_code}"
    return SapError(response.status_code, code, message, tuple(details))


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after_of(response.headers)


def classify(response: httpx.Response, what: str) -> DeliveryError:
    """The hub's error class for a failed OData response, with SAP's message and details."""
    error = parse_error(response)
    details: dict[str, Any] = {"status": error.status}
    if error.code:
        details["sap_code"] = error.code
    inner = [f"{c}: {m}" + (f" [{t}]" if t else "") for c, m, t in error.details if m and m != error.message]
    if inner:
        details["sap_details"] = " | ".join(inner)[:MAX_ERROR_TEXT]
    targets = sorted({t for _, _, t in error.details if t})
    if targets:
        details["fields"] = ",".join(targets)
    text = f"SAP {what} failed: {error.message}"
    return SAP_ODATA.error(error.status, text, retry_after=_retry_after(response), details=details)


# ---------------------------------------------------------------------------------------------- auth
@dataclass(frozen=True)
class BasicCredentials:
    username: str
    password: str

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class OAuthClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None


Credentials = BasicCredentials | OAuthClientCredentials


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """TLS verification against the configured CA bundle (or the system store); never disabled."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


# ---------------------------------------------------------------------------------------------- client
class ODataClient:
    """An async OData V2 client for one SAP system (several services under one logon and session)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        sap_client: str | None = None,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        page_size: int = 500,
        use_aiohttp: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 4,
        max_inline_wait: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.max_inline_wait = max_inline_wait
        self.credentials = credentials
        self.sap_client = sap_client
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.page_size = page_size
        self._use_aiohttp = use_aiohttp
        self._transport = transport
        self._oauth = isinstance(credentials, OAuthClientCredentials)
        self.slot = ClientSlot(self._new_client)
        self.calls = 0

    # --- plumbing ---------------------------------------------------------------------------------------
    def url(self, service: str, path: str = "") -> str:
        """``service`` is a full URL or a path under ``base_url``."""
        root = (
            service
            if service.startswith(("http://", "https://"))
            else self.base_url + "/" + service.lstrip("/")
        )
        return root.rstrip("/") + ("/" + path.lstrip("/") if path else "")

    def _logon(self) -> httpx.Auth:
        creds = self.credentials
        if isinstance(creds, BasicCredentials):
            return httpx.BasicAuth(creds.username, creds.password)
        return ClientCredentials(
            creds.token_url,
            creds.client_id,
            creds.client_secret,
            scope=creds.scope,
            system="SAP",
            table=SAP_ODATA,
        )

    def _new_client(self) -> httpx.AsyncClient:
        transport = self._transport
        if transport is None and self._use_aiohttp:
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(verify=ssl_context(self.ca_bundle), trust_env=False)
        # A new client is a new session: its SapAuth fetches its own CSRF token (the OAuth token is shared).
        return httpx.AsyncClient(
            verify=ssl_context(self.ca_bundle),
            transport=transport,
            timeout=self.timeout,
            trust_env=False,
            follow_redirects=False,
            auth=SapAuth(self._logon()),
        )

    async def aclose(self) -> None:
        await self.slot.aclose()

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        out = {k: str(v) for k, v in (params or {}).items()}
        if self.sap_client and "sap-client" not in out:
            out["sap-client"] = self.sap_client
        return out

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        csrf_url: str | None = None,
    ) -> httpx.Response:
        client = await self.slot.get()
        all_headers = {"accept": JSON, **(headers or {})}
        content = None
        if body is not None:
            content = json.dumps(body, default=_json_default, ensure_ascii=False).encode()
            all_headers["content-type"] = JSON
        self.calls += 1
        try:
            # Params from a __next link are already in the URL; don't override them.
            return await client.request(
                method,
                url,
                params=self._params(params) if params is not None else None,
                content=content,
                headers=all_headers,
                extensions={"sap_csrf_url": csrf_url} if csrf_url else None,
            )
        except CsrfFetchFailed as exc:
            raise classify(exc.response, "CSRF token fetch") from None
        except httpx.TimeoutException as exc:
            raise TransientError(f"SAP OData {method} timed out", details={"url": _path(url)}) from exc
        except httpx.TransportError as exc:
            raise TransientError(
                f"SAP OData {method} failed: {type(exc).__name__}", details={"url": _path(url)}
            ) from exc

    async def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        what: str = "request",
        accept_404: bool = False,
    ) -> httpx.Response | None:
        """One OData call (logon, CSRF handshake and their one refresh are the client's ``SapAuth``); reads
        are repeated a few times on transient errors, writes only on 429."""
        return await quick_retry(
            lambda: self._request_once(method, service, path, params, body, what, accept_404),
            safe=method in ("GET", "HEAD"),
            retries=self.retries,
            max_inline_wait=self.max_inline_wait,
        )

    async def _request_once(
        self,
        method: str,
        service: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        what: str,
        accept_404: bool,
    ) -> httpx.Response | None:
        url = self.url(service, path)
        csrf_url = None
        if method not in ("GET", "HEAD"):
            csrf_url = str(httpx.URL(self.url(service) + "/", params=self._params({})))
        response = await self._send(method, url, params=params or {}, body=body, csrf_url=csrf_url)
        if response.status_code == 404 and accept_404:
            return None
        self._check(response, what)
        return response

    def _check(self, response: httpx.Response, what: str) -> None:
        """Raise the error of a failed answer the auth flow has already retried once."""
        if csrf_refused(response):
            # A second rejection right after a fresh token means the session was dropped in between
            # (expired, another node): retry with backoff; a route's retries end the loop.
            auth = self.slot.current.auth if self.slot.current is not None else None
            if isinstance(auth, SapAuth):
                auth.forget()
            raise TransientError(f"SAP {what} failed: CSRF token validation failed", details={"status": 403})
        if response.status_code == 401 and self._oauth:
            # The token endpoint accepted our credentials, so a rejected token was revoked or expired
            # in between: retry with backoff (a wrong Basic password, in contrast, stays permanent).
            raise TransientError(f"SAP {what} failed: bearer token rejected", details={"status": 401})
        if response.status_code >= 400:
            raise classify(response, what)

    # --- reads ------------------------------------------------------------------------------------------
    async def get_entity(
        self, service: str, entity_set: str, keys: Mapping[str, Any], params: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        path = odata_property(entity_set) + key_predicate(keys)
        response = await self.request(
            "GET",
            service,
            path,
            params={"$format": "json", **(params or {})},
            what=f"read {entity_set}",
            accept_404=True,
        )
        if response is None:
            return None
        return _d(response)

    async def query(
        self,
        service: str,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Iterable[str] | None = None,
        orderby: str | None = None,
        limit: int | None = None,
        expand: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """All entities matching ``filter`` (built with :func:`eq` / :func:`and_`), following server-driven
        paging (``__next``) and otherwise paging with ``$skip``/``$top``."""
        params: dict[str, Any] = {"$format": "json"}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(odata_property(s) for s in select)
        if orderby:
            params["$orderby"] = orderby
        if expand:
            params["$expand"] = ",".join(expand)
        results: list[dict[str, Any]] = []
        skip = 0
        while True:
            remaining = None if limit is None else limit - len(results)
            if remaining is not None and remaining <= 0:
                return results[:limit]
            page = self.page_size if remaining is None else min(self.page_size, remaining)
            response = await self.request(
                "GET",
                service,
                odata_property(entity_set),
                params={**params, "$top": page, "$skip": skip},
                what=f"query {entity_set}",
            )
            assert response is not None
            got = 0
            while True:  # the server may page inside our $top (__next with $skiptoken)
                d = _d(response)
                rows = d.get("results", [])
                results.extend(rows)
                got += len(rows)
                next_link = d.get("__next")
                if not next_link:
                    break
                response = await self._follow(str(next_link), entity_set)
            if got < page or got == 0:
                return results if limit is None else results[:limit]
            skip += got

    async def _follow(self, next_url: str, entity_set: str) -> httpx.Response:
        return await quick_retry(
            lambda: self._follow_once(next_url, entity_set),
            safe=True,
            retries=self.retries,
            max_inline_wait=self.max_inline_wait,
        )

    async def _follow_once(self, next_url: str, entity_set: str) -> httpx.Response:
        response = await self._send("GET", next_url, headers={})
        self._check(response, f"query {entity_set}")
        return response

    # --- writes -----------------------------------------------------------------------------------------
    async def create(self, service: str, entity_set: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.request(
            "POST", service, odata_property(entity_set), body=payload, what=f"create {entity_set}"
        )
        assert response is not None
        return _d(response)


def _d(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        raise TransientError(
            "SAP OData answered with a body that is not JSON", details={"status": response.status_code}
        ) from exc
    d = body.get("d") if isinstance(body, dict) else None
    if not isinstance(d, dict):
        raise TransientError("SAP OData answer has no 'd' object", details={"status": response.status_code})
    return d


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # Edm.Decimal travels as a string in OData V2 JSON
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _path(url: str) -> str:
    return httpx.URL(url).path
