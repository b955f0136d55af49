"""Starlette app: ``/health``, ``/metrics``, ``POST /webhooks/{route}`` and the admin API, over the hub's
narrow port (``web/port.py``), never the hub itself.

A webhook is verified on the raw body (constant-time compare), deduplicated on the sender's unique key
(stored, so a replay after a restart is still recognised), written to the route's inbox and answered 202.
It is never processed inline: delivery happens in the route's loop.

An exception a handler did not expect is logged through structlog (so the secret redactor sees the
traceback) and answered 500 here: it never reaches uvicorn, whose own logger would print it unredacted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lead2cash.config.schema import WebhookTrigger
from lead2cash.routes.interfaces import WebhookSource
from lead2cash.store import DeadLetter, XrefWrite, is_unavailable
from lead2cash.systems.registry import system_types
from lead2cash.web.port import HubPort

log = structlog.get_logger("lead2cash.web")

DLQ_STATUSES = ("open", "replayed", "discarded", "all")
DLQ_LIMIT = 500

# uvicorn's own loggers rendered by the structlog chain (JSON, secrets redacted) instead of its handlers.
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"structlog": {"()": "lead2cash.observability.StructlogHandler"}},
    "loggers": {
        "uvicorn": {"handlers": ["structlog"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["structlog"], "level": "INFO", "propagate": False},
    },
}


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """Read the body but stop at ``limit`` bytes: a 50 MB post must not be buffered whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def hmac_valid(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature.strip())


class ContainErrors:
    """Outermost handler of the app's own failures: a structlog record (redacted; no headers, no body)
    and a 500, instead of an exception raised to the server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("web request failed", method=scope.get("method"), path=scope.get("path"))
            if not started:
                await JSONResponse({"error": "internal error"}, status_code=500)(scope, receive, send)


def dead_letter_summary(d: DeadLetter) -> dict[str, Any]:
    """What the listing shows: metadata only. Payloads carry customers' names, addresses and amounts."""
    return {
        "id": d.id,
        "route": d.route,
        "stage": d.stage,
        "error_class": d.error_class,
        "key": d.idempotency_key,
        "reason": d.error_message,
        "status": d.status,
        "attempts": len(d.attempts),
        "created": _iso(d.created_at_ms),
        "trace_id": d.trace_id,
    }


def dead_letter_record(d: DeadLetter) -> dict[str, Any]:
    """One dead letter whole, as ``lead2cash dlq show`` prints it; payloads verbatim (JSON text, exact)."""
    return {
        **dead_letter_summary(d),
        "attempts": d.attempts,
        "message_id": d.message_id,
        "updated": _iso(d.updated_at_ms),
        "original_payload": d.original_payload,
        "canonical_payload": d.canonical_payload,
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bearer_matches(header: bytes, token: str) -> bool:
    """Constant-time check of a raw ``Authorization`` header; any bytes at all (non-ASCII, not UTF-8,
    no scheme) are simply not the token."""
    return hmac.compare_digest(header, f"Bearer {token}".encode())


def create_app(hub: HubPort) -> Starlette:
    """The app over ``hub``: anything that offers what ``HubPort`` declares (the hub does)."""
    admin_token = hub.config.web.admin_token

    def authorised(request: Request) -> bool:
        if admin_token is None:
            return False
        # Starlette decodes header values as latin-1, so this gives back the bytes sent.
        header = request.headers.get("authorization", "").encode("latin-1")
        return bearer_matches(header, admin_token.get_secret_value())

    async def health(_: Request) -> Response:
        body = {"status": "ok", "routes": sorted(hub.routes), "store": hub.store.backend}
        down = hub.store_unavailable
        if down is not None:  # the hub waits for its store: not ready, and says why
            return JSONResponse({**body, "status": "unavailable", "reason": down}, status_code=503)
        return JSONResponse(body)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def accept(
        name: str, records: list[Any], unique: str | None, xrefs: Sequence[XrefWrite] = ()
    ) -> tuple[int, dict[str, Any], str]:
        """Status, body and the outcome of one delivery for one route (accepted, duplicate, ignored,
        dead_letter, unavailable)."""
        # The receipt is written in the inbox transaction: a failed write leaves the delivery unseen, so
        # the sender's retry is not mistaken for a duplicate.
        receipt = (f"webhook:{name}", unique) if unique else None
        try:
            done = hub.routes[name].submit_counted(records, receipt=receipt, xrefs=xrefs)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            hub.store_failed(exc)  # the sender retries a 503; nothing was written
            return 503, {"error": "the hub's store is unavailable; retry later"}, "unavailable"
        if done is None:
            return 200, {"status": "duplicate", "unique_key": unique}, "duplicate"
        accepted, dead = done
        hub.wake(name)
        outcome = "accepted" if accepted else "dead_letter" if dead else "ignored"
        return 202, {"status": "accepted", "records": accepted}, outcome

    def count_event(source: str, event_type: str, outcomes: Sequence[str]) -> None:
        """One count per delivery: the best of what the routes made of it."""
        outcome = next(
            (o for o in ("accepted", "dead_letter", "unavailable", "duplicate") if o in outcomes), "ignored"
        )
        hub.metrics.webhook_events.labels(source, event_type, outcome).inc()
        if outcome == "ignored":
            # Acknowledged (the sender must not retry it) and counted; no route reads it.
            log.debug("webhook event read by no route; acknowledged", source=source, type=event_type)

    async def push_verified(
        name: str, source: WebhookSource, request: Request, body: bytes
    ) -> tuple[int, dict[str, Any], str, str]:
        # The system's own verification (e.g. Lago's signatures) and its own delivery key.
        verified = await source.verify_webhook(request.headers, body)
        if verified is None:
            return 401, {"error": "invalid or missing signature"}, "refused", "-"
        # No await from here to the inbox write: the source's state check and its write are atomic.
        status, data, outcome = accept(name, verified.records, verified.unique_key, verified.xrefs)
        return status, data, outcome, verified.event_type

    async def system_webhook(kind: str, request: Request) -> Response:
        """``POST /webhooks/<path>``, a webhook receiver a system type declares (Lago's one endpoint):
        every webhook route whose source is a system of that type gets the event through the same path;
        each source verifies it and keeps what it accepts."""
        names = [
            n
            for n, cfg in hub.route_configs.items()
            if isinstance(cfg.source.trigger, WebhookTrigger)
            and getattr(hub.config.systems.get(cfg.source.system), "type", None) == kind
            and isinstance(hub.routes[n].source, WebhookSource)
        ]
        if not names:
            return JSONResponse({"error": f"no {kind} webhook route here"}, status_code=404)
        limit = max(hub.route_configs[n].source.trigger.max_body_bytes for n in names)  # type: ignore[union-attr]
        try:
            body = await read_limited(request, limit)
        except BodyTooLarge:
            return JSONResponse({"error": f"body exceeds {limit} bytes"}, status_code=413)
        results = {n: await push_verified(n, hub.routes[n].source, request, body) for n in names}  # type: ignore[arg-type]
        statuses = [status for status, *_ in results.values()]
        status = 401 if all(s == 401 for s in statuses) else 202 if 202 in statuses else 200
        if status != 401:  # an unverified body is counted nowhere: its type is anybody's text
            types = [t for s, _, _, t in results.values() if s != 401]
            count_event(kind, types[0], [o for _, _, o, _ in results.values()])
        return JSONResponse({n: data for n, (_, data, *_) in results.items()}, status_code=status)

    async def webhook(request: Request) -> Response:
        name = request.path_params["route"]
        cfg = hub.route_configs.get(name)
        if cfg is None or not isinstance(cfg.source.trigger, WebhookTrigger):
            return JSONResponse({"error": "no webhook route here"}, status_code=404)
        trigger = cfg.source.trigger
        try:
            body = await read_limited(request, trigger.max_body_bytes)
        except BodyTooLarge:
            return JSONResponse({"error": f"body exceeds {trigger.max_body_bytes} bytes"}, status_code=413)
        source = hub.routes[name].source
        if isinstance(source, WebhookSource):
            status, data, outcome, event_type = await push_verified(name, source, request, body)
            if status != 401:
                count_event(cfg.source.system, event_type, [outcome])
            return JSONResponse(data, status_code=status)
        if trigger.secret is None or not hmac_valid(
            trigger.secret.get_secret_value(), body, request.headers.get(trigger.signature_header)
        ):
            return JSONResponse({"error": "invalid or missing signature"}, status_code=401)
        try:
            payload: Any = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        records = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(r, dict) for r in records):
            return JSONResponse({"error": "expected a JSON object or a list of objects"}, status_code=400)
        unique = request.headers.get(trigger.unique_key_header) if trigger.unique_key_header else None
        status, data, outcome = accept(name, records, unique)
        count_event(cfg.source.system, "-", [outcome])
        return JSONResponse(data, status_code=status)

    async def dead_letters(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        route = request.query_params.get("route") or None
        status = request.query_params.get("status", "open")
        if status not in DLQ_STATUSES:
            return JSONResponse(
                {"error": f"status must be one of {', '.join(DLQ_STATUSES)}"}, status_code=400
            )
        rows = hub.store.dlq_list(route, status, DLQ_LIMIT)
        return JSONResponse([dead_letter_summary(d) for d in rows])

    async def dead_letter(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        wanted = request.path_params["id"]
        found = hub.store.dlq_get(wanted) if wanted < 2**63 else None
        if found is None:
            return JSONResponse({"error": "no such dead letter"}, status_code=404)
        return JSONResponse(dead_letter_record(found))

    async def billing_summary(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        if hub.summary is None:
            return JSONResponse({"error": "the billing summary is not configured"}, status_code=404)
        customer = request.path_params["customer"]
        rows = hub.summary.state.summaries(customer)
        if not rows:
            return JSONResponse({"error": "no billing summary for this customer"}, status_code=404)
        summaries = [{**s.public(), "version": v, "updated_at": _iso(at)} for s, v, at in rows]
        return JSONResponse({"customer": customer, "summaries": summaries})

    def receiver(kind: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return await system_webhook(kind, request)

        return endpoint

    # One endpoint per webhook receiver the registered system types declare, before the per-route one.
    receivers = [
        Route(f"/webhooks/{hook.path}", receiver(spec.name), methods=["POST"])
        for spec in system_types().values()
        for hook in spec.webhooks
    ]
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            *receivers,
            Route("/webhooks/{route}", webhook, methods=["POST"]),
            Route("/admin/dead-letters", dead_letters),
            Route("/admin/dead-letters/{id:int}", dead_letter),
            Route("/admin/customers/{customer:path}/billing-summary", billing_summary),
        ],
        middleware=[Middleware(ContainErrors)],
    )
