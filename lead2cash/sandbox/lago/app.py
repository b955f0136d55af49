"""The Starlette app: Lago's REST API v1 under ``/api/v1`` plus the sandbox's admin endpoints."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from time import monotonic
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lead2cash.sandbox.faults import admin_routes
from lead2cash.sandbox.lago.money import tax_amount
from lead2cash.sandbox.lago.store import LagoError, invalid, paginate, parse_datetime, ts
from lead2cash.sandbox.lago.usage import MAX_BATCH, UsageError, charge_usage_json

if TYPE_CHECKING:
    from lead2cash.sandbox.lago import LagoSandbox

Handler = Callable[[Request], Awaitable[Response]]

UNAUTHORIZED = b'{"status":401,"error":"Unauthorized"}'
PER_PAGE = 20


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: LagoError) -> Response:
    return json_response(exc.body(), exc.status)


def bad_request(message: str) -> Response:
    return json_response({"status": 400, "error": f"BadRequest: {message}"}, 400)


class _CountWrites:
    """Counts the requests that may change the organization (every method but GET and HEAD)."""

    def __init__(self, app: ASGIApp, writes: dict[str, int]) -> None:
        self.app, self.writes = app, writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        # Counted when the request arrives and again once it is handled: a listing computed while the
        # write waited for its body is not kept past it.
        self.writes["n"] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.writes["n"] += 1


def build_app(sandbox: LagoSandbox) -> Starlette:
    store = lambda: sandbox.store  # noqa: E731 - the store is replaced on reset
    faults = sandbox.faults
    expected_auth = f"Bearer {sandbox.api_key}"
    rate = {"window": 0, "count": 0}

    def rate_headers(remaining: int, reset_s: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(sandbox.rate_limit_per_s or 50),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(reset_s),
        }

    def fault_error(status: int, retry_after: int) -> Response:
        if status == 429:
            headers = rate_headers(0, retry_after)
            headers["Retry-After"] = str(retry_after)
            body = {"status": 429, "error": "Too Many Requests", "code": "too_many_requests"}
            return json_response(body, 429, headers)
        headers = {"Retry-After": str(retry_after)} if status == 503 else None
        body = {
            "status": status,
            "error": "Service Unavailable" if status == 503 else "Internal Server Error",
        }
        return json_response(body, status, headers)

    async def expired() -> Response:
        return Response(UNAUTHORIZED, 401, media_type="application/json")

    def endpoint(operation: str, write: bool = False) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def run(request: Request) -> Response:
                if request.headers.get("authorization") != expected_auth:
                    return Response(UNAUTHORIZED, 401, media_type="application/json")
                if sandbox.api_url is None:
                    sandbox.api_url = str(request.base_url).rstrip("/")
                limit = sandbox.rate_limit_per_s
                if limit:
                    window = int(monotonic())
                    if rate["window"] != window:
                        rate["window"], rate["count"] = window, 0
                    rate["count"] += 1
                    if rate["count"] > limit:
                        return fault_error(429, 1)
                if faults.rules:
                    injected = await faults.apply(request, operation, fault_error, expired)
                    if injected is not None:
                        return injected
                try:
                    response = await handler(request)
                except LagoError as exc:
                    return error_response(exc)
                if write and response.status_code < 300 and faults.rules:
                    faults.drop_after_commit(request, operation)
                if limit:
                    response.headers.update(rate_headers(limit - rate["count"], 1))
                return response

            return run

        return wrap

    async def body_of(request: Request, root: str | None) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise LagoError(400, msg="BadRequest: invalid JSON body") from None
        if root is None:
            return data if isinstance(data, dict) else {}
        inner = data.get(root) if isinstance(data, dict) else None
        if not isinstance(inner, dict):
            raise LagoError(400, msg=f"BadRequest: param is missing or the value is empty: {root}")
        return inner

    def page_args(request: Request) -> tuple[int, int]:
        try:
            page = max(1, int(request.query_params.get("page", 1)))
            per_page = max(1, int(request.query_params.get("per_page", PER_PAGE)))
        except ValueError:
            page, per_page = 1, PER_PAGE
        return page, per_page

    # A listing read page by page would filter and sort the organization's records again for every page:
    # quadratic in its size (a parallel run of 10,000 customers reads hundreds of pages of invoices and
    # fees). The first page of a query computes the listing; its next pages reuse it while nothing has been
    # written to the sandbox since (any request but GET counts), for at most a minute.
    snapshots: dict[tuple[Any, ...], tuple[float, int, int, list[Any]]] = {}
    writes = {"n": 0}

    def snapshot(request: Request, compute: Callable[[], list[Any]]) -> list[Any]:
        page, _ = page_args(request)
        query = sorted((k, v) for k, v in request.query_params.multi_items() if k not in ("page", "per_page"))
        key = (request.url.path, *query)
        now, org = monotonic(), id(store())
        hit = snapshots.get(key)
        if page > 1 and hit is not None and hit[1:3] == (writes["n"], org) and now - hit[0] < 60:
            return hit[3]
        items = compute()
        snapshots.pop(key, None)
        snapshots[key] = (now, writes["n"], org, items)
        while len(snapshots) > 16:
            snapshots.pop(next(iter(snapshots)))
        return items

    def listing(request: Request, name: str, items: list[Any], render: Callable[[Any], Any]) -> Response:
        chunk, meta = paginate(items, *page_args(request))
        return json_response({name: [render(i) for i in chunk], "meta": meta})

    def customer_json(customer: Any) -> dict[str, Any]:
        data = customer.base_json()
        data["integration_customers"] = []
        data["taxes"] = [t.json() for t in store().customer_taxes(customer)]
        return data

    # -- customers -----------------------------------------------------------------------------------

    @endpoint("customers.create", write=True)
    async def create_customer(request: Request) -> Response:
        customer = store().upsert_customer(await body_of(request, "customer"))
        return json_response({"customer": customer_json(customer)})

    @endpoint("customers.list")
    async def list_customers(request: Request) -> Response:
        return listing(request, "customers", list(store().customers.values()), customer_json)

    @endpoint("customers.get")
    async def get_customer(request: Request) -> Response:
        customer = store().customer(request.path_params["external_id"])
        return json_response({"customer": customer_json(customer)})

    @endpoint("customers.delete", write=True)
    async def delete_customer(request: Request) -> Response:
        customer = store().delete_customer(request.path_params["external_id"])
        return json_response({"customer": customer_json(customer)})

    # -- plans and add-ons ---------------------------------------------------------------------------

    @endpoint("plans.list")
    async def list_plans(request: Request) -> Response:
        return listing(request, "plans", list(store().plans.values()), lambda p: p.json())

    @endpoint("plans.get")
    async def get_plan(request: Request) -> Response:
        plan = store().plans.get(request.path_params["code"])
        if plan is None:
            raise LagoError(404, "plan_not_found")
        return json_response({"plan": plan.json()})

    @endpoint("add_ons.list")
    async def list_add_ons(request: Request) -> Response:
        return listing(request, "add_ons", list(store().add_ons.values()), lambda a: a.json())

    @endpoint("add_ons.get")
    async def get_add_on(request: Request) -> Response:
        add_on = store().add_ons.get(request.path_params["code"])
        if add_on is None:
            raise LagoError(404, "add_on_not_found")
        return json_response({"add_on": add_on.json()})

    # -- subscriptions -------------------------------------------------------------------------------

    @endpoint("subscriptions.create", write=True)
    async def create_subscription(request: Request) -> Response:
        sub, _ = store().create_subscription(await body_of(request, "subscription"))
        return json_response({"subscription": sub.extended_json()})

    @endpoint("subscriptions.list")
    async def list_subscriptions(request: Request) -> Response:
        q = request.query_params
        statuses = q.getlist("status[]") or ["active"]
        items = [s for s in store().subscriptions.values() if s.status in statuses]
        if q.get("external_customer_id"):
            items = [s for s in items if s.customer.external_id == q["external_customer_id"]]
        if q.get("plan_code"):
            items = [s for s in items if s.plan.code == q["plan_code"]]
        return listing(request, "subscriptions", items, lambda s: s.json())

    def find_subscription(request: Request) -> Any:
        # Lago looks the external id up among subscriptions of one status, ``active`` unless told.
        sub = store().subscription(request.path_params["external_id"])
        if sub.status != request.query_params.get("status", "active"):
            raise LagoError(404, "subscription_not_found")
        return sub

    @endpoint("subscriptions.get")
    async def get_subscription(request: Request) -> Response:
        return json_response({"subscription": find_subscription(request).extended_json()})

    @endpoint("subscriptions.update", write=True)
    async def update_subscription(request: Request) -> Response:
        # lago-api's update takes the only subscription with this external id whatever its status, and
        # filters by ``status`` only among several; the sandbox holds one per external id.
        sub = store().subscription(request.path_params["external_id"])
        sub = store().update_subscription(sub, await body_of(request, "subscription"))
        return json_response({"subscription": sub.json()})

    @endpoint("subscriptions.terminate", write=True)
    async def terminate_subscription(request: Request) -> Response:
        sub = find_subscription(request)
        if sub.status == "pending":
            sub.status = "canceled"
            sub.terminated_at = store().clock.now()
        else:
            # The spec's enums; pay-in-arrears plans (the sandbox's) ignore the credit note option.
            q = request.query_params
            on_invoice = q.get("on_termination_invoice", "generate")
            on_credit = q.get("on_termination_credit_note")
            if on_invoice not in ("generate", "skip"):
                return error_response(invalid(on_termination_invoice="value_is_invalid"))
            if on_credit is not None and on_credit not in ("credit", "refund", "skip"):
                return error_response(invalid(on_termination_credit_note="value_is_invalid"))
            sub.on_termination_invoice = on_invoice
            if on_credit is not None:
                sub.on_termination_credit_note = on_credit
            store().terminate_subscription(sub, invoice=on_invoice == "generate")
        return json_response({"subscription": sub.json()})

    # -- invoices ------------------------------------------------------------------------------------

    @endpoint("invoices.create", write=True)
    async def create_invoice(request: Request) -> Response:
        invoice = store().create_one_off_invoice(await body_of(request, "invoice"))
        return json_response({"invoice": invoice.extended_json()})

    @endpoint("invoices.list")
    async def list_invoices(request: Request) -> Response:
        items = snapshot(request, lambda: store().list_invoices(request.query_params))
        return listing(request, "invoices", items, lambda i: i.json())

    @endpoint("fees.list")
    async def list_fees(request: Request) -> Response:
        items = snapshot(request, lambda: store().list_fees(request.query_params))
        return listing(request, "fees", items, lambda p: p[0].json(p[1]))

    @endpoint("invoices.get")
    async def get_invoice(request: Request) -> Response:
        invoice = store().invoice(request.path_params["lago_id"])
        return json_response({"invoice": invoice.extended_json()})

    @endpoint("invoices.update", write=True)
    async def update_invoice(request: Request) -> Response:
        invoice = store().invoice(request.path_params["lago_id"])
        invoice = store().update_invoice(invoice, await body_of(request, "invoice"))
        return json_response({"invoice": invoice.extended_json()})

    @endpoint("invoices.finalize", write=True)
    async def finalize_invoice(request: Request) -> Response:
        invoice = store().finalize_invoice(request.path_params["lago_id"])
        return json_response({"invoice": invoice.extended_json()})

    @endpoint("invoices.void", write=True)
    async def void_invoice(request: Request) -> Response:
        invoice = store().void_invoice(request.path_params["lago_id"])
        return json_response({"invoice": invoice.extended_json()})

    @endpoint("invoices.lose_dispute", write=True)
    async def lose_dispute(request: Request) -> Response:
        invoice = store().lose_dispute(request.path_params["lago_id"])
        return json_response({"invoice": invoice.extended_json()})

    # -- payments ------------------------------------------------------------------------------------

    @endpoint("payments.create", write=True)
    async def create_payment(request: Request) -> Response:
        payment = store().create_manual_payment(await body_of(request, "payment"))
        return json_response({"payment": payment.json()})

    @endpoint("payments.list")
    async def list_payments(request: Request) -> Response:
        items = snapshot(request, lambda: store().list_payments(request.query_params))
        return listing(request, "payments", items, lambda p: p.json())

    @endpoint("customers.payments")
    async def list_customer_payments(request: Request) -> Response:
        items = store().list_payments(request.query_params, request.path_params["external_id"])
        return listing(request, "payments", items, lambda p: p.json())

    @endpoint("payments.get")
    async def get_payment(request: Request) -> Response:
        # Lago answers under the "payment" root (render_payment), as POST does.
        return json_response({"payment": store().payment(request.path_params["lago_id"]).json()})

    # -- credit notes --------------------------------------------------------------------------------

    @endpoint("credit_notes.create", write=True)
    async def create_credit_note(request: Request) -> Response:
        note = store().create_credit_note(await body_of(request, "credit_note"))
        return json_response({"credit_note": note.json()})

    @endpoint("credit_notes.list")
    async def list_credit_notes(request: Request) -> Response:
        items = list(store().credit_notes.values())
        ext = request.query_params.get("external_customer_id")
        if ext:
            items = [n for n in items if n.invoice.customer.external_id == ext]
        number = request.query_params.get("invoice_number")
        if number:
            items = [n for n in items if n.invoice.number == number]
        items.sort(key=lambda n: n.created_at, reverse=True)
        return listing(request, "credit_notes", items, lambda n: n.json())

    @endpoint("credit_notes.get")
    async def get_credit_note(request: Request) -> Response:
        note = store().credit_notes.get(request.path_params["lago_id"])
        if note is None:
            raise LagoError(404, "credit_note_not_found")
        return json_response({"credit_note": note.json()})

    # -- webhook endpoints and keys ------------------------------------------------------------------

    def endpoint_json(e: Any) -> dict[str, Any]:
        return e.json(store().organization_id)

    @endpoint("webhook_endpoints.create", write=True)
    async def create_webhook_endpoint(request: Request) -> Response:
        e = store().create_webhook_endpoint(await body_of(request, "webhook_endpoint"))
        return json_response({"webhook_endpoint": endpoint_json(e)})

    @endpoint("webhook_endpoints.list")
    async def list_webhook_endpoints(request: Request) -> Response:
        return listing(request, "webhook_endpoints", list(store().webhook_endpoints.values()), endpoint_json)

    @endpoint("webhook_endpoints.get")
    async def get_webhook_endpoint(request: Request) -> Response:
        e = store().webhook_endpoint(request.path_params["lago_id"])
        return json_response({"webhook_endpoint": endpoint_json(e)})

    @endpoint("webhook_endpoints.delete", write=True)
    async def delete_webhook_endpoint(request: Request) -> Response:
        e = store().webhook_endpoint(request.path_params["lago_id"])
        del store().webhook_endpoints[e.lago_id]
        return json_response({"webhook_endpoint": endpoint_json(e)})

    @endpoint("webhooks.public_key")
    async def public_key(_: Request) -> Response:
        return PlainTextResponse(sandbox.signer.public_key_b64)

    @endpoint("webhooks.public_key")
    async def json_public_key(_: Request) -> Response:
        return json_response({"webhook": {"public_key": sandbox.signer.public_key_b64}})

    # -- wallets and prepaid credits (wallets.py) --------------------------------------------------------

    def wallet_json(wallet: Any) -> dict[str, Any]:
        return {"wallet": wallet.json()}

    @endpoint("wallets.create", write=True)
    async def create_wallet(request: Request) -> Response:
        return json_response(wallet_json(store().wallets.create(await body_of(request, "wallet"))))

    @endpoint("wallets.list")
    async def list_wallets(request: Request) -> Response:
        wallets = store().wallets.list(request.query_params)
        return listing(request, "wallets", wallets, lambda w: w.json())

    @endpoint("wallets.get")
    async def get_wallet(request: Request) -> Response:
        return json_response(wallet_json(store().wallets.get(request.path_params["lago_id"])))

    @endpoint("wallets.update", write=True)
    async def update_wallet(request: Request) -> Response:
        data = await body_of(request, "wallet")
        return json_response(wallet_json(store().wallets.update(request.path_params["lago_id"], data)))

    @endpoint("wallets.terminate", write=True)
    async def terminate_wallet(request: Request) -> Response:
        return json_response(wallet_json(store().wallets.terminate(request.path_params["lago_id"])))

    @endpoint("wallet_transactions.create", write=True)
    async def create_wallet_transactions(request: Request) -> Response:
        made = store().wallets.create_transactions(await body_of(request, "wallet_transaction"))
        return json_response({"wallet_transactions": [t.json() for t in made]})

    @endpoint("wallet_transactions.list")
    async def list_wallet_transactions(request: Request) -> Response:
        items = store().wallets.of_wallet(request.path_params["lago_id"], request.query_params)
        return listing(request, "wallet_transactions", items, lambda t: t.json())

    @endpoint("wallet_transactions.get")
    async def get_wallet_transaction(request: Request) -> Response:
        tx = store().wallets.transaction(request.path_params["lago_id"])
        # The OpenAPI document answers the bare WalletTransactionObject here (no root key).
        return json_response(tx.json())

    @endpoint("wallet_transactions.fundings")
    async def list_wallet_transaction_fundings(request: Request) -> Response:
        items = store().wallets.fundings_of(request.path_params["lago_id"])
        return listing(request, "wallet_transaction_fundings", items, lambda f: f.json())

    # -- usage: billable metrics, plans with charges, events, current usage ----------------------------

    @endpoint("billable_metrics.create", write=True)
    async def create_billable_metric(request: Request) -> Response:
        try:
            metric = store().usage.create_metric(await body_of(request, "billable_metric"))
        except UsageError as exc:
            raise LagoError(exc.status, exc.code, exc.details) from None
        store().emit("billable_metric.created", "billable_metric", metric.json())
        return json_response({"billable_metric": metric.json()})

    @endpoint("billable_metrics.list")
    async def list_billable_metrics(request: Request) -> Response:
        items = list(store().usage.metrics.values())
        return listing(request, "billable_metrics", items, lambda m: m.json())

    @endpoint("billable_metrics.get")
    async def get_billable_metric(request: Request) -> Response:
        metric = store().usage.metrics.get(request.path_params["code"])
        if metric is None:
            raise LagoError(404, "billable_metric_not_found")
        return json_response({"billable_metric": metric.json()})

    @endpoint("plans.create", write=True)
    async def create_plan(request: Request) -> Response:
        plan = store().create_plan(await body_of(request, "plan"))
        store().emit("plan.created", "plan", plan.json())
        return json_response({"plan": plan.json()})

    events_rate = {"window": 0, "count": 0}

    def events_throttled() -> Response | None:
        """Lago's own ceiling on event ingestion (requests per second, single and batch alike)."""
        limit = sandbox.events_rate_limit_per_s
        if not limit:
            return None
        window = int(monotonic())
        if events_rate["window"] != window:
            events_rate["window"], events_rate["count"] = window, 0
        events_rate["count"] += 1
        if events_rate["count"] <= limit:
            return None
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1",
            "Retry-After": "1",
        }
        body = {"status": 429, "error": "Too Many Requests", "code": "too_many_requests"}
        return json_response(body, 429, headers)

    def event_json(event: Any) -> dict[str, Any]:
        sub = store().subscriptions.get(event.external_subscription_id)
        return event.json(sub.lago_id if sub else None, None)

    def take_events(items: list[Any]) -> list[Any]:
        usage = store().usage
        taken = [usage.ingest(item) for item in items]
        new = [event for event, fresh in taken if fresh]
        for event in new:
            sandbox.effects.record("event.create", event.transaction_id)
        errors = usage.processing_errors(new)
        if errors:
            store().emit("events.errors", "events_errors", errors)
        return [event for event, _ in taken]

    @endpoint("events.create", write=True)
    async def create_event(request: Request) -> Response:
        throttled = events_throttled()
        if throttled is not None:
            return throttled
        data = await body_of(request, "event")
        errors = store().usage.check_event(data)
        if errors:
            raise LagoError(422, "validation_errors", errors)
        (event,) = take_events([data])
        return json_response({"event": event_json(event)})

    @endpoint("events.batch", write=True)
    async def create_batch_events(request: Request) -> Response:
        throttled = events_throttled()
        if throttled is not None:
            return throttled
        try:
            raw = await request.body()
        except ClientDisconnect:  # the sender died mid-request (a SIGKILL): nothing was taken in
            return Response(status_code=400)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise LagoError(400, msg="BadRequest: invalid JSON body") from None
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise LagoError(400, msg="BadRequest: param is missing or the value is empty: events")
        if len(items) > MAX_BATCH:
            raise LagoError(422, "validation_errors", {"events": ["too_many_events"]})
        usage = store().usage
        # One invalid event fails the request: its errors are keyed by its index in the batch.
        details = {str(i): e for i, item in enumerate(items) if (e := usage.check_event(item))}
        if details:
            raise LagoError(422, "validation_errors", details)  # type: ignore[arg-type]
        events = take_events(items)
        return json_response({"events": [event_json(e) for e in events]})

    @endpoint("events.get")
    async def get_event(request: Request) -> Response:
        tx = request.path_params["transaction_id"]
        event = next((e for (_, t), e in store().usage.events.items() if t == tx), None)
        if event is None:
            raise LagoError(404, "event_not_found")
        return json_response({"event": event_json(event)})

    @endpoint("customers.current_usage")
    async def current_usage(request: Request) -> Response:
        customer = store().customer(request.path_params["external_id"])
        sub_id = request.query_params.get("external_subscription_id")
        sub = store().subscriptions.get(sub_id or "")
        if sub is None or sub.customer is not customer or sub.status != "active":
            raise LagoError(404, "subscription_not_found")
        start, end = store().current_period(sub)
        currency = customer.currency or sub.plan.currency
        charges = store().usage.charges_usage(sub.external_id, sub.plan.charges, start, end, currency)
        amount = sum(c.amount_cents for c in charges)
        apply_taxes = request.query_params.get("apply_taxes", "true") != "false"
        taxes = store().customer_taxes(customer) if apply_taxes else []
        tax = sum(tax_amount(amount, t.rate) for t in taxes)
        usage = {
            "from_datetime": ts(start),
            "to_datetime": ts(end - timedelta(seconds=1)),
            "issuing_date": end.date().isoformat(),
            "lago_invoice_id": None,
            "currency": currency,
            "amount_cents": amount,
            "taxes_amount_cents": tax,
            "total_amount_cents": amount + tax,
            "charges_usage": [charge_usage_json(c, currency) for c in charges],
        }
        return json_response({"customer_usage": usage})

    # -- sandbox admin -------------------------------------------------------------------------------

    def clock_json() -> dict[str, Any]:
        clock = store().clock
        return {"now": clock.now().isoformat(), "today": clock.today().isoformat()}

    async def get_clock(_: Request) -> Response:
        return JSONResponse(clock_json())

    async def advance_clock(request: Request) -> Response:
        """``{"to": "2026-03-01"}`` (date or date-time) or ``{"days": 31}``: bills what fell due."""
        clock = store().clock
        try:
            body = await body_of(request, None)
            if "to" in body:
                raw = body["to"]
                target = (
                    parse_datetime(raw, "to")
                    if "T" in str(raw)
                    else datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
                )
            else:
                target = clock.now() + timedelta(days=float(body.get("days", 0)))
            invoices = store().advance_clock(target)
        except (ValueError, TypeError, LagoError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({**clock_json(), "invoices": [i.lago_id for i in invoices]})

    async def get_webhooks(_: Request) -> Response:
        return JSONResponse(sandbox.webhooks.snapshot())

    async def put_webhooks(request: Request) -> Response:
        try:
            body = await body_of(request, None)
            if "verify" in body:
                sandbox.webhooks.set_verify(body.pop("verify"))
            sandbox.webhooks.settings.update(body)
        except (TypeError, ValueError, LagoError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(sandbox.webhooks.snapshot())

    async def get_rate_limit(_: Request) -> Response:
        return JSONResponse(
            {"per_s": sandbox.rate_limit_per_s, "events_per_s": sandbox.events_rate_limit_per_s}
        )

    async def put_rate_limit(request: Request) -> Response:
        """``{"per_s": 50}`` (Lago's limit per organization on everything but events; null: none) and/or
        ``{"events_per_s": 500}``, at runtime."""
        try:
            body = await body_of(request, None)
            for field, attr in (("per_s", "rate_limit_per_s"), ("events_per_s", "events_rate_limit_per_s")):
                if field in body:
                    value = body[field]
                    if value is not None and (
                        not isinstance(value, int) or isinstance(value, bool) or value < 1
                    ):
                        raise ValueError(f"{field}: a whole number of requests per second >= 1, or null")
                    setattr(sandbox, attr, value)
        except (TypeError, ValueError, LagoError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return await get_rate_limit(request)

    async def settle_refund(request: Request) -> Response:
        """``{"status": "succeeded" | "failed"}``: the payment provider's answer to a refund."""
        try:
            body = await body_of(request, None)
            note = store().settle_refund(request.path_params["lago_id"], body.get("status"))
        except LagoError as exc:
            return error_response(exc)
        return json_response({"credit_note": note.json()})

    async def drain_webhooks(request: Request) -> Response:
        timeout = float(request.query_params.get("timeout_s", 10))
        done = await sandbox.webhooks.drain(timeout)
        return JSONResponse({"drained": done, "pending": sandbox.webhooks.pending}, 200 if done else 504)

    api = "/api/v1"
    routes = [
        Route(f"{api}/customers", create_customer, methods=["POST"]),
        Route(f"{api}/customers", list_customers, methods=["GET"]),
        Route(f"{api}/customers/{{external_id}}", get_customer, methods=["GET"]),
        Route(f"{api}/customers/{{external_id}}", delete_customer, methods=["DELETE"]),
        Route(f"{api}/plans", list_plans, methods=["GET"]),
        Route(f"{api}/plans/{{code}}", get_plan, methods=["GET"]),
        Route(f"{api}/add_ons", list_add_ons, methods=["GET"]),
        Route(f"{api}/add_ons/{{code}}", get_add_on, methods=["GET"]),
        Route(f"{api}/subscriptions", create_subscription, methods=["POST"]),
        Route(f"{api}/subscriptions", list_subscriptions, methods=["GET"]),
        Route(f"{api}/subscriptions/{{external_id}}", get_subscription, methods=["GET"]),
        Route(f"{api}/subscriptions/{{external_id}}", update_subscription, methods=["PUT"]),
        Route(f"{api}/subscriptions/{{external_id}}", terminate_subscription, methods=["DELETE"]),
        Route(f"{api}/invoices", create_invoice, methods=["POST"]),
        Route(f"{api}/invoices", list_invoices, methods=["GET"]),
        Route(f"{api}/fees", list_fees, methods=["GET"]),
        Route(f"{api}/invoices/{{lago_id}}", get_invoice, methods=["GET"]),
        Route(f"{api}/invoices/{{lago_id}}", update_invoice, methods=["PUT"]),
        Route(f"{api}/invoices/{{lago_id}}/finalize", finalize_invoice, methods=["PUT"]),
        Route(f"{api}/invoices/{{lago_id}}/void", void_invoice, methods=["POST"]),
        Route(f"{api}/invoices/{{lago_id}}/lose_dispute", lose_dispute, methods=["POST"]),
        Route(f"{api}/payments", create_payment, methods=["POST"]),
        Route(f"{api}/payments", list_payments, methods=["GET"]),
        Route(f"{api}/payments/{{lago_id}}", get_payment, methods=["GET"]),
        Route(f"{api}/customers/{{external_id}}/payments", list_customer_payments, methods=["GET"]),
        Route(f"{api}/credit_notes", create_credit_note, methods=["POST"]),
        Route(f"{api}/credit_notes", list_credit_notes, methods=["GET"]),
        Route(f"{api}/credit_notes/{{lago_id}}", get_credit_note, methods=["GET"]),
        Route(f"{api}/wallets", create_wallet, methods=["POST"]),
        Route(f"{api}/wallets", list_wallets, methods=["GET"]),
        Route(f"{api}/wallets/{{lago_id}}", get_wallet, methods=["GET"]),
        Route(f"{api}/wallets/{{lago_id}}", update_wallet, methods=["PUT"]),
        Route(f"{api}/wallets/{{lago_id}}", terminate_wallet, methods=["DELETE"]),
        Route(f"{api}/wallets/{{lago_id}}/wallet_transactions", list_wallet_transactions, methods=["GET"]),
        Route(f"{api}/wallet_transactions", create_wallet_transactions, methods=["POST"]),
        Route(f"{api}/wallet_transactions/{{lago_id}}", get_wallet_transaction, methods=["GET"]),
        Route(
            f"{api}/wallet_transactions/{{lago_id}}/fundings",
            list_wallet_transaction_fundings,
            methods=["GET"],
        ),
        Route(f"{api}/webhook_endpoints", create_webhook_endpoint, methods=["POST"]),
        Route(f"{api}/webhook_endpoints", list_webhook_endpoints, methods=["GET"]),
        Route(f"{api}/webhook_endpoints/{{lago_id}}", get_webhook_endpoint, methods=["GET"]),
        Route(f"{api}/webhook_endpoints/{{lago_id}}", delete_webhook_endpoint, methods=["DELETE"]),
        Route(f"{api}/billable_metrics", create_billable_metric, methods=["POST"]),
        Route(f"{api}/billable_metrics", list_billable_metrics, methods=["GET"]),
        Route(f"{api}/billable_metrics/{{code}}", get_billable_metric, methods=["GET"]),
        Route(f"{api}/plans", create_plan, methods=["POST"]),
        Route(f"{api}/events", create_event, methods=["POST"]),
        Route(f"{api}/events/batch", create_batch_events, methods=["POST"]),
        Route(f"{api}/events/{{transaction_id:path}}", get_event, methods=["GET"]),
        Route(f"{api}/customers/{{external_id}}/current_usage", current_usage, methods=["GET"]),
        Route(f"{api}/webhooks/public_key", public_key, methods=["GET"]),
        Route(f"{api}/webhooks/json_public_key", json_public_key, methods=["GET"]),
        Route("/__sandbox/lago/clock", get_clock, methods=["GET"]),
        Route("/__sandbox/lago/clock", advance_clock, methods=["POST"]),
        Route("/__sandbox/lago/webhooks", get_webhooks, methods=["GET"]),
        Route("/__sandbox/lago/webhooks", put_webhooks, methods=["PUT"]),
        Route("/__sandbox/lago/webhooks/drain", drain_webhooks, methods=["POST"]),
        Route("/__sandbox/lago/credit_notes/{lago_id}/refund", settle_refund, methods=["POST"]),
        Route("/__sandbox/lago/rate_limit", get_rate_limit, methods=["GET"]),
        Route("/__sandbox/lago/rate_limit", put_rate_limit, methods=["PUT"]),
        *admin_routes(sandbox.faults, sandbox.effects, sandbox.reset),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_CountWrites, writes=writes)])
