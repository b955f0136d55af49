"""A webhook receiver to point Lago webhook endpoints at, for tests and demos.

It records every request as received (raw body and headers) and verifies nothing: whoever reads
``received`` checks signatures independently. ``fail_next(n, status)`` answers the next n requests with an
error so retries can be observed. It satisfies the server's ``SystemSandbox`` protocol, so a
``SandboxCluster`` serves it over HTTPS with the same CA as the simulators.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lead2cash.sandbox.faults import EffectCounter, Faults


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


class WebhookReceiver:
    name = "lago-webhook-receiver"

    def __init__(self) -> None:
        self.faults = Faults(self.name)
        self.effects = EffectCounter()
        self.received: list[ReceivedWebhook] = []
        self._lock = threading.Lock()
        self._failures: list[int] = []

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self._failures.clear()

    def accepted(self, path: str | None = None) -> list[ReceivedWebhook]:
        with self._lock:
            return [r for r in self.received if r.status < 300 and (path is None or r.path == path)]

    def asgi(self) -> Any:
        async def receive(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                status = self._failures.pop(0) if self._failures else 200
                self.received.append(
                    ReceivedWebhook(request.url.path, dict(request.headers), body, status, time.time())
                )
            return Response(status_code=status)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def hub_config(self, base_url: str) -> dict[str, Any]:
        return {"url": base_url}
