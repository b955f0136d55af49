"""Fault injection and effect counting shared by the three simulators.

Faults are set per operation (``"*"`` for all) at start or at runtime through ``/__sandbox/faults``.
Each simulator names its operations (``query``, ``sobject.upsert``, ``invoices.create``, ...) and builds
its own error bodies, because a 429 from Salesforce does not look like one from Lago.

Two logs let a checker judge the caller from the server's side (``tests/reliability``, ``bench/chaos.py``):
``GET /__sandbox/effects/log`` lists every counted effect with its wall-clock time (per-second effect
rates against a route's ``rate_limit``), and ``GET /__sandbox/requests`` lists every request that went
through fault injection and either was a write or met a fault: time, operation, method, path, a digest of
method + path + query + body (a resend of the same write has the same digest), the outcome (``ok``,
``429``, ``503``, ``reset``, ``timeout``, ``expired_session``) and the Retry-After sent. Both are bounded
(the newest ``LOG_SIZE`` entries) and cleared by ``/__sandbox/reset``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DROP_FLAG = "lead2cash.sandbox.drop"
LOG_SIZE = 500_000  # entries kept in each of the effect and request logs


@dataclass
class FaultRule:
    latency_ms: int = 0
    error_rate: float = 0.0  # share of requests answered with an error before any effect
    error_statuses: tuple[int, ...] = (429, 503)
    retry_after_s: int = 1
    timeout_rate: float = 0.0  # request hangs for ``timeout_s`` and the connection is then dropped
    timeout_s: float = 30.0
    reset_rate: float = 0.0  # connection reset before any effect
    commit_then_drop_rate: float = 0.0  # the write is applied, the response is lost
    expire_session_rate: float = 0.0  # the caller's session/token is expired before the request

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "error_statuses" in values:
            values["error_statuses"] = tuple(int(s) for s in values["error_statuses"])
        return cls(**values)


PROFILES: dict[str, dict[str, FaultRule]] = {
    "none": {},
    "slow": {"*": FaultRule(latency_ms=50)},
    "flaky": {"*": FaultRule(error_rate=0.3)},
    "chaos": {
        "*": FaultRule(
            error_rate=0.2,
            timeout_rate=0.02,
            timeout_s=5.0,
            reset_rate=0.03,
            commit_then_drop_rate=0.05,
            expire_session_rate=0.02,
        )
    },
}


@dataclass
class Decision:
    latency_s: float = 0.0
    error_status: int | None = None
    retry_after_s: int = 0
    timeout_s: float | None = None
    reset: bool = False
    expire_session: bool = False


class EffectCounter:
    """Counts applied writes per (kind, idempotency-relevant key), so tests can assert one effect each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._log: deque[tuple[float, str, str]] = deque(maxlen=LOG_SIZE)

    def record(self, kind: str, key: str) -> None:
        with self._lock:
            self._counts[kind][key] += 1
            self._log.append((time.time(), kind, key))

    def log(self, since: float = 0.0) -> list[tuple[float, str, str]]:
        """Every counted effect as (wall-clock time, kind, key), oldest first."""
        with self._lock:
            return [e for e in self._log if e[0] >= since]

    def count(self, kind: str, key: str) -> int:
        with self._lock:
            return self._counts[kind][key]

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {kind: dict(c) for kind, c in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._log.clear()


@dataclass
class Faults:
    system: str
    seed: int = 0
    rules: dict[str, FaultRule] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.system}:{self.seed}")

    async def _log_request(self, request: Request, operation: str, outcome: str, retry_after: int) -> None:
        write = request.method not in ("GET", "HEAD")
        if not write and outcome == "ok":
            return
        digest = hashlib.sha256(f"{request.method} {request.url.path}?{request.url.query}\n".encode())
        if write:
            digest.update(await request.body())  # cached by Starlette: the handler reads it again
        self.requests.append(
            {
                "t": time.time(),
                "op": operation,
                "method": request.method,
                "path": request.url.path,
                "sig": digest.hexdigest()[:24],
                "outcome": outcome,
                "retry_after": retry_after,
            }
        )

    def set_profile(self, profile: str) -> None:
        try:
            self.rules = {op: FaultRule(**asdict(r)) for op, r in PROFILES[profile].items()}
        except KeyError:
            raise ValueError(f"unknown fault profile {profile!r}; known: {', '.join(PROFILES)}") from None

    def rule_for(self, operation: str) -> FaultRule | None:
        return self.rules.get(operation) or self.rules.get("*")

    def decide(self, operation: str) -> Decision:
        rule = self.rule_for(operation)
        if rule is None:
            return Decision()
        rng = self._rng
        d = Decision(latency_s=rule.latency_ms / 1000)
        if rule.expire_session_rate and rng.random() < rule.expire_session_rate:
            d.expire_session = True
        elif rule.reset_rate and rng.random() < rule.reset_rate:
            d.reset = True
        elif rule.timeout_rate and rng.random() < rule.timeout_rate:
            d.timeout_s = rule.timeout_s
        elif rule.error_rate and rng.random() < rule.error_rate:
            d.error_status = rng.choice(rule.error_statuses)
            d.retry_after_s = rule.retry_after_s
        return d

    def drop_after_commit(self, request: Request, operation: str) -> bool:
        """Called after a write was applied: maybe lose the response. Returns True when it will be lost."""
        rule = self.rule_for(operation)
        if rule and rule.commit_then_drop_rate and self._rng.random() < rule.commit_then_drop_rate:
            request.scope[DROP_FLAG] = True
            self.injected[f"{operation}:commit_then_drop"] += 1
            return True
        return False

    async def apply(
        self,
        request: Request,
        operation: str,
        error_response: Callable[[int, int], Response],
        expire_session: Callable[[], Awaitable[Response | None]] | None = None,
    ) -> Response | None:
        """Apply the pre-effect faults of ``operation``; a Response means: answer with it, do nothing."""
        d = self.decide(operation)
        if d.latency_s:
            await asyncio.sleep(d.latency_s)
        if d.expire_session and expire_session is not None:
            self.injected[f"{operation}:expired_session"] += 1
            await self._log_request(request, operation, "expired_session", 0)
            return await expire_session()
        if d.reset:
            self.injected[f"{operation}:reset"] += 1
            await self._log_request(request, operation, "reset", 0)
            request.scope[DROP_FLAG] = True
            return Response(status_code=500)
        if d.timeout_s is not None:
            self.injected[f"{operation}:timeout"] += 1
            await self._log_request(request, operation, "timeout", 0)
            await asyncio.sleep(d.timeout_s)
            request.scope[DROP_FLAG] = True
            return Response(status_code=504)
        if d.error_status is not None:
            self.injected[f"{operation}:{d.error_status}"] += 1
            await self._log_request(request, operation, str(d.error_status), d.retry_after_s)
            return error_response(d.error_status, d.retry_after_s)
        await self._log_request(request, operation, "ok", 0)
        return None


class DropConnections:
    """Outermost ASGI wrapper: when a handler flagged the request, abort the TCP connection instead of
    sending the response (a reset, or a response lost after the write was committed)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and scope.get(DROP_FLAG):
                transport = getattr(getattr(send, "__self__", None), "transport", None)
                if transport is not None:
                    transport.abort()
                    return
                raise ConnectionAbortedError("sandbox dropped the response")
            if scope.get(DROP_FLAG) and message["type"] == "http.response.body":
                return
            await send(message)

        await self.app(scope, receive, guarded_send)


def admin_routes(
    faults: Faults, effects: EffectCounter, on_reset: Callable[[], None] | None = None
) -> list[Route]:
    """``/__sandbox/faults`` (GET, PUT), ``/__sandbox/effects`` and ``/__sandbox/effects/log`` (GET),
    ``/__sandbox/requests`` (GET), ``/__sandbox/reset`` (POST)."""

    async def get_faults(_: Request) -> Response:
        return JSONResponse(
            {
                "system": faults.system,
                "rules": {op: asdict(r) for op, r in faults.rules.items()},
                "injected": dict(faults.injected),
            }
        )

    async def put_faults(request: Request) -> Response:
        body = await request.json()
        try:
            if "profile" in body:
                faults.set_profile(body["profile"])
            else:
                faults.rules = {op: FaultRule.from_dict(r) for op, r in body.get("rules", {}).items()}
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await get_faults(request)

    async def get_effects(_: Request) -> Response:
        return JSONResponse(effects.snapshot())

    async def get_effects_log(request: Request) -> Response:
        since = float(request.query_params.get("since", 0))
        return JSONResponse({"effects": effects.log(since)})

    async def get_requests(request: Request) -> Response:
        since = float(request.query_params.get("since", 0))
        return JSONResponse({"requests": [r for r in list(faults.requests) if r["t"] >= since]})

    async def reset(_: Request) -> Response:
        faults.rules = {}
        faults.injected.clear()
        faults.requests.clear()
        effects.reset()
        if on_reset:
            on_reset()
        return JSONResponse({"reset": True})

    return [
        Route("/__sandbox/faults", get_faults, methods=["GET"]),
        Route("/__sandbox/faults", put_faults, methods=["PUT"]),
        Route("/__sandbox/effects", get_effects, methods=["GET"]),
        Route("/__sandbox/effects/log", get_effects_log, methods=["GET"]),
        Route("/__sandbox/requests", get_requests, methods=["GET"]),
        Route("/__sandbox/reset", reset, methods=["POST"]),
    ]
