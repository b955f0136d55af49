"""The Lago target ``send_usage``: canonical usage events into ``POST /events/batch``.

The router delivers one message at a time, many at once (``concurrency``); this target gathers the
deliveries in flight (``lead2cash.routes.batching.Coalescer``) into batches of at most 100 events (Lago's limit), sent as soon as a batch is full
or ``linger`` after its first event. Each delivery still ends on its own:

- Exactly once rests on Lago's dedupe by ``transaction_id`` (the event's canonical id): a resent event is
  accepted and counted once, so a batch in doubt (a timeout, a crash before the outcome was recorded) is
  simply sent again, and ``lookup`` has nothing to ask.
- One invalid event makes Lago refuse the whole request with 422 and ``error_details`` keyed by the
  event's index: those events fail alone (permanent: a dead letter with Lago's reason) and the rest are
  sent again at once, in the same delivery.
- ``requests_per_second`` (Lago's event rate limit, 500 by default) spaces the requests; a 429 still
  answered is waited out by the connector (``Retry-After``) or handed to the router as throttled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from lead2cash.canonical_model import UsageEvent
from lead2cash.config.base import Duration, Strict
from lead2cash.config.errors import ConfigProblems
from lead2cash.connectors.lago import LagoClient
from lead2cash.errors import DeliveryError, PermanentError
from lead2cash.routes.batching import Coalescer

MAX_BATCH = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SendUsageOptions(Strict):
    batch_size: int = Field(MAX_BATCH, ge=1, le=MAX_BATCH, description="events per request (Lago: <= 100)")
    linger: Duration = Field(0.005, le=5, description="how long a batch waits for more events once started")
    requests_per_second: float = Field(500.0, gt=0, le=100_000, description="Lago's event rate limit")


def lago_event(event: UsageEvent) -> dict[str, Any]:
    """Lago's ``EventInputObject``. Numbers go as strings (exact, and what the OpenAPI's ``oneOf`` takes)."""
    delta = event.timestamp - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    properties = {
        k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in event.properties.items()
    }
    return {
        "transaction_id": event.id,
        "external_subscription_id": event.subscription_id,
        "code": event.metric_code,
        "timestamp": f"{seconds}.{delta.microseconds // 1000:03d}",
        "properties": properties,
    }


def _copy(exc: DeliveryError) -> DeliveryError:
    """Each waiting delivery raises its own exception object (tracebacks are per raise)."""
    return type(exc)(exc.message, retry_after=exc.retry_after, details=dict(exc.details))


def _per_event(exc: DeliveryError) -> dict[int, Any] | None:
    """Lago's 422 ``error_details`` when keyed by event index, else None."""
    details = exc.details.get("error_details")
    if exc.details.get("status") != 422 or not isinstance(details, Mapping) or not details:
        return None
    if not all(isinstance(k, str) and k.isdigit() for k in details):
        return None
    return {int(k): v for k, v in details.items()}


class UsageTarget:
    def __init__(self, name: str, client: LagoClient, options: SendUsageOptions) -> None:
        self.name = name
        self.client = client
        self.options = options
        self._interval = 1.0 / options.requests_per_second
        self._next_at = 0.0
        # The batch assembly shared with other batching targets (lead2cash/routes/batching.py).
        self._batches: Coalescer[dict[str, Any], str] = Coalescer(
            self._send, max_size=options.batch_size, linger=options.linger
        )
        self.requests = 0
        self.refused = 0

    @classmethod
    def from_options(cls, name: str, client: LagoClient, options: Mapping[str, Any]) -> UsageTarget:
        try:
            opts = SendUsageOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise ConfigProblems(
                [(("options", *map(str, e["loc"])), e["msg"]) for e in exc.errors()]
            ) from None
        return cls(name, client, opts)

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        if not isinstance(entity, UsageEvent):
            raise PermanentError(f"send_usage takes UsageEvent, not {type(entity).__name__}")
        return await self._batches.submit(lago_event(entity))

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        # Lago deduplicates by transaction_id: sending again is the lookup, and costs no double count.
        return None

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self._next_at)
        self._next_at = at + self._interval
        if at > now:
            await asyncio.sleep(at - now)

    async def _send(self, batch: list[dict[str, Any]]) -> list[str | BaseException]:
        """One result per event: its reference, or the reason Lago refused it. A failure of the whole
        request is raised (each waiting delivery fails with it)."""
        results: list[str | BaseException | None] = [None] * len(batch)
        remaining = list(range(len(batch)))
        while remaining:
            await self._pace()
            self.requests += 1
            try:
                await self.client.request(
                    "POST",
                    "/events/batch",
                    "events.batch",
                    body={"events": [batch[i] for i in remaining]},
                    idempotent=True,  # Lago dedupes by transaction_id: a repeat counts once
                )
            except DeliveryError as exc:
                bad = _per_event(exc)
                if bad is None or not set(bad) <= set(range(len(remaining))):
                    if not any(r is not None for r in results):
                        raise
                    for i in remaining:  # events refused earlier keep their own reason
                        results[i] = _copy(exc)
                    break
                for index, errors in bad.items():
                    body = batch[remaining[index]]
                    self.refused += 1
                    results[remaining[index]] = PermanentError(
                        f"Lago refused usage event {body['transaction_id']}: {errors}",
                        details={"status": 422, "error_details": errors},
                    )
                remaining = [r for n, r in enumerate(remaining) if n not in bad]
                continue
            for i in remaining:
                results[i] = f"event:{batch[i]['transaction_id']}"
            break
        return [r if r is not None else PermanentError("no result") for r in results]
