"""Transport to Lago's REST API v1: auth, sessions, pagination, retries, error classification, and the
verification of Lago's webhook signatures. Knows Lago's protocol, nothing of the canonical model.

Error classes (what the router does with them), declared in the ``LAGO`` status table:
- 422 validation -> ``PermanentError`` carrying Lago's ``error_details`` (field -> codes);
- 404 -> ``LagoNotFound`` (permanent; callers that look something up catch it);
- 400/403/405/409 -> permanent; 401 -> throttled for a minute (a revoked key: pause, don't dead-letter all);
- 429 -> ``ThrottledError`` with the wait from ``Retry-After`` / ``X-RateLimit-Reset``;
- 5xx, timeouts, resets -> ``TransientError``.

The httpx client lives as long as the hub (``ClientSlot``), closed by ``aclose`` at shutdown.

Requests that are safe to repeat (GET, PUT, DELETE, and the upserts Lago keys by ``external_id``) are
retried here a few times with short backoff. A non-idempotent POST (a one-off invoice) is retried here only
on 429, which Lago answers before doing anything; any other failure is handed up as ambiguous, because the
caller must look the effect up before sending again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import jwt
import structlog

from lead2cash.connectors.http import LAGO, ClientSlot, LoopLock, NotFound, retry_after_of
from lead2cash.connectors.quick_retry import quick_retry
from lead2cash.errors import DeliveryError, TransientError

log = structlog.get_logger("lead2cash.connectors.lago")

PER_PAGE = 100
_SAFE_METHODS = {"GET", "PUT", "DELETE"}


# 404: Lago's ``code`` says what was not found (``invoice_not_found``, ...); the LAGO table's class.
LagoNotFound = NotFound


def loads(raw: bytes | str) -> Any:
    """JSON with every number that has a fraction as Decimal: Lago's rates and units are never floats here."""
    return json.loads(raw, parse_float=Decimal)


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


def _retry_after(response: httpx.Response) -> float | None:
    # X-RateLimit-Reset: seconds until Lago's window resets (an epoch timestamp is read as that moment).
    return retry_after_of(response.headers, ("Retry-After", "X-RateLimit-Reset"))


def classify(response: httpx.Response, operation: str) -> DeliveryError:
    """The error for a non-2xx answer. Messages name the operation and Lago's code, never the api key."""
    status = response.status_code
    try:
        body = loads(response.content) if response.content else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("code")
    details: dict[str, Any] = {"status": status}
    if code:
        details["code"] = code
    if status == 422:
        details["error_details"] = body.get("error_details") or {}
    elif status < 500 and status not in (401, 404, 429) and body.get("error"):
        details["error"] = str(body["error"])[:200]
    text = MESSAGES.get(status) or ("server error ({})" if status >= 500 else "request refused ({})")
    message = f"Lago {operation}: {text.format(status)}"
    if status == 422:
        message = f"Lago rejected {operation}: validation failed"
    # Retry-After only where a wait is Lago's to name (429, 5xx); a 401's minute comes from the table.
    wait = _retry_after(response) if status == 429 or status >= 500 else None
    return LAGO.error(status, message, retry_after=wait, details=details)


MESSAGES = {
    404: "not found",
    429: "rate limited (429)",
    401: "unauthorized (401): check the api key",
}


def _transport(verify: ssl.SSLContext, max_connections: int) -> httpx.AsyncBaseTransport:
    # DESIGN: httpx's API on the aiohttp transport (several times the request rate of httpx's own pool).
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:  # pragma: no cover - a dependency of the package
        return httpx.AsyncHTTPTransport(verify=verify, limits=httpx.Limits(max_connections=max_connections))
    return AiohttpTransport(
        verify=verify, trust_env=False, limits=httpx.Limits(max_connections=max_connections)
    )


class LagoClient:
    """One Lago organization, one httpx client for the hub's life (see ``ClientSlot``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        ca_bundle: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 32,
        retries: int = 4,
        max_inline_wait: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limit: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Lago's limit per organization is on every endpoint but events (which have their own).
        self.limiter = Spacer(rate_limit) if rate_limit else None
        self._api_key = api_key
        self._verify = ssl_context(ca_bundle)
        self.timeout = timeout
        self.max_connections = max_connections
        self.retries = retries
        self.max_inline_wait = max_inline_wait
        self._transport = transport
        self.slot = ClientSlot(self._new_client)
        self.calls = 0
        self.calls_by_operation: Counter[str] = Counter()  # repeats included, as ``calls``

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
            timeout=self.timeout,
            transport=self._transport or _transport(self._verify, self.max_connections),
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.slot.aclose()

    # ------------------------------------------------------------------ requests
    async def request(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """One API call with quick retries when repeating it is safe; returns the parsed JSON body."""
        safe = method in _SAFE_METHODS if idempotent is None else idempotent
        return await quick_retry(
            lambda: self._once(method, path, operation, body, params),
            safe=safe,
            retries=self.retries,
            max_inline_wait=self.max_inline_wait,
        )

    async def _once(
        self, method: str, path: str, operation: str, body: Mapping[str, Any] | None, params: Any
    ) -> Any:
        if self.limiter is not None and not operation.startswith("events."):
            await self.limiter.acquire()
        self.calls += 1
        self.calls_by_operation[operation] += 1
        client = await self.slot.get()
        try:
            response = await client.request(method, path, json=body, params=params)
        except httpx.TimeoutException as exc:
            raise TransientError(f"Lago {operation}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"Lago {operation}: connection failed ({type(exc).__name__})") from exc
        if response.status_code >= 300:
            raise classify(response, operation)
        try:
            return loads(response.content) if response.content else {}
        except ValueError as exc:
            raise TransientError(f"Lago {operation}: answer is not JSON") from exc

    async def pages(
        self, path: str, operation: str, root: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paginated listing, following ``meta.next_page``."""
        page = 1
        while True:
            query: dict[str, Any] = {**(params or {}), "page": page, "per_page": PER_PAGE}
            data = await self.request("GET", path, operation, params=query)
            for item in data.get(root) or []:
                yield item
            next_page = (data.get("meta") or {}).get("next_page")
            if not next_page or next_page <= page:
                return
            page = int(next_page)

    # ------------------------------------------------------------------ resources
    async def upsert_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        # Lago's POST /customers creates or updates by external_id: repeating it is safe.
        data = await self.request(
            "POST", "/customers", "customers.create", body={"customer": customer}, idempotent=True
        )
        return dict(data["customer"])

    async def create_subscription(self, subscription: Mapping[str, Any]) -> dict[str, Any]:
        # An active or pending subscription with the same external_id is returned, not duplicated.
        try:
            data = await self.request(
                "POST",
                "/subscriptions",
                "subscriptions.create",
                body={"subscription": subscription},
                idempotent=True,
            )
        except LagoNotFound as exc:
            # Lago's 404 names no code: the dead letter must say which plan to create (or map).
            if exc.details.get("code") == "plan_not_found":
                exc.details["plan_code"] = subscription.get("plan_code")
            raise
        return dict(data["subscription"])

    async def list_subscriptions(
        self, external_customer_id: str, statuses: tuple[str, ...] = ("active", "pending")
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"external_customer_id": external_customer_id, "status[]": list(statuses)}
        return [s async for s in self.pages("/subscriptions", "subscriptions.list", "subscriptions", params)]

    async def terminate_subscription(self, external_id: str, status: str = "active") -> dict[str, Any] | None:
        """Terminate (active) or cancel (pending); None when Lago has no such subscription any more."""
        try:
            data = await self.request(
                "DELETE",
                f"/subscriptions/{_segment(external_id)}",
                "subscriptions.terminate",
                params={"status": status},
            )
        except LagoNotFound:
            return None
        return dict(data["subscription"])

    async def create_one_off_invoice(self, invoice: Mapping[str, Any]) -> dict[str, Any]:
        try:
            data = await self.request(
                "POST", "/invoices", "invoices.create", body={"invoice": invoice}, idempotent=False
            )
        except LagoNotFound as exc:
            if exc.details.get("code") == "add_on_not_found":
                codes = sorted({str(f.get("add_on_code")) for f in invoice.get("fees") or []})
                exc.details["add_on_code" if len(codes) == 1 else "add_on_codes (one of)"] = ", ".join(codes)
            raise
        return dict(data["invoice"])

    async def update_invoice(self, lago_id: str, invoice: Mapping[str, Any]) -> dict[str, Any]:
        data = await self.request(
            "PUT", f"/invoices/{_segment(lago_id)}", "invoices.update", body={"invoice": invoice}
        )
        return dict(data["invoice"])

    async def get_invoice(self, lago_id: str) -> dict[str, Any]:
        data = await self.request("GET", f"/invoices/{_segment(lago_id)}", "invoices.get")
        return dict(data["invoice"])

    def invoices(self, params: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self.pages("/invoices", "invoices.list", "invoices", params)

    async def get_credit_note(self, lago_id: str) -> dict[str, Any]:
        data = await self.request("GET", f"/credit_notes/{_segment(lago_id)}", "credit_notes.get")
        return dict(data["credit_note"])

    def credit_notes(self, params: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        return self.pages("/credit_notes", "credit_notes.list", "credit_notes", params)

    def wallets(self, external_customer_id: str) -> AsyncIterator[dict[str, Any]]:
        return self.pages(
            "/wallets", "wallets.list", "wallets", {"external_customer_id": external_customer_id}
        )

    def wallet_transactions(self, wallet_id: str) -> AsyncIterator[dict[str, Any]]:
        path = f"/wallets/{_segment(wallet_id)}/wallet_transactions"
        return self.pages(path, "wallet_transactions.list", "wallet_transactions")

    async def get_wallet_transaction(self, lago_id: str) -> dict[str, Any]:
        path = f"/wallet_transactions/{_segment(lago_id)}"
        data = await self.request("GET", path, "wallet_transactions.get")
        # The OpenAPI document answers the bare object; Lago's other reads wrap it in a root key.
        inner = data.get("wallet_transaction")
        return dict(inner if isinstance(inner, dict) else data)

    async def get_wallet(self, lago_id: str) -> dict[str, Any]:
        data = await self.request("GET", f"/wallets/{_segment(lago_id)}", "wallets.get")
        return dict(data["wallet"])

    def wallet_transaction_fundings(self, lago_id: str) -> AsyncIterator[dict[str, Any]]:
        """What funded an outbound transaction of a traceable wallet (the inbound transactions it used)."""
        path = f"/wallet_transactions/{_segment(lago_id)}/fundings"
        return self.pages(path, "wallet_transactions.fundings", "wallet_transaction_fundings")

    async def get_payment(self, lago_id: str) -> dict[str, Any]:
        # Lago answers under a "payment" root (its OpenAPI document shows the bare object).
        data = await self.request("GET", f"/payments/{_segment(lago_id)}", "payments.get")
        return dict(data.get("payment", data))

    def payments(self, params: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        return self.pages("/payments", "payments.list", "payments", params)

    async def fetch_text(self, url: str, operation: str) -> str:
        """GET an absolute URL of this Lago (the webhook public key) with the same auth and TLS."""
        self.calls += 1
        self.calls_by_operation[operation] += 1
        client = await self.slot.get()
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            raise TransientError(f"Lago {operation}: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise classify(response, operation)
        return response.text


class Spacer:
    """At most ``rate`` calls in any second: a token bucket two calls deep, so a wait that oversleeps
    (a busy event loop) is made up by the next calls without ever bursting past Lago's window."""

    def __init__(self, rate: float, depth: float = 2.0) -> None:
        self.rate = rate
        self.depth = depth
        self._tokens = depth
        self._at = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.depth, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:  # no await between the check and the take: one event loop
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self.rate)


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# ---------------------------------------------------------------------------------------------- webhooks
class WebhookVerifier:
    """Checks ``X-Lago-Signature`` on the raw body with the configured scheme (never the one the request
    names): ``hmac`` = base64(HMAC-SHA256(key, body)), ``jwt`` = RS256 JWT whose ``data`` claim is the body,
    verified with the public key Lago serves (fetched once, cached, re-fetched at most once a minute when a
    signature fails, so forged requests cannot make the hub hammer Lago)."""

    REFETCH_AFTER_FAILURE_S = 60.0

    def __init__(
        self,
        signature: str,
        *,
        hmac_key: str | None = None,
        client: LagoClient | None = None,
        public_key_url: str | None = None,
        public_key_ttl: float = 3600.0,
        issuer: str | None = None,
    ) -> None:
        if signature not in ("hmac", "jwt"):
            raise ValueError("signature must be 'hmac' or 'jwt'")
        if signature == "hmac" and not hmac_key:
            raise ValueError("hmac signature needs hmac_key")
        if signature == "jwt" and (client is None or public_key_url is None):
            raise ValueError("jwt signature needs the client and the public key URL")
        self.signature = signature
        self._hmac_key = hmac_key.encode() if hmac_key else b""
        self.client = client
        self.public_key_url = public_key_url
        self.public_key_ttl = public_key_ttl
        self.issuer = issuer
        self._public_key: bytes | None = None
        self._fetched_at = 0.0
        self._lock = LoopLock()  # one key fetch at a time
        self.key_fetches = 0

    async def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        signature = _header(headers, "x-lago-signature")
        if not signature:
            return False
        if self.signature == "hmac":
            expected = base64.b64encode(hmac.new(self._hmac_key, body, hashlib.sha256).digest()).decode()
            return hmac.compare_digest(expected.encode(), signature.strip().encode())
        key = await self._key(refresh=False)
        if key is not None and self._jwt_valid(signature, body, key):
            return True
        if time.monotonic() - self._fetched_at < self.REFETCH_AFTER_FAILURE_S:
            return False
        key = await self._key(refresh=True)  # the key may have been rotated
        return key is not None and self._jwt_valid(signature, body, key)

    def _jwt_valid(self, token: str, body: bytes, key: bytes) -> bool:
        try:
            claims = jwt.decode(
                token.strip(),
                key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"require": ["data"], "verify_iss": self.issuer is not None},
            )
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return False
        data = claims.get("data")
        return isinstance(data, str) and hmac.compare_digest(data.encode(), body)

    async def _key(self, *, refresh: bool) -> bytes | None:
        async with self._lock.get():
            fresh = time.monotonic() - self._fetched_at < self.public_key_ttl
            if self._public_key is not None and fresh and not refresh:
                return self._public_key
            assert self.client is not None and self.public_key_url is not None
            try:
                text = await self.client.fetch_text(self.public_key_url, "webhooks.public_key")
            except DeliveryError as exc:
                log.warning("cannot fetch Lago's webhook public key", error=exc.describe())
                return self._public_key
            self.key_fetches += 1
            self._fetched_at = time.monotonic()
            self._public_key = parse_public_key(text)
            return self._public_key


def parse_public_key(text: str) -> bytes:
    """Lago serves base64(PEM), bare (``/webhooks/public_key``) or as ``{"webhook": {"public_key": ...}}``."""
    value = text.strip()
    if value.startswith("{"):
        value = str((loads(value).get("webhook") or {}).get("public_key") or "")
    if "-----BEGIN" in value:
        return value.encode()
    return base64.b64decode("".join(value.split()))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value
