"""Every operation the Lago sandbox implements answers what Lago's published OpenAPI document says.

One scenario walks every route under /api/v1 over real sockets; each request we send and each response
the sandbox returns is validated by openapi-core against ``specs/lago/openapi.yaml`` (error statuses the
operation does not list are checked against the spec's error schemas). The webhooks the scenario fires
are validated against the document's ``webhooks:`` section, headers included.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from openapi_core.testing import MockRequest
from openapi_core.validation.request.validators import (
    V31WebhookRequestBodyValidator,
    V31WebhookRequestParametersValidator,
)
from starlette.routing import Route

from lead2cash.sandbox.lago import plan_code_for
from lead2cash.sandbox.lago.money import tax_amount

CUSTOMER = "conf-cust-1"


class WebhookCall(MockRequest):
    """An openapi-core WebhookRequest: a MockRequest with the name of the webhook in the spec."""

    def __init__(self, name: str, headers: dict[str, str], body: bytes) -> None:
        super().__init__("", "post", "", headers=headers, data=body)
        self.name = name


def _explain(exc: BaseException) -> str:
    """openapi-core wraps the schema errors; name each failing field."""
    parts = [repr(exc)]
    cause = exc.__cause__
    while cause is not None:
        for err in getattr(cause, "schema_errors", ()):
            parts.append(f"  at {list(err.absolute_path)}: {err.message[:300]}")
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


@pytest.fixture(scope="module")
def exchanges(conformance_lago: dict[str, Any]) -> list[tuple[str, httpx.Response]]:
    """Run the scenario once; return (route template, response) for every call."""
    lago = conformance_lago
    client: httpx.Client = lago["client"]
    calls: list[tuple[str, httpx.Response]] = []

    admin = httpx.Client(base_url=str(client.base_url), verify=lago["tls"])

    def admin_call(method: str, path: str, **kw: Any) -> httpx.Response:
        response = admin.request(method, path, **kw)
        response.raise_for_status()
        return response

    def call(method: str, template: str, path: str | None = None, **kw: Any) -> httpx.Response:
        response = client.request(method, path or template, **kw)
        calls.append((f"{method} {template}", response))
        return response

    hooks = f"{lago['receiver_url']}/conformance"
    hmac_ep = call("POST", "/api/v1/webhook_endpoints", json={"webhook_endpoint": {
        "webhook_url": f"{hooks}/hmac", "signature_algo": "hmac"}}).json()["webhook_endpoint"]  # fmt: skip
    call("POST", "/api/v1/webhook_endpoints", json={"webhook_endpoint": {
        "webhook_url": f"{hooks}/jwt", "signature_algo": "jwt", "name": "jwt"}})  # fmt: skip
    call("GET", "/api/v1/webhook_endpoints", params={"page": 1, "per_page": 10})
    call("GET", "/api/v1/webhook_endpoints/{lago_id}", f"/api/v1/webhook_endpoints/{hmac_ep['lago_id']}")
    call("GET", "/api/v1/webhooks/public_key")
    call("GET", "/api/v1/webhooks/json_public_key")

    customer = {"external_id": CUSTOMER, "name": "Conformance GmbH", "country": "DE", "currency": "EUR",
                "email": "billing@example.com", "net_payment_term": 30}  # fmt: skip
    call("POST", "/api/v1/customers", json={"customer": customer})
    call("POST", "/api/v1/customers", json={"customer": {**customer, "city": "Berlin"}})
    call("GET", "/api/v1/customers/{external_id}", f"/api/v1/customers/{CUSTOMER}")
    call("GET", "/api/v1/customers", params={"page": 1, "per_page": 2})

    plan_code = plan_code_for("PLAT-BASE", "EUR")
    call("GET", "/api/v1/plans")
    call("GET", "/api/v1/plans/{code}", f"/api/v1/plans/{plan_code}")
    call("GET", "/api/v1/add_ons")
    call("GET", "/api/v1/add_ons/{code}", "/api/v1/add_ons/ONB-STD")

    sub = {"external_customer_id": CUSTOMER, "plan_code": plan_code, "external_id": "conf-sub-1",
           "billing_time": "calendar", "subscription_at": "2025-12-15T00:00:00Z", "name": "Platform"}  # fmt: skip
    call("POST", "/api/v1/subscriptions", json={"subscription": sub})
    call("GET", "/api/v1/subscriptions/{external_id}", "/api/v1/subscriptions/conf-sub-1")
    call("GET", "/api/v1/subscriptions", params={"external_customer_id": CUSTOMER})
    call("PUT", "/api/v1/subscriptions/{external_id}", "/api/v1/subscriptions/conf-sub-1",
         json={"subscription": {"name": "Platform (renamed)", "ending_at": None}})  # fmt: skip

    fees = [{"add_on_code": "ONB-STD", "units": "2", "unit_amount_cents": 230000, "description": "Onboarding"},
            {"add_on_code": "TRN-DAY", "units": "1.5", "unit_amount_cents": 110000}]  # fmt: skip
    invoice = call("POST", "/api/v1/invoices", json={"invoice": {
        "external_customer_id": CUSTOMER, "currency": "EUR", "fees": fees}}).json()["invoice"]  # fmt: skip
    other = call("POST", "/api/v1/invoices", json={"invoice": {
        "external_customer_id": CUSTOMER, "currency": "EUR", "fees": fees[:1]}}).json()["invoice"]  # fmt: skip
    inv_path = f"/api/v1/invoices/{invoice['lago_id']}"
    call("GET", "/api/v1/invoices/{lago_id}", inv_path)
    call("PUT", "/api/v1/invoices/{lago_id}", inv_path, json={"invoice": {
        "metadata": [{"key": "lead2cash_key", "value": "conf-1"}], "payment_status": "succeeded"}})  # fmt: skip
    call("GET", "/api/v1/invoices", params=[("external_customer_id", CUSTOMER), ("statuses[]", "finalized"),
         ("payment_statuses[]", "succeeded"), ("issuing_date_from", "2025-01-01"), ("page", "1"),
         ("per_page", "5"), ("metadata[lead2cash_key]", "conf-1")])  # fmt: skip
    call("POST", "/api/v1/invoices/{lago_id}/void", f"/api/v1/invoices/{other['lago_id']}/void", json={})
    # A payment's life after it succeeded: the debit returned, the retry paid, a chargeback lost.
    call("PUT", "/api/v1/invoices/{lago_id}", inv_path, json={"invoice": {"payment_status": "failed"}})
    call("PUT", "/api/v1/invoices/{lago_id}", inv_path, json={"invoice": {"payment_status": "succeeded"}})
    call("POST", "/api/v1/invoices/{lago_id}/lose_dispute", f"{inv_path}/lose_dispute")

    note = call("POST", "/api/v1/credit_notes", json={"credit_note": {
        "invoice_id": invoice["lago_id"], "reason": "order_change", "description": "one day less",
        "items": [{"fee_id": invoice["fees"][1]["lago_id"], "amount_cents": 55000}]}}).json()["credit_note"]  # fmt: skip
    call("GET", "/api/v1/credit_notes/{lago_id}", f"/api/v1/credit_notes/{note['lago_id']}")
    # A refund of part of the paid amount, which the payment provider then declines.
    fee = invoice["fees"][0]
    refund = 20000 + sum(tax_amount(20000, Decimal(str(t["tax_rate"]))) for t in fee["applied_taxes"])
    refunded = call("POST", "/api/v1/credit_notes", json={"credit_note": {
        "invoice_id": invoice["lago_id"], "reason": "product_unsatisfactory", "credit_amount_cents": 0,
        "refund_amount_cents": refund, "items": [{"fee_id": fee["lago_id"], "amount_cents": 20000}]}})  # fmt: skip
    assert refunded.json()["credit_note"]["refund_status"] == "pending", refunded.text
    declined = admin_call("POST", f"/__sandbox/lago/credit_notes/{refunded.json()['credit_note']['lago_id']}/refund",
                          json={"status": "failed"})  # fmt: skip
    assert declined.json()["credit_note"]["refund_status"] == "failed"
    call("GET", "/api/v1/credit_notes", params={"invoice_number": invoice["number"]})
    call("GET", "/api/v1/credit_notes", params={"external_customer_id": CUSTOMER})

    # December was complete when the backdated subscription was created: Lago bills January first.
    billed = admin.post("/__sandbox/lago/clock", json={"to": "2026-02-01"}).json()["invoices"]
    assert billed, "the clock advance should have billed the January period"
    draft = billed[0]
    call("PUT", "/api/v1/invoices/{lago_id}/finalize", f"/api/v1/invoices/{draft}/finalize")
    fees_listed = call("GET", "/api/v1/fees", params={"external_customer_id": CUSTOMER, "fee_type": "subscription",
                       "external_subscription_id": "conf-sub-1", "currency": "EUR",
                       "created_at_from": "2026-01-01T00:00:00Z", "created_at_to": "2026-02-01T00:00:00Z",
                       "page": 1, "per_page": 100})  # fmt: skip
    assert [f["lago_invoice_id"] for f in fees_listed.json()["fees"]] == [draft], fees_listed.text
    call("DELETE", "/api/v1/subscriptions/{external_id}", "/api/v1/subscriptions/conf-sub-1")
    # A customer deleted (what a migration's rollback does), then gone.
    call("POST", "/api/v1/customers", json={"customer": {"external_id": "conf-gone", "name": "Gone Ltd"}})
    call("DELETE", "/api/v1/customers/{external_id}", "/api/v1/customers/conf-gone")
    call("GET", "/api/v1/customers/{external_id}", "/api/v1/customers/conf-gone")

    # Errors, in Lago's shapes.
    call("GET", "/api/v1/invoices/{lago_id}", "/api/v1/invoices/00000000-0000-4000-8000-000000000000")
    call("GET", "/api/v1/customers/{external_id}", "/api/v1/customers/nobody")
    call("POST", "/api/v1/customers", json={"customer": {"name": "no external id"}})
    call("POST", "/api/v1/invoices", json={"invoice": {"external_customer_id": CUSTOMER, "currency": "EUR",
         "fees": [{"add_on_code": "NOPE"}]}})  # fmt: skip
    call("POST", "/api/v1/invoices/{lago_id}/void", f"/api/v1/invoices/{other['lago_id']}/void", json={})
    # An ending_at in the past (the clock is at 1 February): Lago refuses it (ValidateService, invalid_date).
    call("POST", "/api/v1/subscriptions", json={"subscription": {
        **sub, "external_id": "conf-sub-ended", "ending_at": "2026-01-20T23:59:59Z"}})  # fmt: skip
    call(
        "POST", "/api/v1/invoices/{lago_id}/lose_dispute", f"/api/v1/invoices/{other['lago_id']}/lose_dispute"
    )
    calls.append(
        ("GET /api/v1/plans", client.get("/api/v1/plans", headers={"Authorization": "Bearer wrong"}))
    )
    faults = admin.put("/__sandbox/faults", json={"rules": {"plans.list": {"error_rate": 1.0,
                       "error_statuses": [429], "retry_after_s": 3}}})  # fmt: skip
    assert faults.status_code == 200
    call("GET", "/api/v1/plans")
    admin.put("/__sandbox/faults", json={"rules": {}})

    call("DELETE", "/api/v1/webhook_endpoints/{lago_id}", f"/api/v1/webhook_endpoints/{hmac_ep['lago_id']}")
    assert admin.post("/__sandbox/lago/webhooks/drain").json()["drained"]
    admin.close()
    return calls


def test_every_response_validates_against_the_openapi_document(
    exchanges: list[tuple[str, httpx.Response]], conforms: Any
) -> None:
    failures = []
    for operation, response in exchanges:
        try:
            conforms(response)
        except Exception as exc:  # collect them all: one report names every non-conforming operation
            failures.append(f"{operation} -> {response.status_code}: {exc!r}"[:2000])
    assert not failures, "\n".join(failures)


def test_the_scenario_covers_every_implemented_operation(
    exchanges: list[tuple[str, httpx.Response]], conformance_lago: dict[str, Any]
) -> None:
    implemented = {
        f"{method} {route.path}"
        for route in conformance_lago["sandbox"].asgi().routes
        if isinstance(route, Route) and route.path.startswith("/api/v1")
        for method in route.methods or ()
        if method != "HEAD"
    }
    from test_lago_payments_conformance import PAYMENT_OPERATIONS
    from test_lago_usage_conformance import USAGE_OPERATIONS
    from test_lago_wallets_conformance import WALLET_OPERATIONS

    exercised = {op for op, _ in exchanges}
    assert implemented - exercised - USAGE_OPERATIONS - WALLET_OPERATIONS - PAYMENT_OPERATIONS == set()


def test_errors_use_lago_codes(exchanges: list[tuple[str, httpx.Response]]) -> None:
    by_status: dict[int, list[dict[str, Any]]] = {}
    for _, response in exchanges:
        if response.status_code >= 400:
            by_status.setdefault(response.status_code, []).append(response.json())
    assert {"status": 401, "error": "Unauthorized"} in by_status[401]
    assert {"status": 404, "error": "Not Found", "code": "invoice_not_found"} in by_status[404]
    assert {"status": 404, "error": "Not Found", "code": "add_on_not_found"} in by_status[404]
    assert by_status[422][0]["error_details"] == {"external_id": ["value_is_mandatory"]}
    assert {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"ending_at": ["invalid_date"]},
    } in by_status[422]
    assert by_status[405][0]["code"] == "not_voidable"
    throttled = next(r for _, r in exchanges if r.status_code == 429)
    assert throttled.headers["Retry-After"] == "3"
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert throttled.headers["X-RateLimit-Reset"] == "3"
    assert int(throttled.headers["X-RateLimit-Limit"]) > 0


def test_webhook_payloads_validate_against_the_webhooks_section(
    exchanges: list[tuple[str, httpx.Response]], conformance_lago: dict[str, Any], lago_openapi: Any
) -> None:
    received = [r for r in conformance_lago["receiver"].accepted() if r.path.startswith("/conformance/")]
    # Body and headers; not security: the document's global bearer scheme is for calls *to* Lago.
    validators = [
        V31WebhookRequestBodyValidator(lago_openapi.spec),
        V31WebhookRequestParametersValidator(lago_openapi.spec),
    ]
    types = set()
    failures = []
    for hook in received:
        payload = httpx.Response(200, content=hook.body).json()
        types.add(payload["webhook_type"])
        # The document names webhooks after their type, with one exception.
        name = {"credit_note.refund_failure": "credit_note_provider_refund_failure"}.get(
            payload["webhook_type"], re.sub(r"\.", "_", payload["webhook_type"])
        )
        headers = {k.title(): v for k, v in hook.headers.items()}
        try:
            for validator in validators:
                validator.validate(WebhookCall(name, headers, hook.body))
        except Exception as exc:
            failures.append(f"{payload['webhook_type']}: {_explain(exc)}"[:3000])
    assert not failures, "\n".join(failures)
    assert {
        "invoice.one_off_created",
        "invoice.payment_status_updated",
        "invoice.voided",
        "invoice.payment_dispute_lost",
        "invoice.drafted",
        "invoice.created",
        "credit_note.created",
        "credit_note.refund_failure",
        "subscription.started",
        "subscription.terminated",
    } <= types
