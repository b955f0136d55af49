"""The Salesforce connection: a token from the configured token URL, simple-salesforce on a requests session
that trusts the configured CA bundle and proxies, a bounded thread pool for its blocking calls, token
refresh on ``INVALID_SESSION_ID`` (the failed request is sent again, not lost), and the API budget governor
fed from every response's ``Sforce-Limit-Info`` header."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceOperationError,
)

from lead2cash.connectors.http import parse_retry_after
from lead2cash.connectors.salesforce.auth import Credentials, TokenProvider
from lead2cash.connectors.salesforce.errors import classify, codes_of, daily_limit_spent
from lead2cash.connectors.salesforce.governor import ApiGovernor, RouteBudget, parse_limit_info
from lead2cash.connectors.salesforce.reader import ServerClock
from lead2cash.errors import DeliveryError, TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class ConnectionSettings:
    token_url: str
    credentials: Credentials
    instance_url: str | None = None  # else the one the token response names
    api_version: str = "62.0"
    ca_bundle: str | None = None
    proxies: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    max_concurrent_calls: int = 20
    pause_below: float = 0.1
    limit_retry_after: float = 300.0


class _Session(requests.Session):
    """requests has no session-wide timeout; simple-salesforce passes none, so set one here."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class SalesforceClient:
    def __init__(self, settings: ConnectionSettings, tokens: TokenProvider | None = None) -> None:
        self.settings = settings
        self.governor = ApiGovernor(pause_below=settings.pause_below, retry_after=settings.limit_retry_after)
        self.tokens = tokens or TokenProvider(
            settings.token_url,
            settings.credentials,
            ca_bundle=settings.ca_bundle,
            proxies=settings.proxies,
            timeout=settings.timeout,
        )
        session = _Session(settings.timeout)
        session.trust_env = False  # REQUESTS_CA_BUNDLE and *_PROXY from the environment must not win
        session.verify = settings.ca_bundle or True
        session.proxies = dict(settings.proxies)
        session.hooks["response"].append(self._on_response)
        # One pooled connection per worker thread: requests keeps 10 by default and discards (and later
        # re-handshakes) the rest, which costs a TLS handshake per call above ten at once.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.max_concurrent_calls)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        self.session = session
        self._executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_calls, thread_name_prefix="salesforce"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sf: Salesforce | None = None
        self._generation = 0
        self._calls_lock = threading.Lock()
        self.calls = 0  # API calls made by this client (responses from the instance)
        self.server_clock = ServerClock()
        self.logins = 0

    # ------------------------------------------------------------------ plumbing
    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._calls_lock:
            self.calls += 1
        budget: RouteBudget | None = getattr(self._local, "budget", None)
        if budget is not None:
            budget.count()
        self._local.retry_after = response.headers.get("Retry-After")
        self.server_clock.observe_date(response.headers.get("Date"))
        info = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if info is not None:
            self.governor.observe(*info)

    def _current(self) -> tuple[Salesforce, int]:
        with self._lock:
            if self._sf is None:
                self._login_locked()
            assert self._sf is not None
            return self._sf, self._generation

    def _login_locked(self) -> None:
        token = self.tokens.fetch()
        instance = self.settings.instance_url or token.instance_url
        if not instance:
            raise TransientError("the token response named no instance_url and none is configured")
        self._sf = Salesforce(
            instance_url=instance,
            session_id=token.access_token,
            session=self.session,
            version=self.settings.api_version,
            parse_float=Decimal,  # money stays exact from the wire on
        )
        self._generation += 1
        self.logins += 1

    def _refresh(self, seen: int) -> None:
        with self._lock:
            if self._generation == seen:  # another thread may have refreshed already
                self._login_locked()

    def _invoke(self, budget: RouteBudget, fn: Callable[[Salesforce], T], what: str) -> T:
        budget.check()
        self._local.budget = budget
        try:
            for _ in range(3):
                sf, generation = self._current()
                try:
                    return fn(sf)
                except SalesforceExpiredSession:
                    self._refresh(generation)
                except SalesforceError as exc:
                    raise self._classify(exc.status, exc.content, what) from None
                except SalesforceOperationError as exc:
                    raise TransientError(f"{what}: {str(exc)[:300]}") from None
                except requests.RequestException as exc:
                    raise TransientError(f"{what}: {type(exc).__name__}") from None
            raise TransientError(f"{what}: session rejected after refreshing the token")
        finally:
            self._local.budget = None

    def _classify(self, status: int | None, content: Any, what: str) -> DeliveryError:
        retry = parse_retry_after(getattr(self._local, "retry_after", None))
        error = classify(
            status, content, retry_after=retry, limit_retry_after=self.settings.limit_retry_after, what=what
        )
        if daily_limit_spent(status, codes_of(content)):
            self.governor.exhausted(retry)
        return error

    async def call(self, budget: RouteBudget, fn: Callable[[Salesforce], T], what: str) -> T:
        """Run a blocking simple-salesforce call in the bounded pool (at most max_concurrent_calls)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._invoke, budget, fn, what)

    def budget(self, name: str, share: float = 1.0) -> RouteBudget:
        return self.governor.budget(name, share)

    async def start(self, budget: RouteBudget) -> None:
        """Log in and read ``/limits`` once, so the governor knows the allocation before the first page."""
        if self.governor.max is not None:
            return
        limits = await self.call(budget, lambda sf: sf.restful("limits/"), "limits")
        daily = (limits or {}).get("DailyApiRequests") or {}
        if "Max" in daily and "Remaining" in daily:
            self.governor.observe(int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.tokens.close()
        self.session.close()
