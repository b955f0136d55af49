"""Webhook delivery as Lago does it: signed POSTs to every registered endpoint, retried on failure.

Signatures follow lago-api's ``Webhook#generate_headers``:
- ``X-Lago-Signature-Algorithm: hmac``: base64(HMAC-SHA256(organization hmac key, raw body));
- ``X-Lago-Signature-Algorithm: jwt``: an RS256 JWT of ``{"data": <raw body>, "iss": <LAGO_API_URL>}``
  signed with the instance's private key, whose public key ``GET /api/v1/webhooks/public_key`` serves.
``X-Lago-Unique-Key`` is the id of the webhook record: one per (event, endpoint), the same on every retry.

Test-only behaviour, set at runtime through ``PUT /__sandbox/lago/webhooks``: ``duplicate`` sends each
attempt N times concurrently (same key, same body), ``reorder`` collects the events queued within
``reorder_window_s`` and sends them newest first; ``retry_schedule_s`` and ``max_attempts`` bound retries
(Lago itself tries 3 times, waiting ``n**4 + 2`` seconds).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lead2cash.sandbox.lago.store import WebhookEndpoint


def ruby_encode64(data: bytes) -> str:
    """Ruby's ``Base64.encode64``: 60 characters per line, each line ending in a newline."""
    text = base64.b64encode(data).decode()
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


class Signer:
    def __init__(self, hmac_key: str, private_key_pem: bytes | None = None) -> None:
        self.hmac_key = hmac_key
        if private_key_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            private_key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        self.private_key_pem = private_key_pem
        private = serialization.load_pem_private_key(private_key_pem, password=None)
        self.public_key_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._private = private

    @property
    def public_key_b64(self) -> str:
        return ruby_encode64(self.public_key_pem)

    def sign(self, algo: str, body: bytes, issuer: str) -> str:
        if algo == "hmac":
            digest = hmac.new(self.hmac_key.encode(), body, hashlib.sha256).digest()
            return base64.b64encode(digest).decode()
        return jwt.encode({"data": body.decode(), "iss": issuer}, self._private, algorithm="RS256")  # type: ignore[arg-type]


@dataclass
class DispatchSettings:
    duplicate: int = 1
    reorder: bool = False
    reorder_window_s: float = 0.05
    retry_schedule_s: tuple[float, ...] = (2.0, 18.0)
    max_attempts: int = 3
    timeout_s: float = 10.0
    paused: bool = False  # hold deliveries (queued) until unpaused
    workers: int = 8  # deliveries in flight at once (Lago's webhook jobs run on parallel workers)

    def update(self, data: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown webhook setting(s): {', '.join(sorted(unknown))}")
        for name, value in data.items():
            if name == "retry_schedule_s":
                value = tuple(float(v) for v in value)
            elif name in ("duplicate", "max_attempts", "workers"):
                value = int(value)
                if value < 1:
                    raise ValueError(f"{name} must be >= 1")
            elif name in ("reorder", "paused"):
                value = bool(value)
            else:
                value = float(value)
            setattr(self, name, value)


@dataclass
class Delivery:
    unique_key: str
    webhook_type: str
    endpoint: WebhookEndpoint
    body: bytes
    headers: dict[str, str]
    attempts: int = 0
    done: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)


class WebhookDispatcher:
    """Queues events and delivers them from one background task on the server's event loop."""

    def __init__(
        self,
        *,
        signer: Signer,
        organization_id: str,
        endpoints: Callable[[], list[WebhookEndpoint]],
        issuer: Callable[[], str],
        seed: int = 0,
        verify: bool | str | ssl.SSLContext = True,
        settings: DispatchSettings | None = None,
    ) -> None:
        self.signer = signer
        self.organization_id = organization_id
        self.endpoints = endpoints
        self.issuer = issuer
        self.verify = verify
        self.settings = settings or DispatchSettings()
        self._initial_settings = replace(self.settings)
        self._rng = random.Random(f"lago-webhooks:{seed}")
        self.log: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self._queue: asyncio.Queue[Delivery] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._pending = 0

    # -- publishing --------------------------------------------------------------------------------

    def publish(self, webhook_type: str, object_type: str, obj: dict[str, Any]) -> None:
        targets = [
            e for e in self.endpoints() if not e.event_types or webhook_type in e.event_types
        ]  # fmt: skip
        if not targets:
            return
        payload = {
            "webhook_type": webhook_type,
            "object_type": object_type,
            "organization_id": self.organization_id,
            object_type: obj,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        issuer = self.issuer()
        for endpoint in targets:
            key = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            headers = {
                "Content-Type": "application/json",
                "X-Lago-Signature": self.signer.sign(endpoint.signature_algo, body, issuer),
                "X-Lago-Signature-Algorithm": endpoint.signature_algo,
                "X-Lago-Unique-Key": key,
            }
            delivery = Delivery(key, webhook_type, endpoint, body, headers)
            self.deliveries.append(delivery)
            self._pending += 1
            self._ensure_worker().put_nowait(delivery)

    def _ensure_worker(self) -> asyncio.Queue[Delivery]:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = self._queue or asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    # -- delivering --------------------------------------------------------------------------------

    async def _run(self) -> None:
        # Runs while there is work and then ends, so no task is left pending when the server stops;
        # ``publish`` starts a new one.
        assert self._queue is not None
        queue = self._queue
        slots = asyncio.Semaphore(max(1, self.settings.workers))
        running: set[asyncio.Task[None]] = set()

        async def deliver(delivery: Delivery) -> None:
            try:
                await self._attempt(delivery)
            finally:
                slots.release()

        while not queue.empty() or running:
            if queue.empty():
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            batch = [queue.get_nowait()]
            while self.settings.paused:
                await asyncio.sleep(0.01)
            if self.settings.reorder:
                await asyncio.sleep(self.settings.reorder_window_s)
                while not queue.empty():
                    batch.append(queue.get_nowait())
                batch.reverse()
            for delivery in batch:
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(deliver(delivery))
                running.add(task)
                task.add_done_callback(running.discard)

    async def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        copies = max(1, self.settings.duplicate)
        results = await asyncio.gather(*(self._send(delivery, i) for i in range(copies)))
        if any(results):
            self._finish(delivery)
            return
        if delivery.attempts >= self.settings.max_attempts:
            self._finish(delivery)
            return
        schedule = self.settings.retry_schedule_s or (0.0,)
        wait = schedule[min(delivery.attempts - 1, len(schedule) - 1)]
        task = asyncio.get_running_loop().create_task(self._retry_later(delivery, wait))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry_later(self, delivery: Delivery, wait: float) -> None:
        await asyncio.sleep(wait)
        await self._attempt(delivery)

    def _finish(self, delivery: Delivery) -> None:
        delivery.done = True
        self._pending -= 1

    async def _send(self, delivery: Delivery, copy: int) -> bool:
        client = self._http()
        entry: dict[str, Any] = {
            "unique_key": delivery.unique_key,
            "webhook_type": delivery.webhook_type,
            "endpoint": delivery.endpoint.url,
            "signature_algo": delivery.endpoint.signature_algo,
            "attempt": delivery.attempts,
            "copy": copy,
            "sent_at": time.time(),
            "status_code": None,
            "error": None,
        }
        self.log.append(entry)
        try:
            response = await client.post(
                delivery.endpoint.url, content=delivery.body, headers=delivery.headers
            )
            entry["status_code"] = response.status_code
            return 200 <= response.status_code < 300
        except Exception as exc:  # any failure is a failed attempt: a delivery is never left pending
            entry["error"] = f"{type(exc).__name__}: {exc}"
            return False

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            verify = self.verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            # No keep-alive: an idle TLS connection held by this loop would stall the receiver's shutdown
            # when both run in one process (the server waits for a close_notify nobody reads).
            self._client = httpx.AsyncClient(
                verify=verify,
                timeout=self.settings.timeout_s,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._client

    def set_verify(self, verify: bool | str | ssl.SSLContext) -> None:
        """Trust another CA for receivers; takes effect on the next delivery."""
        self.verify = verify
        self._client = None  # the old client is dropped; its connections close with the loop

    # -- admin -------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery succeeded or gave up; False on timeout."""
        end = time.monotonic() + timeout
        while self._pending > 0:
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.01)
        return True

    def snapshot(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["retry_schedule_s"] = list(self.settings.retry_schedule_s)
        return {"settings": settings, "pending": self._pending, "deliveries": list(self.log)}

    def reset(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
        self._worker = None
        self._queue = None
        self._pending = 0
        self.log.clear()
        self.deliveries.clear()
        self.settings = replace(self._initial_settings)

    async def aclose(self) -> None:
        self.reset()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
